package observe

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// testPool connects to the maintenance database of the test PostgreSQL server (TEST_POSTGRES_URL,
// as in testsupport) with tracer.
func testPool(t *testing.T, tracer pgx.QueryTracer, maxConns int32) *pgxpool.Pool {
	t.Helper()
	server := os.Getenv("TEST_POSTGRES_URL")
	if server == "" {
		server = "postgres://postgres@127.0.0.1:5432"
	}
	cfg, err := pgxpool.ParseConfig(server + "/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.Tracer = tracer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("PostgreSQL at %s: %v", server, err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// countingTracer counts the query and batch callbacks it receives.
type countingTracer struct {
	queries, batchQueries, batches atomic.Int64
}

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.queries.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countingTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.batches.Add(1)
	return ctx
}
func (c *countingTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	c.batchQueries.Add(1)
}
func (c *countingTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func TestTracerCountsStatementsByVerb(t *testing.T) {
	m, reg := newTestMetrics(t)
	other := &countingTracer{}
	pool := testPool(t, ChainTracers(m.PGXTracer(), nil, other), 2)
	ctx := context.Background()

	// One connection, so the temporary table is visible to every statement.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	mustExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	mustExec(`CREATE TEMPORARY TABLE observe_t (id int PRIMARY KEY, v text)`) // other
	mustExec(`INSERT INTO observe_t (id, v) VALUES ($1, $2)`, 1, "a")
	mustExec(`  -- leading comment
		/* and a block */ insert into observe_t (id, v) values (2, 'b')`)
	mustExec(`UPDATE observe_t SET v = 'c' WHERE id = 1`)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM observe_t`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("select: %d, %v", n, err)
	}
	if err := conn.QueryRow(ctx, `WITH x AS (SELECT id FROM observe_t) SELECT count(*) FROM x`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	mustExec(`(SELECT 1)`)
	mustExec(`DELETE FROM observe_t WHERE id = 2`)

	batch := &pgx.Batch{}
	batch.Queue(`SELECT 1`)
	batch.Queue(`UPDATE observe_t SET v = 'd' WHERE id = 1`)
	batch.Queue(`DELETE FROM observe_t`)
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}

	for verb, want := range map[string]float64{"select": 3, "insert": 2, "update": 2, "delete": 2, "with": 1, "other": 1} {
		if v := mustValue(t, reg, "taskgraph_db_statement_duration_seconds", map[string]string{"statement": verb}); v != want {
			t.Errorf("%s: %v statements, want %v", verb, v, want)
		}
	}
	if q, b, bq := other.queries.Load(), other.batches.Load(), other.batchQueries.Load(); q != 8 || b != 1 || bq != 3 {
		t.Errorf("chained tracer saw %d queries, %d batches, %d batch queries; want 8, 1, 3", q, b, bq)
	}
}

func TestSQLVerb(t *testing.T) {
	for sql, want := range map[string]string{
		"SELECT 1":                          "select",
		"\n\tselect\n1":                     "select",
		"With x as (select 1) select 1":     "with",
		"/* c */ DELETE FROM t":             "delete",
		"-- only a comment":                 "other",
		"/* unterminated":                   "other",
		"selection":                         "other",
		"SELECTED 1":                        "other",
		"update_stats()":                    "other",
		"BEGIN":                             "other",
		"":                                  "other",
		"((select 1))":                      "select",
		"INSERT INTO t VALUES (1)":          "insert",
		"UpDaTe t SET x = 1":                "update",
		"-- a\n/* b */\n-- c\nSELECT now()": "select",
	} {
		if got := sqlVerb(sql); got != want {
			t.Errorf("sqlVerb(%q) = %q, want %q", sql, got, want)
		}
	}
}

func TestPoolCollector(t *testing.T) {
	m, reg := newTestMetrics(t)
	primary := testPool(t, nil, 3)
	replica := testPool(t, nil, 2)
	m.WatchPool("primary", primary)
	m.WatchPool("replica-1", replica)

	conn, err := primary.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()

	all := series(t, reg, "taskgraph_db_pool_connections")
	if len(all) != 8 {
		t.Fatalf("%d series, want 4 states x 2 pools: %v", len(all), all)
	}
	for _, state := range []string{"acquired", "idle", "total", "max"} {
		for _, pool := range []string{"primary", "replica-1"} {
			if _, ok := value(t, reg, "taskgraph_db_pool_connections", map[string]string{"pool": pool, "state": state}); !ok {
				t.Errorf("no %s %s", pool, state)
			}
		}
	}
	for state, want := range map[string]float64{"acquired": 1, "max": 3} {
		if v := mustValue(t, reg, "taskgraph_db_pool_connections", map[string]string{"pool": "primary", "state": state}); v != want {
			t.Errorf("primary %s = %v, want %v", state, v, want)
		}
	}
	if v := mustValue(t, reg, "taskgraph_db_pool_connections", map[string]string{"pool": "replica-1", "state": "max"}); v != 2 {
		t.Errorf("replica-1 max = %v, want 2", v)
	}

	m.WatchPool("replica-1", nil)
	if n := len(series(t, reg, "taskgraph_db_pool_connections")); n != 4 {
		t.Errorf("after unwatching the replica: %d series, want 4", n)
	}
}
