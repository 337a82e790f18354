package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Job is a background job's arguments (River's JobArgs: internal/jobs defines them). db only passes
// them to the Enqueuer, inside the caller's transaction.
type Job interface {
	Kind() string
}

// Enqueuer inserts jobs with tx, so they commit or roll back with it. internal/jobs implements it
// with River; db never knows which queue it is.
type Enqueuer interface {
	EnqueueTx(ctx context.Context, tx pgx.Tx, jobs []Job) error
}

// WithEnqueuer lets stores enqueue background jobs (Stores.Jobs).
func WithEnqueuer(e Enqueuer) Option {
	return func(d *DB) { d.jobs = e }
}

// ErrNoJobQueue is returned by JobStore.Enqueue on a DB built without WithEnqueuer.
var ErrNoJobQueue = errors.New("db: no job queue configured (WithEnqueuer)")

// JobStore enqueues background jobs on the stores' querier.
type JobStore struct {
	q     querier
	queue Enqueuer
}

// Enqueue inserts jobs. Inside InTx they are part of the transaction: the job exists if and only if
// the writes that caused it commit. Outside a transaction the jobs are inserted in one of their own.
func (s JobStore) Enqueue(ctx context.Context, jobs ...Job) error {
	if len(jobs) == 0 {
		return nil
	}
	if s.queue == nil {
		return ErrNoJobQueue
	}
	if tx, ok := s.q.(pgx.Tx); ok {
		return s.enqueue(ctx, tx, jobs)
	}
	return pgx.BeginFunc(ctx, s.q, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, jobs) })
}

func (s JobStore) enqueue(ctx context.Context, tx pgx.Tx, jobs []Job) error {
	if err := s.queue.EnqueueTx(ctx, tx, jobs); err != nil {
		return fmt.Errorf("enqueue %s: %w", jobs[0].Kind(), err)
	}
	return nil
}

// TaskBefore is what a task was before a change: the fields whose changes notify someone.
type TaskBefore struct {
	OwnerID    uuid.UUID
	AssigneeID *uuid.UUID
	Status     TaskStatus
}
