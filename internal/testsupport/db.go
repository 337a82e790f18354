// Package testsupport gives tests a real, freshly migrated PostgreSQL database, a statement counter,
// the real HTTP handler behind httptest, a small GraphQL client and factories for users and tasks.
package testsupport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testenv"
)

// serverURL is the PostgreSQL server tests create databases on (TEST_POSTGRES_URL overrides it).
func serverURL() string { return testenv.PostgresURL() }

func dbURL(name string) string { return serverURL() + "/" + name + "?sslmode=disable" }

// template is one migrated database per test process; each test clones it, which is much faster
// than migrating every test's database.
type template struct {
	once sync.Once
	name string
	err  error
}

var migrated template // test-process cache, not wiring: it only memoizes the migrated template

func (tm *template) get() (string, error) {
	tm.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tm.name = "taskgraph_tmpl_" + randomHex(6)
		if tm.err = db.EnsureDatabase(ctx, dbURL(tm.name)); tm.err != nil {
			return
		}
		pool, err := db.OpenPool(ctx, dbURL(tm.name), db.PoolOptions{MaxConns: 2})
		if err != nil {
			tm.err = err
			return
		}
		defer pool.Close()
		tm.err = db.Migrate(ctx, pool)
	})
	return tm.name, tm.err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DropTemplate removes the process's template database and the test databases it kept for reuse;
// call it from TestMain after m.Run.
func DropTemplate() {
	for _, name := range spare.drain() {
		_ = dropDatabase(name)
	}
	if migrated.name != "" {
		_ = dropDatabase(migrated.name)
	}
}

// spareDatabases keeps the databases of tests that ended, emptied, for the next test: cloning the
// template costs PostgreSQL a checkpoint-heavy CREATE DATABASE (about a second on a busy machine),
// emptying one a single TRUNCATE.
type spareDatabases struct {
	mu    sync.Mutex
	names []string
}

var spare spareDatabases // test-process cache, not wiring: it only recycles this process's databases

func (s *spareDatabases) take() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.names) == 0 {
		return "", false
	}
	name := s.names[len(s.names)-1]
	s.names = s.names[:len(s.names)-1]
	return name, true
}

func (s *spareDatabases) put(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = append(s.names, name)
}

func (s *spareDatabases) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.names
	s.names = nil
	return out
}

// emptyDatabase makes a used test database as the template left it: every table of ours and River's
// emptied and every sequence of ours restarted, the schema untouched. It refuses (and the database is
// dropped instead) if anyone is still connected or the schema was changed.
func emptyDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, dbURL(name))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var others int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others); err != nil {
		return err
	}
	if others > 0 {
		return fmt.Errorf("%d connections still open", others)
	}
	var tables []string
	rows, err := conn.Query(ctx, `SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'
		AND tablename NOT IN ('goose_db_version', 'river_migration')`)
	if err != nil {
		return err
	}
	if tables, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}
	var disabled int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'`).Scan(&disabled); err != nil {
		return err
	}
	if disabled > 0 {
		return fmt.Errorf("%d triggers left disabled", disabled)
	}
	// DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE's new files for ~40 tables and
	// their indexes cost twice as long per test. The replica role skips foreign-key checks and our
	// triggers, so the order does not matter and the change feed records nothing.
	var sql strings.Builder
	sql.WriteString("BEGIN; SET LOCAL session_replication_role = replica;")
	for _, t := range tables {
		sql.WriteString(" DELETE FROM " + t + ";")
	}
	sql.WriteString(` SELECT setval(format('%I.%I', schemaname, sequencename), coalesce(start_value, 1), false)
		FROM pg_sequences WHERE schemaname = 'public'; COMMIT;`)
	_, err = conn.Exec(ctx, sql.String())
	return err
}

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// Database is a fresh migrated database for one test, with a pool whose statements are counted.
type Database struct {
	Name    string
	URL     string
	Pool    *pgxpool.Pool
	Counter *StatementCounter
}

