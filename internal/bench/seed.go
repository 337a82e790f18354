package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
)

// seedVersion changes whenever the shape of the generated data changes, so older seeds are replaced.
const seedVersion = 1

// benchPassword is every seeded user's password (they all share one argon2id hash).
const benchPassword = "bench-password-1234"

// seedShape is what a seed is made of; a database holding another shape is reseeded.
type seedShape struct {
	Version, Users, Tasks, BenchUsers, PerBenchUser int
}

func (c Config) shape() seedShape {
	return seedShape{Version: seedVersion, Users: c.Users, Tasks: c.Tasks, BenchUsers: c.benchUsers(), PerBenchUser: c.TasksPerBenchUser()}
}

// benchEmail is the address of seeded user n (1-based). Users 1..BenchUsers sign in and drive the load.
func benchEmail(n int) string { return fmt.Sprintf("bench-%d@example.com", n) }

// openDatabase creates the benchmark database if needed (refusing one the benchmark did not create,
// unless c.ForceReseed), migrates it and returns a small pool for the setup work.
func openDatabase(ctx context.Context, c Config, logf func(string, ...any)) (*pgxpool.Pool, error) {
	if _, err := claimDatabase(ctx, c.DatabaseURL, c.ForceReseed, logf); err != nil {
		return nil, err
	}
	pool, err := db.OpenPool(ctx, c.DatabaseURL, db.PoolOptions{MaxConns: 4})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// seedStatus says whether the database holds the wanted seed.
type seedStatus struct {
	current     bool // holds exactly the wanted shape and row counts
	benchOwned  bool // was seeded by the benchmark (or is empty), so it may be overwritten
	users, rows int64
}

func checkSeed(ctx context.Context, conn *pgx.Conn, want seedShape) (seedStatus, error) {
	var st seedStatus
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tasks)`).Scan(&st.users, &st.rows); err != nil {
		return st, fmt.Errorf("count rows: %w", err)
	}
	var hasMeta bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('bench_seed') IS NOT NULL`).Scan(&hasMeta); err != nil {
		return st, fmt.Errorf("look for bench_seed: %w", err)
	}
	st.benchOwned = hasMeta || st.users == 0
	if !hasMeta {
		return st, nil
	}
	var got seedShape
	err := conn.QueryRow(ctx, `SELECT version, users, tasks, bench_users, per_bench_user FROM bench_seed`).
		Scan(&got.Version, &got.Users, &got.Tasks, &got.BenchUsers, &got.PerBenchUser)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read bench_seed: %w", err)
	}
	st.current = got == want && st.users == int64(want.Users) && st.rows == int64(want.Tasks)
	return st, nil
}

// ensureSeed makes the database hold cfg's seed, reseeding only when the shape or row counts differ (or
// cfg.ForceReseed). It refuses to overwrite users the benchmark did not seed unless cfg.ForceReseed. Either way it vacuums and analyzes
// users and tasks (earlier runs' writes leave dead rows) and ends every session, so each run signs in
// afresh. It reports whether it reseeded.
func ensureSeed(ctx context.Context, cfg Config, logf func(string, ...any)) (bool, error) {
	connCfg, err := pgx.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return false, fmt.Errorf("parse database URL: %w", err)
	}
	// Seeding and index builds take longer than the server's statement timeout.
	connCfg.RuntimeParams["statement_timeout"] = "0"
	connCfg.RuntimeParams["maintenance_work_mem"] = "1GB"
	connCfg.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	if err != nil {
		return false, fmt.Errorf("connect to seed: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	want := cfg.shape()
	st, err := checkSeed(ctx, conn, want)
	if err != nil {
		return false, err
	}
	reseeded := false
	if !st.current || cfg.ForceReseed {
		if !st.benchOwned && !cfg.ForceReseed {
			return false, fmt.Errorf("database %q holds %d users that the benchmark did not create: give -database a dedicated database, "+
				"or pass -force-reseed to delete them", connCfg.Database, st.users)
		}
		logf("seeding %d users and %d tasks (%d bench users with %d tasks each); this database had %d users and %d tasks",
			want.Users, want.Tasks, want.BenchUsers, want.PerBenchUser, st.users, st.rows)
		start := time.Now()
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return seed(ctx, tx, want) }); err != nil {
			return false, fmt.Errorf("seed: %w", err)
		}
		logf("seeded in %s", time.Since(start).Round(time.Second))
		reseeded = true
	}
	start := time.Now()
	for _, sql := range []string{`DELETE FROM sessions`, `VACUUM (ANALYZE) users`, `VACUUM (ANALYZE) tasks`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return false, fmt.Errorf("%s: %w", sql, err)
		}
	}
	logf("vacuumed and analyzed in %s", time.Since(start).Round(100*time.Millisecond))
	return reseeded, nil
}

// secondaryIndex is an index that can be dropped before a bulk load and rebuilt after it.
type secondaryIndex struct {
	schema, name, def string
}

// sqlStep is one statement of the seed, named for error messages.
type sqlStep struct {
	what string
	sql  string
	args []any
}

