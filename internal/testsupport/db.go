// Package testsupport gives tests a real, freshly migrated PostgreSQL database, a statement counter,
// the real HTTP handler behind httptest, a small GraphQL client and factories for users and tasks.
package testsupport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
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
	"github.com/taskgraph/taskgraph/migrations"
)

// serverURL is the PostgreSQL server tests create databases on (TEST_POSTGRES_URL overrides it).
func serverURL() string { return testenv.PostgresURL() }

func dbURL(name string) string { return serverURL() + "/" + name + "?sslmode=disable" }

// The test databases outlive the test process. One migrated template per set of migrations
// (taskgraph_tmpl_<hash>) and the emptied test databases cloned from it (taskgraph_test_<hash>_<id>)
// stay on the server for the next test process: migrating a template and cloning and dropping
// databases cost PostgreSQL a second or more each (CREATE and DROP DATABASE checkpoint), which every
// test binary used to pay. A process claims a test database with a session-level advisory lock on
// its own connection to the maintenance database, so concurrent test processes (go test runs
// packages in parallel) never share one, and a process that dies releases its claims with its
// connection.
type databasePool struct {
	mu     sync.Mutex
	hash   string          // of the migrations: a schema change gets a new template and new databases
	tmpl   string          // the migrated template's name, once made
	schema string          // its schemaFingerprint: an emptied database must still match it
	claims *pgx.Conn       // holds this process's advisory locks; nil until the first claim
	held   map[string]bool // every database this process claimed (in use or free)
	free   []string        // claimed by this process, not in use by a test
	err    error
}

var pool databasePool // test-process state, not wiring: it only tracks this process's claims

func testDatabasePrefix(hash string) string { return "taskgraph_test_" + hash + "_" }

