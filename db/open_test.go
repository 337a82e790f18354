package db

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/taskgraph/taskgraph/migrations"
)

// openTestServer is the local PostgreSQL these tests create throwaway databases on.
const openTestServer = "postgres://postgres@127.0.0.1:5432"

// newOpenTestDatabase returns a URL for a database name that does not exist yet and drops that
// database when the test ends (after the test's own cleanups, e.g. closing pools).
// newMigratedTestPool creates a fresh database for t, migrates it to the latest version and returns a
// small pool on it (closed when t ends).
func newMigratedTestPool(ctx context.Context, t *testing.T) *pgxpool.Pool {
	t.Helper()
	databaseURL, _ := newOpenTestDatabase(t)
	if err := EnsureDatabase(ctx, databaseURL); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	pool, err := OpenPool(ctx, databaseURL, PoolOptions{MaxConns: 3})
	if err != nil {
		t.Fatalf("OpenPool: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}

func newOpenTestDatabase(t *testing.T) (databaseURL, name string) {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name = "taskgraph_opentest_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, openTestServer+"/postgres?sslmode=disable")
		if err != nil {
			t.Errorf("cleanup: connect: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: drop %s: %v", name, err)
		}
	})
	return openTestServer + "/" + name + "?sslmode=disable", name
}

func databaseExists(ctx context.Context, t *testing.T, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, openTestServer+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatalf("look up %s: %v", name, err)
	}
	return exists
}

func TestEnsureDatabaseOpenPoolMigrate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	databaseURL, name := newOpenTestDatabase(t)

	if databaseExists(ctx, t, name) {
		t.Fatalf("%s exists before EnsureDatabase", name)
	}
	if err := EnsureDatabase(ctx, databaseURL); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	if !databaseExists(ctx, t, name) {
		t.Fatalf("%s missing after EnsureDatabase", name)
	}
	// Already existing: both calls must succeed.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureDatabase(ctx, databaseURL) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureDatabase again (#%d): %v", i, err)
		}
	}

	pool, err := OpenPool(ctx, databaseURL, PoolOptions{MaxConns: 3})
	if err != nil {
		t.Fatalf("OpenPool: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered earlier
	if got := pool.Config().MaxConns; got != 3 {
		t.Errorf("MaxConns = %d, want 3", got)
	}
	var appName, timeout string
	if err := pool.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('statement_timeout')").Scan(&appName, &timeout); err != nil {
		t.Fatalf("read settings: %v", err)
	}
	if appName != "taskgraph" || timeout != "15s" {
		t.Errorf("application_name, statement_timeout = %q, %q; want taskgraph, 15s", appName, timeout)
	}

	if v, err := MigrationStatus(ctx, pool); err != nil || v != 0 {
		t.Fatalf("MigrationStatus before Migrate = %d, %v; want 0, nil", v, err)
	}
	for i := range 2 { // the second run must be a no-op
		if err := Migrate(ctx, pool); err != nil {
			t.Fatalf("Migrate run %d: %v", i+1, err)
		}
	}
	for _, table := range []string{"users", "tasks", "sessions", "refresh_tokens", "notifications", "webhooks", "river_job", "river_leader"} {
		var found *string
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", "public."+table).Scan(&found); err != nil {
			t.Fatalf("look up table %s: %v", table, err)
		}
		if found == nil {
			t.Errorf("table %s missing after Migrate", table)
		}
	}
	var versions []int64
	rows, _ := pool.Query(ctx, "SELECT version_id FROM goose_db_version WHERE is_applied AND version_id > 0 ORDER BY id")
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("read goose_db_version: %v", err)
	}
	want := migrationVersions(t)
	if fmt.Sprint(versions) != fmt.Sprint(want) {
		t.Errorf("applied versions = %v, want %v (each migration recorded exactly once)", versions, want)
	}
	if v, err := MigrationStatus(ctx, pool); err != nil || v != want[len(want)-1] {
		t.Errorf("MigrationStatus after Migrate = %d, %v; want %d, nil", v, err, want[len(want)-1])
	}
	// River's migrations ran too, each recorded once.
	var riverVersions, distinct int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM river_migration").Scan(&riverVersions, &distinct); err != nil {
		t.Fatalf("read river_migration: %v", err)
	}
	if riverVersions == 0 || riverVersions != distinct {
		t.Errorf("river_migration has %d rows, %d distinct versions; want each River migration once", riverVersions, distinct)
	}
}

