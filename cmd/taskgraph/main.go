// Command taskgraph is the Taskgraph GraphQL task server.
//
//	taskgraph [serve]            run the server (creates and migrates the database first)
//	taskgraph migrate            apply migrations and exit
//	taskgraph set-role EMAIL ROLE  make a user USER or ADMIN
//	taskgraph --help             list every setting with its default
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "taskgraph:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

const usageText = `Taskgraph: a GraphQL API server for task management.

Usage:
  taskgraph [serve]               run the server (creates and migrates the database on start)
  taskgraph migrate               apply database migrations and exit
  taskgraph set-role EMAIL ROLE   set a user's role (USER or ADMIN)
  taskgraph --help                show this help

Settings come from the environment:
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usageText)
		config.Usage(stdout)
		return nil
	case "serve", "migrate", "set-role":
	default:
		fmt.Fprint(stderr, usageText)
		config.Usage(stderr)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}

	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	logger := newLogger(stderr, cfg.LogLevel)
	logger.Info("starting", "command", cmd, "config", cfg)
	if cfg.GeneratedSecret {
		logger.Warn("JWT_SECRET is not set: using a random secret for this run; tokens and cursors will not survive a restart")
	}

	pool, err := openDatabase(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	switch cmd {
	case "migrate":
		logger.Info("migrations applied")
		return nil
	case "set-role":
		return setRole(ctx, pool, args[1:], stdout)
	}
	return serve(ctx, cfg, pool, logger)
}

// openDatabase creates the database if needed, connects and migrates: a fresh machine needs no setup.
func openDatabase(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	pool, err := db.OpenPool(ctx, cfg.DatabaseURL, db.PoolOptions{MaxConns: cfg.DBMaxConns})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func serve(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger) error {
	app, err := server.Build(cfg, pool, logger)
	if err != nil {
		return err
	}
	defer app.Close()
	return server.Run(ctx, cfg, app.Handler, logger, nil)
}

func setRole(ctx context.Context, pool *pgxpool.Pool, args []string, stdout io.Writer) error {
	if len(args) != 2 {
		return fmt.Errorf("%w: set-role needs EMAIL and ROLE", errUsage)
	}
	role := auth.Role(strings.ToUpper(args[1]))
	if !role.Valid() {
		return fmt.Errorf("%w: role must be USER or ADMIN, got %q", errUsage, args[1])
	}
	u, err := db.New(pool, nil).Stores().Users.SetRole(ctx, args[0], role)
	if err != nil {
		return fmt.Errorf("set role of %s: %w", args[0], err)
	}
	fmt.Fprintf(stdout, "%s is now %s\n", u.Email, u.Role)
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