// seed replaces all data with the wanted shape, in one transaction: an interrupted seed leaves the
// previous data and every index as they were. Secondary indexes are read from the catalog, dropped,
// and rebuilt after the load (much faster than maintaining them row by row), so the schema stays
// exactly what the migrations made.
func seed(ctx context.Context, tx pgx.Tx, s seedShape) error {
	hash, err := auth.HashPassword(benchPassword)
	if err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `
		SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid)
		FROM pg_index i
		JOIN pg_class c ON c.oid = i.indexrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE i.indrelid IN ('users'::regclass, 'tasks'::regclass)
		  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
		ORDER BY c.relname`)
	if err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}
	indexes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (secondaryIndex, error) {
		var ix secondaryIndex
		return ix, r.Scan(&ix.schema, &ix.name, &ix.def)
	})
	if err != nil {
		return fmt.Errorf("list indexes: %w", err)
	}

	restFrom, restCount := s.BenchUsers, s.Users-s.BenchUsers
	if restCount == 0 {
		restFrom, restCount = 0, s.Users
	}
	steps := []sqlStep{
		{"truncate", `TRUNCATE users, sessions, refresh_tokens, tasks CASCADE`, nil},
		{"record the shape", `CREATE TABLE IF NOT EXISTS bench_seed (
			version int NOT NULL, users int NOT NULL, tasks int NOT NULL, bench_users int NOT NULL,
			per_bench_user int NOT NULL, seeded_at timestamptz NOT NULL DEFAULT now())`, nil},
		{"record the shape", `DELETE FROM bench_seed`, nil},
		{"number the users", `CREATE TEMP TABLE seed_owner (n int PRIMARY KEY, id uuid NOT NULL) ON COMMIT DROP`, nil},
		{"number the users", `INSERT INTO seed_owner SELECT g, gen_random_uuid() FROM generate_series(1, $1::int) g`, []any{s.Users}},
		{"number the users", `ANALYZE seed_owner`, nil},
	}
	for _, ix := range indexes {
		steps = append(steps, sqlStep{"drop index " + ix.name, "DROP INDEX " + pgx.Identifier{ix.schema, ix.name}.Sanitize(), nil})
	}
	steps = append(steps, []sqlStep{
		{"insert users", `
			INSERT INTO users (id, name, email, password_hash, created_at, updated_at)
			SELECT id, 'Bench User ' || n, 'bench-' || n || '@example.com', $1,
			       now() - make_interval(mins => n), now() - make_interval(mins => n)
			FROM seed_owner`, []any{hash}},
		// Tasks 1..BenchUsers*PerBenchUser belong to the bench users, PerBenchUser each; the rest go to
		// the other users with a skew (owner = first + rest * u², u uniform from a hash of the row
		// number), so a few users have hundreds of tasks and most have a handful. created_at falls
		// 30 s apart per row, so every list has a strict order.
		{"insert tasks", `
			INSERT INTO tasks (id, owner_id, title, description, status, priority, due_at, tags, created_at, updated_at)
			SELECT gen_random_uuid(), o.id,
			       'Task ' || s.g || ': ' || (ARRAY['write the report', 'call the bank', 'review the pull request',
			           'plan the sprint', 'book the flights', 'pay the invoice', 'fix the login bug', 'water the plants'])[1 + s.h % 8],
			       CASE WHEN s.h % 5 = 0 THEN 'Notes for task ' || s.g || ': remember the details.' END,
			       (ARRAY['TODO', 'IN_PROGRESS', 'DONE'])[1 + s.h % 3],
			       (s.h / 3) % 4,
			       CASE WHEN s.h % 10 < 6 THEN s.created + make_interval(days => (s.h % 90)::int - 30) END,
			       CASE s.h % 4 WHEN 0 THEN '{work}'::text[] WHEN 1 THEN '{home,errand}'::text[] ELSE '{}'::text[] END,
			       s.created, s.created
			FROM (
			    SELECT g, hashint4(g)::bigint + 2147483648 AS h, now() - make_interval(secs => g * 30) AS created,
			           CASE WHEN g <= $1::bigint * $2::int THEN (g - 1) / $2::int + 1
			                ELSE $3::int + 1 + floor($4::int * power((hashint4(g + 7919)::float8 + 2147483648) / 4294967296, 2))::int
			           END AS owner_n
			    FROM generate_series(1, $5::int) g
			) s
			JOIN seed_owner o ON o.n = s.owner_n`, []any{s.BenchUsers, s.PerBenchUser, restFrom, restCount, s.Tasks}},
	}...)
	for _, ix := range indexes {
		steps = append(steps, sqlStep{"rebuild index " + ix.name, ix.def, nil})
	}
	steps = append(steps, sqlStep{"record the shape", `INSERT INTO bench_seed (version, users, tasks, bench_users, per_bench_user) VALUES ($1, $2, $3, $4, $5)`,
		[]any{s.Version, s.Users, s.Tasks, s.BenchUsers, s.PerBenchUser}})

	for _, st := range steps {
		if _, err := tx.Exec(ctx, st.sql, st.args...); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	var users, tasks int64
	if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM tasks)`).Scan(&users, &tasks); err != nil {
		return fmt.Errorf("count seeded rows: %w", err)
	}
	if users != int64(s.Users) || tasks != int64(s.Tasks) {
		return fmt.Errorf("seeded %d users and %d tasks, want %d and %d", users, tasks, s.Users, s.Tasks)
	}
	return nil
}
