package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Replica is one read-only PostgreSQL standby in the read rotation.
type Replica struct {
	Name    string
	Pool    *pgxpool.Pool
	healthy atomic.Bool
	lag     atomic.Int64 // bytes of WAL behind the primary at the last check
}

// Healthy reports whether the replica is in the rotation.
func (r *Replica) Healthy() bool { return r.healthy.Load() }

// replicaSet picks healthy replicas round-robin and keeps them honest: a health loop takes out a
// replica that stops answering or falls more than maxLag behind, and brings it back when it catches up.
type replicaSet struct {
	primary  *pgxpool.Pool
	replicas []*Replica
	next     atomic.Uint64
	maxLag   time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	history []lsnSample // the primary's WAL position over the last maxLag
}

type lsnSample struct {
	at  time.Time
	lsn uint64
}

// pick returns a healthy replica, or nil when none is.
func (s *replicaSet) pick() *Replica {
	n := len(s.replicas)
	if n == 0 {
		return nil
	}
	start := int(s.next.Add(1))
	for i := range n {
		if r := s.replicas[(start+i)%n]; r.Healthy() {
			return r
		}
	}
	return nil
}

// checkAll runs one health round. A replica is healthy when it answers and has replayed at least
// the WAL the primary had written maxLag ago, so its data is at most about maxLag old.
func (s *replicaSet) checkAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var primaryLSN string
	if err := s.primary.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&primaryLSN); err != nil {
		s.logger.WarnContext(ctx, "replica health: primary WAL position unavailable", "err", err)
		return
	}
	now := time.Now()
	current, _ := parseLSN(primaryLSN)
	s.mu.Lock()
	s.history = append(s.history, lsnSample{at: now, lsn: current})
	// The bar a replica must reach: the primary's position maxLag ago (or the oldest we know).
	bar := s.history[0].lsn
	for len(s.history) > 1 && now.Sub(s.history[1].at) >= s.maxLag {
		s.history = s.history[1:]
		bar = s.history[0].lsn
	}
	s.mu.Unlock()

	for _, r := range s.replicas {
		healthy, lag, err := s.check(ctx, r, bar, current)
		r.lag.Store(int64(lag))
		if was := r.healthy.Swap(healthy); was != healthy {
			s.logger.WarnContext(ctx, "replica rotation changed", "replica", r.Name, "healthy", healthy, "lag_bytes", lag, "err", err)
		}
	}
}

func (s *replicaSet) check(ctx context.Context, r *Replica, bar, current uint64) (bool, uint64, error) {
	var (
		inRecovery bool
		replay     *string
	)
	err := r.Pool.QueryRow(ctx, `SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text`).Scan(&inRecovery, &replay)
	if err != nil {
		return false, 0, err
	}
	if !inRecovery || replay == nil {
		// A promoted or misconfigured server is not a replica of this primary: keep it out.
		return false, 0, errors.New("not a streaming replica")
	}
	pos, err := parseLSN(*replay)
	if err != nil {
		return false, 0, err
	}
	lag := uint64(0)
	if current > pos {
		lag = current - pos
	}
	return pos >= bar, lag, nil
}

// run checks the replicas every interval until ctx ends.
func (s *replicaSet) run(ctx context.Context, interval time.Duration) {
	s.checkAll(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkAll(ctx)
		}
	}
}

// parseLSN reads PostgreSQL's "XXXXXXXX/XXXXXXXX" WAL position.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// failover runs reads on a replica and, when the replica cannot be reached, takes it out of the
// rotation and runs the read on the primary instead, so losing a replica costs no failed request.
type failover struct {
	replica *Replica
	primary *pgxpool.Pool
	logger  *slog.Logger
}

// unreachable reports errors that mean "this server is gone", not "this query is wrong": failed
// connects and broken connections, and the server ending the session because it is shutting down,
// crashed or not accepting connections (a replica being stopped or restarted answers a query on
// an open connection with 57P01 rather than a network error). When the caller's context has ended
// the error says nothing about the replica (the request ran out of time): no failover then.
func unreachable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	if pgconn.SafeToRetry(err) || errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgx.ErrTxClosed) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection_exception
			return true
		case pgErr.Code == pgAdminShutdown, pgErr.Code == pgCrashShutdown, pgErr.Code == pgCannotConnectNow:
			return true
		}
	}
	return false
}

// PostgreSQL codes for a server that ends or refuses sessions (class 57P, operator intervention).
const (
	pgAdminShutdown    = "57P01"
	pgCrashShutdown    = "57P02"
	pgCannotConnectNow = "57P03"
)

func (f failover) demote(ctx context.Context, err error) {
	if f.replica.healthy.Swap(false) {
		f.logger.WarnContext(ctx, "replica failed; out of rotation until healthy", "replica", f.replica.Name, "err", err)
	}
}

func (f failover) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := f.replica.Pool.Exec(ctx, sql, args...)
	if unreachable(ctx, err) {
		f.demote(ctx, err)
		return f.primary.Exec(ctx, sql, args...)
	}
	return tag, err
}

