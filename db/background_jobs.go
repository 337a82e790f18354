package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// JobKind is what a user-visible background job does; the GraphQL JobKind enum is bound to it.
type JobKind string

const (
	JobTaskExport      JobKind = "TASK_EXPORT"
	JobTaskReport      JobKind = "TASK_REPORT"
	JobBulkUpdateTasks JobKind = "BULK_UPDATE_TASKS"
	JobBulkDeleteTasks JobKind = "BULK_DELETE_TASKS"
)

// JobStatus is where a background job is; the GraphQL JobStatus enum is bound to it.
type JobStatus string

const (
	JobQueued    JobStatus = "QUEUED"
	JobRunning   JobStatus = "RUNNING"
	JobSucceeded JobStatus = "SUCCEEDED"
	JobFailed    JobStatus = "FAILED"
	JobCancelled JobStatus = "CANCELLED"
)

// Finished reports whether the status is final.
func (s JobStatus) Finished() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// BackgroundJob is a row of jobs: the user-visible side of an export, report or bulk operation
// (River's river_job row is only the queue entry that gets a worker to it).
type BackgroundJob struct {
	ID           uuid.UUID       `db:"id"`
	UserID       uuid.UUID       `db:"user_id"`
	Kind         JobKind         `db:"kind"`
	Status       JobStatus       `db:"status"`
	Params       json.RawMessage `db:"params"`
	Processed    int32           `db:"processed"`
	Total        *int32          `db:"total"`
	Checkpoint   json.RawMessage `db:"checkpoint"`
	Result       json.RawMessage `db:"result"`
	ErrorCode    *string         `db:"error_code"`
	ErrorMessage *string         `db:"error_message"`
	Attempt      int32           `db:"attempt"`
	CreatedAt    time.Time       `db:"created_at"`
	StartedAt    *time.Time      `db:"started_at"`
	FinishedAt   *time.Time      `db:"finished_at"`
	ExpiresAt    *time.Time      `db:"expires_at"`
}

func (BackgroundJob) IsNode() {}

// GlobalID is the job's opaque Node ID (the GraphQL id field).
func (j BackgroundJob) GlobalID() string { return globalid.Encode(globalid.KindJob, j.ID) }

// Progress is the fraction done, 0..1: 1 once succeeded, 0 while the total is unknown.
func (j BackgroundJob) Progress() float64 {
	switch {
	case j.Status == JobSucceeded:
		return 1
	case j.Total == nil || *j.Total == 0:
		return 0
	}
	return min(1, float64(j.Processed)/float64(*j.Total))
}

// DecodeParams unmarshals the job's params into v.
func (j BackgroundJob) DecodeParams(v any) error {
	if err := json.Unmarshal(j.Params, v); err != nil {
		return fmt.Errorf("job %s params: %w", j.ID, err)
	}
	return nil
}

// DecodeCheckpoint unmarshals the job's checkpoint into v; false when there is none yet.
func (j BackgroundJob) DecodeCheckpoint(v any) (bool, error) {
	if len(j.Checkpoint) == 0 || string(j.Checkpoint) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(j.Checkpoint, v); err != nil {
		return false, fmt.Errorf("job %s checkpoint: %w", j.ID, err)
	}
	return true, nil
}

const backgroundJobColumns = "id, user_id, kind, status, params, processed, total, checkpoint, result, " +
	"error_code, error_message, attempt, created_at, started_at, finished_at, expires_at"

// ErrJobNotRunning is returned by the worker-side writes when the job is no longer RUNNING: it was
// cancelled (or finished by another attempt) meanwhile. The worker stops.
var ErrJobNotRunning = errors.New("db: job is no longer running")

// BackgroundJobStore keeps the user-visible jobs: created by mutations (with their queue entry, in
// one transaction), advanced by workers chunk by chunk, read and cancelled by their user only.
type BackgroundJobStore struct {
	q       querier
	cursors *cursor.Codec
}

// BackgroundJobEdge is one job of a connection with its cursor.
type BackgroundJobEdge struct {
	Cursor string
	Node   *BackgroundJob
}

// BackgroundJobConnection is a page of jobs, newest first.
type BackgroundJobConnection struct {
	Edges    []BackgroundJobEdge
	PageInfo PageInfo
	filter   where
}

var backgroundJobSort = sortKey[BackgroundJob]{
	expr: "created_at", keyOf: func(j BackgroundJob) any { return timeKey(j.CreatedAt) }, param: timeParam,
}