// migrationsHash names the schema the template is migrated to.
func migrationsHash() (string, error) {
	h := sha256.New()
	h.Write([]byte("pool v2\x00")) // v2: templates carry their schema fingerprint

	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// setup makes (once per process) the claims connection and, if no earlier process left it, the
// template for this set of migrations.
func (p *databasePool) setup(ctx context.Context) error {
	if p.claims != nil || p.err != nil {
		return p.err
	}
	p.err = func() error {
		hash, err := migrationsHash()
		if err != nil {
			return fmt.Errorf("hash migrations: %w", err)
		}
		conn, err := pgx.Connect(ctx, dbURL("postgres"))
		if err != nil {
			return fmt.Errorf("connect to maintenance database: %w", err)
		}
		tmpl := "taskgraph_tmpl_" + hash
		if err := ensureTemplate(ctx, conn, tmpl); err != nil {
			conn.Close(ctx)
			return err
		}
		var schema string
		if err := conn.QueryRow(ctx, `SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $1`, tmpl).Scan(&schema); err != nil || schema == "" {
			conn.Close(ctx)
			return fmt.Errorf("template %s has no schema fingerprint (%v): drop it to have it rebuilt", tmpl, err)
		}
		p.hash, p.tmpl, p.schema, p.claims = hash, tmpl, schema, conn
		p.sweepStale(ctx)
		return nil
	}()
	return p.err
}

// ensureTemplate migrates the template under a lock that every test process takes for it, building
// it under a temporary name and renaming it when done, so no process ever clones a half-migrated one.
func ensureTemplate(ctx context.Context, conn *pgx.Conn, tmpl string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended($1, 0))`, tmpl); err != nil {
		return fmt.Errorf("lock template %s: %w", tmpl, err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, tmpl) //nolint:errcheck // released with the connection anyway
	if exists, err := databaseExists(ctx, conn, tmpl); err != nil || exists {
		return err
	}
	building := tmpl + "_building"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{building}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop half-built template: %w", err)
	}
	if err := db.EnsureDatabase(ctx, dbURL(building)); err != nil {
		return err
	}
	migrated, err := db.OpenPool(ctx, dbURL(building), db.PoolOptions{MaxConns: 2})
	if err != nil {
		return err
	}
	err = db.Migrate(ctx, migrated)
	var fingerprint string
	if err == nil {
		err = migrated.QueryRow(ctx, schemaFingerprint).Scan(&fingerprint)
	}
	migrated.Close()
	if err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	// The fingerprint goes on the template itself, for every process to check clones against.
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{building}.Sanitize()+" IS "+quoteLiteral(fingerprint)); err != nil {
		return fmt.Errorf("record template fingerprint: %w", err)
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{building}.Sanitize()+" RENAME TO "+pgx.Identifier{tmpl}.Sanitize())
	return err
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// schemaFingerprint sums up what a test could change in a schema and leave behind: relations and
// their columns, constraints, triggers (and whether they are enabled) and functions. A test that
// adds a trigger to inject a failure, say, must not hand it to the next test.
const schemaFingerprint = `SELECT md5(string_agg(x, E'\n' ORDER BY x)) FROM (
	SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind <> 't'
	UNION ALL SELECT 'col ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
		|| ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
	UNION ALL SELECT 'con ' || conrelid::regclass::text || '.' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
		WHERE connamespace = 'public'::regnamespace
	UNION ALL SELECT 'trg ' || tgrelid::regclass::text || '.' || tgname || ' ' || tgenabled::text || ' ' || pg_get_triggerdef(oid) FROM pg_trigger
		WHERE NOT tgisinternal
	UNION ALL SELECT 'fn ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) FROM pg_proc p
		WHERE p.pronamespace = 'public'::regnamespace
) schema(x)`

// sweepStale drops the unclaimed test databases made for other migrations (an earlier checkout's),
// so they do not pile up. Templates are left: another checkout may be cloning its own right now.
func (p *databasePool) sweepStale(ctx context.Context) {
	// Only names of this pool's form (taskgraph_test_<hash>_<id>): another tool's, or one an older
	// test kit made without claiming it, may be in use.
	rows, err := p.claims.Query(ctx, `SELECT datname FROM pg_database
		WHERE datname ~ '^taskgraph_test_[0-9a-f]{12}_[0-9a-f]{8}$' AND NOT starts_with(datname, $1)`, testDatabasePrefix(p.hash))
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		if p.tryLock(ctx, name) {
			_ = p.dropLocked(ctx, name)
		}
	}
}

func databaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var exists bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	return exists, err
}

// take claims a database for a test: one this process already claimed, else an unclaimed one an
// earlier process left, else a new clone of the template. NewDatabase empties it before use.
func (p *databasePool) take(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.setup(ctx); err != nil {
		return "", err
	}
	return p.claim(ctx)
}

// claim returns a claimed database: a free one of this process, or an unclaimed one on the server,
// or a fresh clone.
func (p *databasePool) claim(ctx context.Context) (string, error) {
	if n := len(p.free); n > 0 {
		name := p.free[n-1]
		p.free = p.free[:n-1]
		return name, nil
	}
	rows, err := p.claims.Query(ctx, `SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname`,
		testDatabasePrefix(p.hash))
	if err != nil {
		return "", fmt.Errorf("list test databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("list test databases: %w", err)
	}
	for _, name := range names {
		if !p.held[name] && p.tryLock(ctx, name) {
			return name, nil
		}
	}
	name := testDatabasePrefix(p.hash) + randomHex(4)
	if p.held[name] || !p.tryLock(ctx, name) {
		return "", fmt.Errorf("claim new test database %s: lock taken", name)
	}
	if _, err := p.claims.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{p.tmpl}.Sanitize())); err != nil {
		return "", fmt.Errorf("create test database: %w", err)
	}
	// A test database need not survive a crash of the server: commits skip the WAL flush, which
	// was most of a write's latency in tests.
	if _, err := p.claims.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET synchronous_commit = off"); err != nil {
		return "", fmt.Errorf("configure test database: %w", err)
	}
	return name, nil
}

// tryLock claims name for this process. Session locks are re-entrant (a lock this connection holds
// is granted again), so callers skip the names in held.
func (p *databasePool) tryLock(ctx context.Context, name string) bool {
	var ok bool
	err := p.claims.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, name).Scan(&ok)
	if err != nil || !ok {
		return false
	}
	if p.held == nil {
		p.held = map[string]bool{}
	}
	p.held[name] = true
	return true
}

func (p *databasePool) drop(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropLocked(ctx, name)
}

func (p *databasePool) dropLocked(ctx context.Context, name string) error {
	if _, err := p.claims.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop test database %s: %w", name, err)
	}
	_, _ = p.claims.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, name)
	delete(p.held, name)
	return nil
}

// put gives a test's database back for the next test. It is emptied when taken again.
func (p *databasePool) put(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, name)
}

// maxPooledDatabases bounds how many test databases stay on the server between runs: about what the
// parallel packages of one `go test ./...` use at once.
const maxPooledDatabases = 24

// ReleaseDatabases gives back this process's claims; call it from TestMain after m.Run. The databases
// stay for the next test process, except any beyond maxPooledDatabases.
func ReleaseDatabases() {
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.claims == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pooled int
	_ = pool.claims.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE starts_with(datname, $1)`,
		testDatabasePrefix(pool.hash)).Scan(&pooled)
	for _, name := range pool.free {
		if pooled <= maxPooledDatabases {
			break
		}
		if pool.dropLocked(ctx, name) == nil {
			pooled--
		}
	}
	pool.free, pool.held = nil, nil
	_ = pool.claims.Close(ctx)
	pool.claims = nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// emptyTables empties every table of ours and River's in one round trip, leaving the schema: it