// NewDatabase gives the test a migrated database only it uses while it runs: an emptied one another
// test of this process used, or a fresh clone of the template. When the test ends it is emptied for
// the next test (or dropped, if it cannot be).
func NewDatabase(t testing.TB) *Database {
	t.Helper()
	tmpl, err := migrated.get()
	if err != nil {
		t.Fatalf("migrate template database: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name, reused := spare.take()
	if !reused {
		name = "taskgraph_test_" + randomHex(6)
		if err := adminExec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
			pgx.Identifier{name}.Sanitize(), pgx.Identifier{tmpl}.Sanitize())); err != nil {
			t.Fatalf("create test database: %v", err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := emptyDatabase(ctx, name); err == nil {
			spare.put(name)
			return
		}
		if err := dropDatabase(name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	counter := &StatementCounter{}
	pool, err := db.OpenPool(ctx, dbURL(name), db.PoolOptions{MaxConns: 10, Tracer: counter})
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return &Database{Name: name, URL: dbURL(name), Pool: pool, Counter: counter}
}

// StatementCounter is a pgx tracer that counts every SQL statement sent, batched ones included.
type StatementCounter struct {
	n atomic.Int64

	mu     sync.Mutex
	recent []string // the last statements, for failure messages
	// keyOf names the request a statement runs for (see KeyBy); byKey counts statements per name.
	keyOf func(context.Context) string
	byKey map[string]int64
}

// KeyBy makes the counter also count statements per key, keyOf(ctx) of the statement's context
// (the server's request id, say), so a test can count one request's statements while background
// work (jobs, listeners) runs statements of its own on the same pool.
func (c *StatementCounter) KeyBy(keyOf func(context.Context) string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keyOf, c.byKey = keyOf, map[string]int64{}
}

// CountFor returns how many statements have run under key (see KeyBy).
func (c *StatementCounter) CountFor(key string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[key]
}

func (c *StatementCounter) record(ctx context.Context, sql string) {
	c.n.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keyOf != nil {
		if k := c.keyOf(ctx); k != "" {
			c.byKey[k]++
		}
	}
	c.recent = append(c.recent, strings.Join(strings.Fields(sql), " "))
	if len(c.recent) > 50 {
		c.recent = c.recent[len(c.recent)-50:]
	}
}

// Recent returns up to the last n statements, oldest first.
func (c *StatementCounter) Recent(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.recent[max(0, len(c.recent)-n):])
}

// Count returns how many statements have run so far.
func (c *StatementCounter) Count() int64 { return c.n.Load() }

func (c *StatementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	c.record(ctx, d.SQL)
	return ctx
}

func (c *StatementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (c *StatementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (c *StatementCounter) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	c.record(ctx, d.SQL)
}

func (c *StatementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// CutEventListeners terminates the event bus listener connections (application_name
// taskgraph-events) on this database, as a PostgreSQL restart or a network fault would, and fails
// the test unless exactly want were cut.
func (d *Database) CutEventListeners(t testing.TB, want int) {
	t.Helper()
	var cut int
	err := d.Pool.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'taskgraph-events'`).Scan(&cut)
	if err != nil || cut != want {
		t.Fatalf("terminated %d event listeners (err %v), want %d", cut, err, want)
	}
}

// SeedTasks runs sql, a bulk INSERT into tasks for test setup, without the change-log triggers: the
// rows appear as if they had always been there, without a task_changes row and a live event each
// (a 100,000-row seed would otherwise spend most of its time announcing itself). The test owns its
// database, so switching the triggers off for one transaction disturbs nobody.
func (d *Database) SeedTasks(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		for _, stmt := range []string{
			`SET LOCAL statement_timeout = 0`,
			`ALTER TABLE tasks DISABLE TRIGGER tasks_record_insert_delete`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE tasks ENABLE TRIGGER tasks_record_insert_delete`)
		return err
	})
	if err != nil {
		t.Fatalf("seed tasks: %v", err)
	}
}
