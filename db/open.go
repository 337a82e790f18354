package db

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	pgxuuid "github.com/vgarvardt/pgx-google-uuid/v5"

	"github.com/taskgraph/taskgraph/migrations"
)

// Pool tuning. Idle connections are released so a quiet server holds none; lifetimes are capped (with
// jitter, so they do not all reconnect at once) to follow failovers and bound per-connection memory.
const (
	poolDefaultMaxConns     = 20
	poolMaxConnIdleTime     = 5 * time.Minute
	poolMaxConnLifetime     = time.Hour
	poolMaxLifetimeJitter   = 5 * time.Minute
	poolHealthCheckPeriod   = 30 * time.Second
	poolStatementTimeout    = 15 * time.Second
	poolApplicationName     = "taskgraph"
	maintenanceDatabase     = "postgres"
	migrationPoolMaxConns   = 2
	pgDuplicateDatabase     = "42P04"
	pgDatabaseNameIndex     = "pg_database_datname_index"
	pgUniqueViolationOnName = "23505"
)

// PoolOptions tunes OpenPool. The zero value is usable.
type PoolOptions struct {
	MaxConns int32           // 0 means 20
	Tracer   pgx.QueryTracer // optional, e.g. for query logging or tracing
}

// EnsureDatabase creates the database named in databaseURL if it does not exist yet, so a fresh server
// can start against an empty PostgreSQL. It connects to the "postgres" maintenance database with the
// same credentials.
func EnsureDatabase(ctx context.Context, databaseURL string) error {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return redactPassword(err, "db: parse database URL", passwordIn(databaseURL))
	}
	name := cfg.Database
	if name == "" {
		return errors.New("db: database URL names no database")
	}
	maint := cfg.Copy()
	maint.Database = maintenanceDatabase
	conn, err := pgx.ConnectConfig(ctx, maint)
	if err != nil {
		return redactPassword(err, fmt.Sprintf("db: connect to %s to ensure database %q", describeTarget(maint), name), cfg.Password)
	}
	defer conn.Close(ctx)

	var one int
	err = conn.QueryRow(ctx, "SELECT 1 FROM pg_database WHERE datname = $1", name).Scan(&one)
	if err == nil {
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("db: look up database %q: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		if createdConcurrently(err) {
			return nil
		}
		return fmt.Errorf("db: create database %q: %w", name, err)
	}
	return nil
}

// createdConcurrently reports whether CREATE DATABASE lost a race with another instance. PostgreSQL
// reports 42P04 when the name existed before the statement, but a truly simultaneous create surfaces
// as a unique violation on the pg_database name index.
func createdConcurrently(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == pgDuplicateDatabase ||
		(pgErr.Code == pgUniqueViolationOnName && pgErr.ConstraintName == pgDatabaseNameIndex)
}

// OpenPool opens a connection pool and pings it, so a wrong URL fails at startup rather than on the
// first request.
func OpenPool(ctx context.Context, databaseURL string, opts PoolOptions) (*pgxpool.Pool, error) {
	pool, err := NewPool(databaseURL, opts)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		cfg := pool.Config()
		return nil, redactPassword(err, "db: connect to "+describeTarget(cfg.ConnConfig), cfg.ConnConfig.Password)
	}
	return pool, nil
}

// NewPool configures a pool like OpenPool but does not connect: for replicas, which may be down at
// start and join the read rotation once they answer.
func NewPool(databaseURL string, opts PoolOptions) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, redactPassword(err, "db: parse database URL", passwordIn(databaseURL))
	}
	cfg.MaxConns = cmp.Or(opts.MaxConns, poolDefaultMaxConns)
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = poolMaxConnIdleTime
	cfg.MaxConnLifetime = poolMaxConnLifetime
	cfg.MaxConnLifetimeJitter = poolMaxLifetimeJitter
	cfg.HealthCheckPeriod = poolHealthCheckPeriod
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	// pgx sends a google/uuid value through its driver.Valuer (text, then a failed binary encode and
	// a re-parse) and scans one through sql.Scanner (text again) unless told the type: every id
	// argument and id column paid for that.
	cfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		pgxuuid.Register(conn.TypeMap())
		return nil
	}
	params := cfg.ConnConfig.RuntimeParams
	params["application_name"] = poolApplicationName
	// A server-side limit, so no query (or stuck client) can hold a connection forever.
	params["statement_timeout"] = strconv.FormatInt(poolStatementTimeout.Milliseconds(), 10)

	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, redactPassword(err, "db: create pool for "+describeTarget(cfg.ConnConfig), cfg.ConnConfig.Password)
	}
	return pool, nil
}

