package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// serveEnv makes the test binary act as the server process (the benchmark starts the server as a
// separate process; in a test there is no taskgraph binary to start, so the test binary serves).
const serveEnv = "TASKGRAPH_BENCH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	testsupport.ReleaseDatabases()
	os.Exit(code)
}

// serve does what `taskgraph serve` does on an already migrated database.
func serve() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool, err := db.OpenPool(ctx, cfg.DatabaseURL, db.PoolOptions{MaxConns: cfg.DBMaxConns})
	if err != nil {
		return err
	}
	defer pool.Close()
	app, err := server.Build(cfg, pool, logger, server.Observability{})
	if err != nil {
		return err
	}
	defer app.Close()
	return server.Run(ctx, cfg, app.Handler, logger, nil)
}