// checks each table for a row (a test leaves rows in a few of ~40) and deletes from those that
// have one. DELETE, not TRUNCATE: TRUNCATE's new files for each table and its indexes cost more. The
// replica role skips foreign-key checks and our triggers, so the order does not matter and the change
// feed records nothing. Sequences are restarted.
const emptyTables = `DO $$
DECLARE
	t text;
	found boolean;
BEGIN
	SET LOCAL session_replication_role = replica;
	FOR t IN SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'
		AND tablename NOT IN ('goose_db_version', 'river_migration')
	LOOP
		EXECUTE 'SELECT EXISTS (SELECT FROM ' || t || ')' INTO found;
		IF found THEN
			EXECUTE 'DELETE FROM ' || t;
		END IF;
	END LOOP;
	PERFORM setval(format('%I.%I', schemaname, sequencename), coalesce(start_value, 1), false)
		FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL;
END $$`

// emptyDatabase makes a used test database as the template left it, through one of the test's own
// connections (its catalog caches then serve the test). It refuses (and the database is dropped
// instead) if anyone else is still connected or its schema no longer matches the template's.
func emptyDatabase(ctx context.Context, conns *pgxpool.Pool, schema string) error {
	conn, err := conns.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var got string
	if err := conn.QueryRow(ctx, schemaFingerprint).Scan(&got); err != nil {
		return err
	}
	if got != schema {
		return errors.New("the schema differs from the template's (a test changed it)")
	}
	// The last test's connections are closed, but their backends may still be exiting.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var others int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&others); err != nil {
			return err
		}
		if others == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d connections still open", others)
		}
	}
	_, err = conn.Exec(ctx, emptyTables)
	return err
}

// Database is a migrated, empty database for one test, with a pool whose statements are counted.
type Database struct {
	Name    string
	URL     string
	Pool    *pgxpool.Pool
	Counter *StatementCounter
}

// NewDatabase gives the test a migrated, empty database only it uses while it runs (see
// databasePool); when the test ends it goes back for the next test.
func NewDatabase(t testing.TB) *Database {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		name, err := pool.take(ctx)
		if err != nil {
			t.Fatalf("test database: %v", err)
		}
		counter := &StatementCounter{}
		conns, err := db.OpenPool(ctx, dbURL(name), db.PoolOptions{MaxConns: 10, Tracer: counter})
		if err != nil {
			t.Fatalf("open test database: %v", err)
		}
		if err := emptyDatabase(ctx, conns, pool.schema); err != nil {
			conns.Close()
			if err := pool.drop(ctx, name); err != nil {
				t.Fatalf("%v", err)
			}
			continue
		}
		counter.reset()
		t.Cleanup(func() { pool.put(name) })
		t.Cleanup(conns.Close)
		return &Database{Name: name, URL: dbURL(name), Pool: conns, Counter: counter}
	}
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

// reset forgets every statement so far (the database's preparation, before the test gets it).
func (c *StatementCounter) reset() {
	c.n.Store(0)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recent = nil
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