func TestEnsureDatabaseConcurrentCreate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	databaseURL, name := newOpenTestDatabase(t)

	// Instances starting together race to CREATE DATABASE; every one must succeed.
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() { errs[i] = EnsureDatabase(ctx, databaseURL) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("EnsureDatabase #%d: %v", i, err)
		}
	}
	if !databaseExists(ctx, t, name) {
		t.Fatalf("%s missing after concurrent EnsureDatabase", name)
	}
}

func TestMigrateConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: races migrations from several pools")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	databaseURL, _ := newOpenTestDatabase(t)
	if err := EnsureDatabase(ctx, databaseURL); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	pool, err := OpenPool(ctx, databaseURL, PoolOptions{})
	if err != nil {
		t.Fatalf("OpenPool: %v", err)
	}
	t.Cleanup(pool.Close)

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(ctx, pool) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id = 1").Scan(&n); err != nil {
		t.Fatalf("read goose_db_version: %v", err)
	}
	if n != 1 {
		t.Errorf("version 1 recorded %d times, want once", n)
	}
	var riverVersions, distinct int
	if err := pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM river_migration").Scan(&riverVersions, &distinct); err != nil {
		t.Fatalf("read river_migration: %v", err)
	}
	if riverVersions == 0 || riverVersions != distinct {
		t.Errorf("river_migration has %d rows, %d distinct versions; want each River migration once", riverVersions, distinct)
	}
}

func TestOpenPoolBadPortHidesPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const password = "s3cretpw"
	pool, err := OpenPool(ctx, "postgres://postgres:"+password+"@127.0.0.1:1/taskgraph?sslmode=disable&connect_timeout=2", PoolOptions{})
	if err == nil {
		pool.Close()
		t.Fatal("OpenPool on port 1 succeeded, want an error")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error leaks the password: %v", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1/taskgraph") {
		t.Errorf("error %q does not name the server and database", err)
	}
}

func TestOpenPoolBadURLHidesPassword(t *testing.T) {
	const password = "s3cretpw"
	// An invalid port makes pgx fail while parsing, where it echoes the connection string.
	_, err := OpenPool(context.Background(), "postgres://postgres:"+password+"@127.0.0.1:notaport/taskgraph", PoolOptions{})
	if err == nil {
		t.Fatal("OpenPool with an invalid URL succeeded, want an error")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("error leaks the password: %v", err)
	}
	if err := EnsureDatabase(context.Background(), "postgres://postgres:"+password+"@127.0.0.1:notaport/taskgraph"); err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("EnsureDatabase error = %v; want an error without the password", err)
	}
}

// TestAssigneeMigrationDownAndUp checks that migration 2 (task assignees) rolls back cleanly (with the
// migrations after it) and applies again, keeping the tasks.
func TestAssigneeMigrationDownAndUp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: migrates down and up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newMigratedTestPool(ctx, t)
	if _, err := pool.Exec(ctx, `
		INSERT INTO users (id, name, email, password_hash) VALUES (gen_random_uuid(), 'M', 'm@example.com', 'x');
		INSERT INTO tasks (id, owner_id, assignee_id, title)
		SELECT gen_random_uuid(), id, id, 'kept' FROM users`); err != nil {
		t.Fatal(err)
	}
	hasAssignee := func() bool {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
			WHERE table_name = 'tasks' AND column_name = 'assignee_id'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	provider, sqlDB, err := newMigrationProvider(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := provider.DownTo(ctx, 1); err != nil {
		t.Fatalf("DownTo 1: %v", err)
	}
	if v, err := MigrationStatus(ctx, pool); err != nil || v != 1 || hasAssignee() {
		t.Fatalf("after Down: version %d, %v, assignee_id present %v; want 1 without the column", v, err, hasAssignee())
	}
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var tasks, assigned int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(assignee_id) FROM tasks`).Scan(&tasks, &assigned); err != nil {
		t.Fatal(err)
	}
	latest := migrationVersions(t)[len(migrationVersions(t))-1]
	if v, err := MigrationStatus(ctx, pool); err != nil || v != latest || !hasAssignee() || tasks != 1 || assigned != 0 {
		t.Fatalf("after Up: version %d, %v, column %v, tasks %d, assigned %d; want %d, the column, 1 task, none assigned",
			v, err, hasAssignee(), tasks, assigned, latest)
	}
}

// migrationVersions lists the versions of the embedded migrations, in order (their file names'
// numbers), so the tests follow new migrations without edits.
func migrationVersions(t *testing.T) []int64 {
	t.Helper()
	entries, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, name := range entries {
		n, err := strconv.ParseInt(strings.SplitN(name, "_", 2)[0], 10, 64)
		if err != nil {
			t.Fatalf("migration %s: %v", name, err)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