// Create records a new QUEUED job for userID, unless the user already has maxActive jobs QUEUED or
// RUNNING (RATE_LIMITED). Call it inside InTx, and enqueue the job's queue entry in the same
// transaction. The user's jobs are serialized by an advisory lock so two requests cannot both
// pass the limit.
func (s BackgroundJobStore) Create(ctx context.Context, userID uuid.UUID, kind JobKind, params any, maxActive int) (*BackgroundJob, error) {
	if _, ok := s.q.(pgx.Tx); !ok {
		return nil, errors.New("db: BackgroundJobStore.Create must run inside InTx")
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("job params: %w", err)
	}
	if _, err := s.q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('taskgraph:jobs:' || $1::text, 0))`, userID); err != nil {
		return nil, mapError(err, "job")
	}
	if maxActive > 0 {
		var active int
		err := s.q.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE user_id = $1 AND status IN ('QUEUED', 'RUNNING')`, userID).Scan(&active)
		if err != nil {
			return nil, mapError(err, "job")
		}
		if active >= maxActive {
			return nil, apperr.New(apperr.RateLimited,
				"you have %d jobs queued or running (the limit is %d): wait for one to finish, or cancel one with cancelJob", active, maxActive)
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("job id: %w", err)
	}
	rows, err := s.q.Query(ctx, `INSERT INTO jobs (id, user_id, kind, params) VALUES ($1, $2, $3, $4) RETURNING `+backgroundJobColumns,
		id, userID, kind, raw)
	if err != nil {
		return nil, mapError(err, "job")
	}
	j, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[BackgroundJob])
	return j, mapError(err, "job")
}

// maxChangedJobs bounds ActiveOrFinishedSince: a user has at most JOB_MAX_ACTIVE active jobs, so the
// rest are jobs that finished within a subscription's gap.
const maxChangedJobs = 100

// ActiveOrFinishedSince returns userID's jobs that are QUEUED or RUNNING or finished at or after
// since, oldest first, at most 100: what may have changed unseen while a jobUpdated subscription
// was missing events.
func (s BackgroundJobStore) ActiveOrFinishedSince(ctx context.Context, userID uuid.UUID, since time.Time) ([]*BackgroundJob, error) {
	rows, err := s.q.Query(ctx, `SELECT `+backgroundJobColumns+` FROM jobs
		WHERE user_id = $1 AND (status IN ('QUEUED', 'RUNNING') OR finished_at >= $2)
		ORDER BY created_at, id LIMIT $3`, userID, since, maxChangedJobs)
	if err != nil {
		return nil, mapError(err, "jobs")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[BackgroundJob])
	return out, mapError(err, "jobs")
}

// ByID returns the job id whoever owns it, or NOT_FOUND.
func (s BackgroundJobStore) ByID(ctx context.Context, id uuid.UUID) (*BackgroundJob, error) {
	return s.one(ctx, `SELECT `+backgroundJobColumns+` FROM jobs WHERE id = $1`, id)
}

func (s BackgroundJobStore) one(ctx context.Context, sql string, args ...any) (*BackgroundJob, error) {
	rows, err := s.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapError(err, "job")
	}
	j, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[BackgroundJob])
	return j, mapError(err, "job")
}

// List returns one page of userID's jobs, newest first.
func (s BackgroundJobStore) List(ctx context.Context, userID uuid.UUID, args PageArgs) (*BackgroundJobConnection, error) {
	scope := scopeOf("jobs", userID.String())
	req, err := parsePage(s.cursors, args, scope)
	if err != nil {
		return nil, err
	}
	var w where
	w.add("user_id = ?", userID)
	l := keysetList[BackgroundJob]{
		table: "jobs", columns: backgroundJobColumns, filter: w,
		sort: backgroundJobSort, desc: true, idOf: func(j BackgroundJob) uuid.UUID { return j.ID }, scope: scope,
	}
	p, err := fetchPage(ctx, s.q, s.cursors, l, req)
	if err != nil {
		return nil, mapError(err, "jobs")
	}
	conn := &BackgroundJobConnection{PageInfo: p.info, filter: w, Edges: make([]BackgroundJobEdge, len(p.rows))}
	for i := range p.rows {
		conn.Edges[i] = BackgroundJobEdge{Cursor: p.cursors[i], Node: &p.rows[i]}
	}
	return conn, nil
}

// Count returns how many jobs match the connection's filter (its totalCount).
func (s BackgroundJobStore) Count(ctx context.Context, conn *BackgroundJobConnection) (int, error) {
	n, err := countRows(ctx, s.q, "jobs", conn.filter)
	return n, mapError(err, "jobs")
}

// Cancel marks the job CANCELLED if it is QUEUED or RUNNING, and returns it as it is after that (a
// finished job unchanged). A running worker notices at its next chunk.
func (s BackgroundJobStore) Cancel(ctx context.Context, id uuid.UUID) (*BackgroundJob, error) {
	j, err := s.one(ctx, `
		UPDATE jobs SET status = 'CANCELLED', finished_at = now()
		WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')
		RETURNING `+backgroundJobColumns, id)
	if apperr.CodeOf(err) == apperr.NotFound {
		return s.ByID(ctx, id)
	}
	return j, err
}