func (f failover) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := f.replica.Pool.Query(ctx, sql, args...)
	if unreachable(ctx, err) {
		f.demote(ctx, err)
		return f.primary.Query(ctx, sql, args...)
	}
	if err != nil {
		return rows, err
	}
	return &failoverRows{Rows: rows, f: f, ctx: ctx, retry: func() (pgx.Rows, error) {
		return f.primary.Query(ctx, sql, args...)
	}}, nil
}

// failoverRows reruns a read on the primary when the replica's answer fails before its first row
// for a reason that means the replica is gone. pgx reports most such failures (a connection the
// server closed while it sat in the pool) through the rows, not from Query.
type failoverRows struct {
	pgx.Rows
	f     failover
	ctx   context.Context
	retry func() (pgx.Rows, error)
	done  bool  // a row arrived or the read was rerun: no more switching
	err   error // the rerun's own failure
}

func (r *failoverRows) Next() bool {
	if r.err != nil {
		return false
	}
	if r.Rows.Next() {
		r.done = true
		return true
	}
	if r.done {
		return false
	}
	r.done = true
	err := r.Rows.Err()
	if !unreachable(r.ctx, err) {
		return false
	}
	r.Rows.Close()
	r.f.demote(r.ctx, err)
	rows, err := r.retry()
	if err != nil {
		r.err = err
		return false
	}
	r.Rows = rows
	return r.Rows.Next()
}

func (r *failoverRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}

func (f failover) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return failoverRow{f: f, ctx: ctx, sql: sql, args: args}
}

type failoverRow struct {
	f    failover
	ctx  context.Context
	sql  string
	args []any
}

func (r failoverRow) Scan(dest ...any) error {
	err := r.f.replica.Pool.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...)
	if unreachable(r.ctx, err) {
		r.f.demote(r.ctx, err)
		return r.f.primary.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...)
	}
	return err
}

func (f failover) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	conn, err := f.replica.Pool.Acquire(ctx)
	if err != nil {
		if unreachable(ctx, err) {
			f.demote(ctx, err)
		}
		return f.primary.SendBatch(ctx, b)
	}
	// The replica gets a copy: sending a batch records per-connection prepared statements in it,
	// so only an unsent batch can still go to the primary.
	return &failoverBatch{f: f, ctx: ctx, batch: b,
		BatchResults: conn.SendBatch(ctx, cloneBatch(b)), conn: conn}
}

func cloneBatch(b *pgx.Batch) *pgx.Batch {
	c := &pgx.Batch{}
	for _, q := range b.QueuedQueries {
		c.Queue(q.SQL, q.Arguments...).Fn = q.Fn
	}
	return c
}

// failoverBatch reads a batch's results from the replica and, when the replica turns out to be gone
// before the first result was read, sends the batch to the primary instead. Once a result came from
// the replica the batch cannot be replayed, and a later failure is returned as is.
type failoverBatch struct {
	pgx.BatchResults
	f       failover
	ctx     context.Context
	batch   *pgx.Batch    // the unsent original, for the primary
	conn    *pgxpool.Conn // the replica connection; nil once released
	started bool          // a result was read: no more switching
}

// toPrimary abandons the replica's results and sends the batch to the primary.
func (b *failoverBatch) toPrimary(err error) {
	b.f.demote(b.ctx, err)
	_ = b.BatchResults.Close()
	b.conn.Release()
	b.conn = nil
	b.BatchResults = b.f.primary.SendBatch(b.ctx, b.batch)
}

func (b *failoverBatch) Exec() (pgconn.CommandTag, error) {
	first := !b.started
	b.started = true
	tag, err := b.BatchResults.Exec()
	if first && b.conn != nil && unreachable(b.ctx, err) {
		b.toPrimary(err)
		return b.BatchResults.Exec()
	}
	return tag, err
}

func (b *failoverBatch) Query() (pgx.Rows, error) {
	first := !b.started
	b.started = true
	rows, err := b.BatchResults.Query()
	if !first || b.conn == nil {
		return rows, err
	}
	if unreachable(b.ctx, err) {
		if rows != nil {
			rows.Close()
		}
		b.toPrimary(err)
		return b.BatchResults.Query()
	}
	if err != nil {
		return rows, err
	}
	return &failoverRows{Rows: rows, f: b.f, ctx: b.ctx, retry: func() (pgx.Rows, error) {
		b.toPrimary(rows.Err())
		return b.BatchResults.Query()
	}}, nil
}

func (b *failoverBatch) QueryRow() pgx.Row {
	first := !b.started
	b.started = true
	row := b.BatchResults.QueryRow()
	if !first || b.conn == nil {
		return row
	}
	return batchRow{b: b, row: row}
}

type batchRow struct {
	b   *failoverBatch
	row pgx.Row
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if r.b.conn != nil && unreachable(r.b.ctx, err) {
		r.b.toPrimary(err)
		return r.b.BatchResults.QueryRow().Scan(dest...)
	}
	return err
}

func (b *failoverBatch) Close() error {
	err := b.BatchResults.Close()
	if b.conn != nil {
		b.conn.Release()
		b.conn = nil
	}
	return err
}

func (f failover) Begin(ctx context.Context) (pgx.Tx, error) {
	return f.primary.Begin(ctx) // transactions are for writes: always the primary
}