// Migrate applies every pending migration from package migrations, then River's migrations (the job
// queue's tables, see internal/jobs). PostgreSQL advisory locks make instances that start together
// wait for each other, so each migration runs exactly once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	// Migrations get their own small pool without the request statement_timeout: building an index on
	// a large table may legitimately take longer than 15s. Goose runs everything on one connection.
	cfg := pool.Config()
	cfg.MaxConns = migrationPoolMaxConns
	cfg.MinConns = 0
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "0"
	migPool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return redactPassword(err, "db: create migration pool for "+describeTarget(cfg.ConnConfig), cfg.ConnConfig.Password)
	}
	defer migPool.Close()

	if err := migrateSchema(ctx, migPool); err != nil {
		return err
	}
	return migrateJobs(ctx, migPool)
}

// riverMigrationLock is the advisory lock key held while River's migrations run (River takes none of
// its own): "tgriver" in ASCII.
const riverMigrationLock int64 = 0x7467726976657200

// migrateJobs applies River's pending migrations (river_job, river_leader, ...) under an advisory
// lock on a connection of its own, so concurrent starts apply each exactly once.
func migrateJobs(ctx context.Context, migPool *pgxpool.Pool) error {
	conn, err := migPool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("db: job queue migrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", riverMigrationLock); err != nil {
		return fmt.Errorf("db: job queue migration lock: %w", err)
	}
	defer func() {
		// Unlock even when ctx has ended; if that fails, closing the pool ends the session and the lock.
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(unlockCtx, "SELECT pg_advisory_unlock($1)", riverMigrationLock); err != nil {
			_ = conn.Conn().Close(unlockCtx) // the session, and with it the lock, ends either way
		}
	}()
	migrator, err := rivermigrate.New(riverpgxv5.New(migPool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("db: job queue migrations: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("db: job queue migrations: %w", err)
	}
	return nil
}

// migrateSchema applies Taskgraph's own migrations (goose) under goose's session lock.
func migrateSchema(ctx context.Context, migPool *pgxpool.Pool) error {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("db: create migration lock: %w", err)
	}
	provider, sqlDB, err := newMigrationProvider(migPool, goose.WithSessionLocker(locker))
	if err != nil {
		return err
	}
	defer sqlDB.Close()

	if _, err := provider.Up(ctx); err != nil {
		var partial *goose.PartialError
		if errors.As(err, &partial) && partial.Failed != nil && partial.Failed.Source != nil {
			src := partial.Failed.Source
			return fmt.Errorf("db: migration %d (%s) failed: %w", src.Version, path.Base(src.Path), partial.Err)
		}
		return fmt.Errorf("db: migrate: %w", err)
	}
	return nil
}

// MigrationStatus returns the highest migration version applied to the database (0 when none).
func MigrationStatus(ctx context.Context, pool *pgxpool.Pool) (current int64, err error) {
	provider, sqlDB, err := newMigrationProvider(pool)
	if err != nil {
		return 0, err
	}
	defer sqlDB.Close()
	current, err = provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("db: read migration version: %w", err)
	}
	return current, nil
}

// newMigrationProvider builds a goose provider over pool; the caller closes the returned *sql.DB (which
// leaves pool open).
func newMigrationProvider(pool *pgxpool.Pool, opts ...goose.ProviderOption) (*goose.Provider, *sql.DB, error) {
	sqlDB := stdlib.OpenDBFromPool(pool)
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, opts...)
	if err != nil {
		sqlDB.Close()
		return nil, nil, fmt.Errorf("db: load migrations: %w", err)
	}
	return provider, sqlDB, nil
}

// describeTarget names a server and database for error messages, never the credentials.
func describeTarget(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// passwordIn extracts the password from a URL-style connection string, so it can be scrubbed from
// parse errors; pgx itself only redacts on a best-effort basis.
func passwordIn(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil || u.User == nil {
		return ""
	}
	pw, _ := u.User.Password()
	return pw
}

// redactedError keeps the cause for errors.Is/As but renders a message with the password removed,
// because pgx errors may echo the connection string.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redactPassword(err error, prefix, password string) error {
	msg := prefix + ": " + err.Error()
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "xxxxx")
	}
	return &redactedError{msg: msg, err: err}
}