// Start marks the job RUNNING for a new attempt and returns it. A job that is finished (cancelled,
// or done by an earlier attempt whose completion River did not record) is returned unchanged, with
// ErrJobNotRunning; a deleted one (its user was deleted) answers NOT_FOUND.
func (s BackgroundJobStore) Start(ctx context.Context, id uuid.UUID) (*BackgroundJob, error) {
	j, err := s.one(ctx, `
		UPDATE jobs SET status = 'RUNNING', attempt = attempt + 1, started_at = coalesce(started_at, now())
		WHERE id = $1 AND status IN ('QUEUED', 'RUNNING')
		RETURNING `+backgroundJobColumns, id)
	if apperr.CodeOf(err) != apperr.NotFound {
		return j, err
	}
	if j, err = s.ByID(ctx, id); err != nil {
		return nil, err
	}
	return j, ErrJobNotRunning
}

// Advance records progress (processed so far, the total when known, where to resume) of a RUNNING
// job. Call it in the transaction of the chunk of work it describes, so the checkpoint commits
// with the work. ErrJobNotRunning: the job was cancelled meanwhile (roll the chunk back and stop).
func (s BackgroundJobStore) Advance(ctx context.Context, id uuid.UUID, processed int, total *int, checkpoint any) error {
	raw, err := json.Marshal(checkpoint)
	if err != nil {
		return fmt.Errorf("job checkpoint: %w", err)
	}
	tag, err := s.q.Exec(ctx, `
		UPDATE jobs SET processed = $2, total = coalesce($3, total), checkpoint = $4
		WHERE id = $1 AND status = 'RUNNING'`, id, processed, total, raw)
	if err != nil {
		return mapError(err, "job")
	}
	if tag.RowsAffected() == 0 {
		return ErrJobNotRunning
	}
	return nil
}

// Succeed finishes a RUNNING job with its result; expiresAt (optional) is when its output is deleted.
func (s BackgroundJobStore) Succeed(ctx context.Context, id uuid.UUID, result any, expiresAt *time.Time) error {
	raw, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("job result: %w", err)
	}
	tag, err := s.q.Exec(ctx, `
		UPDATE jobs SET status = 'SUCCEEDED', result = $2, expires_at = $3, finished_at = now(),
		       error_code = NULL, error_message = NULL, processed = coalesce(total, processed)
		WHERE id = $1 AND status = 'RUNNING'`, id, raw, expiresAt)
	if err != nil {
		return mapError(err, "job")
	}
	if tag.RowsAffected() == 0 {
		return ErrJobNotRunning
	}
	return nil
}

// Fail records a failed attempt of a RUNNING job: final marks it FAILED, otherwise it goes back to
// QUEUED for the retry, with the error shown meanwhile. message is shown to the user: never pass
// internals.
func (s BackgroundJobStore) Fail(ctx context.Context, id uuid.UUID, code apperr.Code, message string, final bool) error {
	status, finished := JobQueued, "NULL"
	if final {
		status, finished = JobFailed, "now()"
	}
	_, err := s.q.Exec(ctx, `
		UPDATE jobs SET status = $2, error_code = $3, error_message = $4, finished_at = `+finished+`
		WHERE id = $1 AND status = 'RUNNING'`, id, status, string(code), message)
	return mapError(err, "job")
}

// Purge deletes jobs finished before finishedBefore (with their files), the files of exports that
// expired before now and whatever a failed or cancelled export left behind, and returns how many
// jobs and files it deleted.
func (s BackgroundJobStore) Purge(ctx context.Context, finishedBefore time.Time) (jobs, files int, err error) {
	tag, err := s.q.Exec(ctx, `DELETE FROM jobs WHERE finished_at < $1`, finishedBefore)
	if err != nil {
		return 0, 0, mapError(err, "jobs")
	}
	var n int64
	err = s.q.QueryRow(ctx, `
		WITH expired AS (
			DELETE FROM export_chunks WHERE job_id IN (
				SELECT id FROM jobs WHERE expires_at < now() OR status IN ('FAILED', 'CANCELLED'))
			RETURNING job_id)
		SELECT count(DISTINCT job_id) FROM expired`).Scan(&n)
	return int(tag.RowsAffected()), int(n), mapError(err, "export files")
}

// WriteChunk stores chunk seq of an export file, replacing it if a crashed attempt left one there.
func (s BackgroundJobStore) WriteChunk(ctx context.Context, jobID uuid.UUID, seq int, data []byte) error {
	_, err := s.q.Exec(ctx, `
		INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, $2, $3)
		ON CONFLICT (job_id, seq) DO UPDATE SET data = EXCLUDED.data`, jobID, seq, data)
	return mapError(err, "export chunk")
}

// DeleteChunksFrom deletes the export file's chunks from seq on (what an interrupted attempt wrote
// past its last checkpoint).
func (s BackgroundJobStore) DeleteChunksFrom(ctx context.Context, jobID uuid.UUID, seq int) error {
	_, err := s.q.Exec(ctx, `DELETE FROM export_chunks WHERE job_id = $1 AND seq >= $2`, jobID, seq)
	return mapError(err, "export chunks")
}
