package db

import (
	"context"
	"errors"
	"fmt"
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

// unreachable reports errors that mean "this server is gone", not "this query is wrong".
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.As(err, &connErr) || errors.As(err, &netErr) ||
		errors.Is(err, pgx.ErrTxClosed)
}

func (f failover) demote(ctx context.Context, err error) {
	if f.replica.healthy.Swap(false) {
		f.logger.WarnContext(ctx, "replica failed; out of rotation until healthy", "replica", f.replica.Name, "err", err)
	}
}

func (f failover) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := f.replica.Pool.Exec(ctx, sql, args...)
	if unreachable(err) {
		f.demote(ctx, err)
		return f.primary.Exec(ctx, sql, args...)
	}
	return tag, err
}

func (f failover) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := f.replica.Pool.Query(ctx, sql, args...)
	if unreachable(err) {
		f.demote(ctx, err)
		return f.primary.Query(ctx, sql, args...)
	}
	return rows, err
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
	if unreachable(err) {
		r.f.demote(r.ctx, err)
		return r.f.primary.QueryRow(r.ctx, r.sql, r.args...).Scan(dest...)
	}
	return err
}

func (f failover) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	// A batch cannot be replayed after partial reads, so check the replica is reachable first.
	conn, err := f.replica.Pool.Acquire(ctx)
	if err != nil {
		f.demote(ctx, err)
		return f.primary.SendBatch(ctx, b)
	}
	return &releasingBatch{BatchResults: conn.SendBatch(ctx, b), conn: conn}
}

type releasingBatch struct {
	pgx.BatchResults
	conn *pgxpool.Conn
}

func (b *releasingBatch) Close() error {
	err := b.BatchResults.Close()
	b.conn.Release()
	return err
}

func (f failover) Begin(ctx context.Context) (pgx.Tx, error) {
	return f.primary.Begin(ctx) // transactions are for writes: always the primary
}
