// Package db owns PostgreSQL: the pool, migrations, transactions, the stores (users, sessions, tasks),
// keyset pagination and the mapping of PostgreSQL errors to domain errors.
//
// SQL is hand-written and parameterized, kept next to the store method that runs it, and scanned with
// pgx.CollectRows / pgx.RowToStructByName.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cursor"
)

// querier is what a store needs: satisfied by the pool and by a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Begin(ctx context.Context) (pgx.Tx, error)
}

// DB hands out stores bound to the pool, or to one transaction through InTx.
type DB struct {
	pool     *pgxpool.Pool
	cursors  *cursor.Codec
	inv      Invalidator
	replicas *replicaSet // nil: every read on the primary
	jobs     Enqueuer    // the job queue (internal/jobs); nil: Jobs.Enqueue fails
}

// WithReplicas adds read replicas. Reads go to healthy ones (see Reader); a replica more than maxLag
// behind the primary, or unreachable, leaves the rotation until it recovers.
func WithReplicas(replicas []*Replica, maxLag time.Duration, logger *slog.Logger) Option {
	return func(d *DB) {
		if len(replicas) > 0 {
			d.replicas = &replicaSet{replicas: replicas, maxLag: maxLag, logger: logger}
		}
	}
}

// Option configures a DB.
type Option func(*DB)

// WithInvalidator makes every write report the entities it changed, after commit.
func WithInvalidator(inv Invalidator) Option {
	return func(d *DB) { d.inv = inv }
}

// New wraps a pool. cursors signs the cursors of every connection.
func New(pool *pgxpool.Pool, cursors *cursor.Codec, opts ...Option) *DB {
	d := &DB{pool: pool, cursors: cursors}
	for _, o := range opts {
		o(d)
	}
	if d.replicas != nil {
		d.replicas.primary = pool
	}
	return d
}

// Replicas lists the read replicas (for health reports and metrics).
func (d *DB) Replicas() []*Replica {
	if d.replicas == nil {
		return nil
	}
	return d.replicas.replicas
}

// RunReplicaChecks keeps the replica rotation current until ctx ends (a no-op without replicas).
func (d *DB) RunReplicaChecks(ctx context.Context, interval time.Duration) {
	if d.replicas != nil {
		d.replicas.run(ctx, interval)
	}
}

// HasReplicas reports whether read replicas are configured.
func (d *DB) HasReplicas() bool { return d.replicas != nil }

// ReplicaStores returns stores on a healthy read replica (falling back to the primary when a
// statement finds it unreachable), or on the primary when none is healthy or none is configured.
// Their reads may be slightly stale: which reads may be is the caller's choice (internal/reads).
func (d *DB) ReplicaStores() Stores {
	if d.replicas == nil {
		return d.Stores()
	}
	r := d.replicas.pick()
	if r == nil {
		return d.Stores()
	}
	st := d.stores(failover{replica: r, primary: d.pool, logger: d.replicas.logger}, nil)
	st.OnReplica = true
	return st
}

// Pool exposes the pool for health checks.
func (d *DB) Pool() *pgxpool.Pool { return d.pool }

// Stores groups the stores that share one querier (the pool or a transaction).
type Stores struct {
	Users    UserStore
	Tasks    TaskStore
	Sessions SessionStore
	// Notifications are the in-app notifications background jobs write.
	Notifications NotificationStore
	// Webhooks are the users' webhook endpoints notifications are delivered to.
	Webhooks WebhookStore
	// Jobs enqueues background jobs; inside InTx they commit or vanish with the transaction's writes.
	Jobs JobStore
	// BackgroundJobs are the user-visible jobs (exports, reports, bulk operations) and export files.
	BackgroundJobs BackgroundJobStore
	// TaskChanges is the log of committed task changes the live feed delivers.
	TaskChanges TaskChangeStore
	// Idempotency keeps the idempotency keys of mutations and their stored answers.
	Idempotency IdempotencyStore
	// OnReplica is true when these stores read from a replica (possibly a little behind).
	OnReplica bool
}

func (d *DB) stores(q querier, changed *changeSet) Stores {
	return Stores{
		Users:    UserStore{q: q, cursors: d.cursors, changed: changed},
		Tasks:    TaskStore{q: q, cursors: d.cursors, changed: changed},
		Sessions: SessionStore{q: q, changed: changed},
		// The job queue and the notifications its workers write:
		Notifications: NotificationStore{q: q, cursors: d.cursors, changed: changed},
		Webhooks:      WebhookStore{q: q},
		Jobs:          JobStore{q: q, queue: d.jobs},
		// BackgroundJobs: what users follow of the exports, reports and bulk operations.
		BackgroundJobs: BackgroundJobStore{q: q, cursors: d.cursors},
		TaskChanges:    TaskChangeStore{q: q, cursors: d.cursors},
		Idempotency:    IdempotencyStore{q: q},
	}
}

// Stores returns stores that run each statement on its own pool connection.
func (d *DB) Stores() Stores {
	return d.stores(d.pool, &changeSet{inv: d.inv, immediate: true})
}

// InTx runs fn in one transaction: everything fn writes commits together or not at all. Caches hear
// of the changes only after the commit. When ctx carries an idempotency claim (WithIdempotencyClaim),
// the claim is marked committed in the same transaction, or the transaction rolls back if the claim
// was lost.
func (d *DB) InTx(ctx context.Context, fn func(Stores) error) error {
	changed := &changeSet{inv: d.inv}
	claim := idempotencyClaimFrom(ctx)
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		st := d.stores(tx, changed)
		if err := fn(st); err != nil {
			return err
		}
		if claim != nil {
			return st.Idempotency.markCommitted(ctx, claim)
		}
		return nil
	})
	if err == nil && claim != nil {
		claim.committed.Store(true)
	}
	// Even on error: a COMMIT whose answer was lost may still have applied, and a needless
	// invalidation only costs a cache miss.
	changed.flush(ctx)
	return err
}

// Write runs a write that needs no transaction of its own (one statement) on the pool, or in a
// transaction when ctx carries an idempotency claim, so the claim's record commits with the write.
func (d *DB) Write(ctx context.Context, fn func(Stores) error) error {
	if idempotencyClaimFrom(ctx) != nil {
		return d.InTx(ctx, fn)
	}
	return fn(d.Stores())
}

// ErrEmailTaken: another user has this email (compared without case).
var ErrEmailTaken = errors.New("db: the email is already registered")

// PostgreSQL error codes the stores turn into domain errors.
const (
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgCheckViolation       = "23514"
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
)

// mapError turns driver errors into domain errors; what names the object for the NOT_FOUND message.
// Anything unexpected is wrapped (it becomes INTERNAL at the edge, with the detail only in the log).
func mapError(err error, what string) error {
	if err == nil {
		return nil
	}
	var appErr *apperr.Error
	if errors.As(err, &appErr) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.New(apperr.NotFound, "%s not found", what)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgUniqueViolation:
			if pgErr.ConstraintName == "users_email_lower_key" {
				return ErrEmailTaken
			}
			return apperr.New(apperr.Conflict, "%s already exists", what)
		case pgForeignKeyViolation:
			return apperr.New(apperr.NotFound, "%s refers to something that no longer exists", what)
		case pgCheckViolation:
			return apperr.New(apperr.BadUserInput, "%s has a value out of range", what)
		case pgSerializationFailure, pgDeadlockDetected:
			return apperr.New(apperr.Conflict, "%s was changed concurrently; retry", what)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
