// Command taskgraph is the Taskgraph GraphQL task server.
//
//	taskgraph [serve]            run the server (creates and migrates the database first)
//	taskgraph worker             run background job workers only
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
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/bench"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/redisx"
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
  taskgraph [serve]               run the server (creates and migrates the database on start); it also
                                  works background jobs unless JOBS_IN_PROCESS=false
  taskgraph worker                work background jobs only (run as many as you like, next to serve)
  taskgraph migrate               apply database migrations and exit
  taskgraph set-role EMAIL ROLE   set a user's role (USER or ADMIN)
  taskgraph healthcheck [worker]  exit 0 if the local server's /healthz (on HTTP_ADDR; with worker,
                                  the worker's, on WORKER_HTTP_ADDR) answers 200 (for containers)
  taskgraph bench [flags]         run the load benchmark (see docs/benchmarks.md)
  taskgraph --help                show this help

Settings come from the environment:
`

// commandUsage is each command's own --help.
var commandUsage = map[string]string{
	"serve": `Usage: taskgraph [serve]

Run the GraphQL server on HTTP_ADDR (default :8080, every interface): the API at /graphql, GraphiQL
at / (GRAPHIQL), /healthz, /readyz and /metrics. It creates the database named by DATABASE_URL if
it does not exist and applies the migrations first, and it works background jobs too unless
JOBS_IN_PROCESS=false. Logs are JSON lines on stderr. Stop it with SIGTERM or Ctrl-C: it drains
for up to SHUTDOWN_TIMEOUT.

Settings come from the environment; taskgraph --help lists every one with its default.
`,
	"worker": `Usage: taskgraph worker

Work background jobs only (notifications, webhooks, email, exports, reports, bulk operations), next
to any number of serve instances on the same database; run as many as you like. It serves
/healthz, /readyz and /metrics on WORKER_HTTP_ADDR (default :8081). JOB_WORKERS jobs run at once;
on SIGTERM running jobs get SHUTDOWN_TIMEOUT to finish.

Settings come from the environment; taskgraph --help lists every one with its default.
`,
	"migrate": `Usage: taskgraph migrate

Create the database named by DATABASE_URL if it does not exist, apply every pending migration, and
exit. serve does the same on start; run this first when several instances start at once.
`,
	"set-role": `Usage: taskgraph set-role EMAIL ROLE

Make the user registered with EMAIL a USER or an ADMIN (ROLE, in any case). Running servers apply
it at once (through Redis with REDIS_URL, else over the database's event bus); the user's current
access token carries the new role on its next request.
`,
	"healthcheck": `Usage: taskgraph healthcheck [worker]

Exit 0 if the server on this host answers GET /healthz with 200 (on HTTP_ADDR; with worker, the
worker's on WORKER_HTTP_ADDR), 1 otherwise: a container health check that needs no shell or curl.
`,
}

// wantsHelp reports whether args ask for help (-h, -help or --help anywhere).
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd, rest := "serve", args // no arguments: serve (the README's quick start)
	if len(args) > 0 {
		cmd, rest = args[0], args[1:]
	}
	if usage, ok := commandUsage[cmd]; ok && wantsHelp(rest) {
		fmt.Fprint(stdout, usage)
		return nil
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usageText)
		config.Usage(stdout)
		return nil
	case "healthcheck":
		// For container health checks: no database, no secret, exit 1 on failure.
		return healthcheck(ctx, getenv, args[1:])
	case "serve", "worker", "migrate", "set-role":
	case "bench":
		return bench.Main(ctx, args[1:], stdout, stderr)
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
	if cmd == "serve" || cmd == "worker" {
		// Long-running processes log their settings once; one-shot commands only say what they did.
		logger.Info("starting", "command", cmd, "config", cfg)
		if cfg.GeneratedSecret && cmd == "serve" {
			logger.Warn("JWT_SECRET is not set: using a random secret for this run; tokens and cursors will not survive a restart")
		}
	}

	// Metrics exist before the pool so its tracer times every statement from the first.
	reg := prometheus.NewRegistry()
	metrics, err := observe.New(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	pool, err := openDatabase(ctx, cfg, metrics.PGXTracer())
	if err != nil {
		return err
	}
	defer pool.Close()

	switch cmd {
	case "migrate":
		logger.Info("migrations applied")
		return nil
	case "set-role":
		return setRole(ctx, cfg, pool, args[1:], stdout, logger)
	case "worker":
		return work(ctx, cfg, pool, logger, metrics, reg)
	}
	return serve(ctx, cfg, pool, logger, server.Observability{Metrics: metrics, Gatherer: reg})
}

// openDatabase creates the database if needed, connects and migrates: a fresh machine needs no setup.
func openDatabase(ctx context.Context, cfg config.Config, tracer pgx.QueryTracer) (*pgxpool.Pool, error) {
	if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	pool, err := db.OpenPool(ctx, cfg.DatabaseURL, db.PoolOptions{MaxConns: cfg.DBMaxConns, Tracer: tracer})
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func serve(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger, obs server.Observability) error {
	app, err := server.Build(cfg, pool, logger, obs)
	if err != nil {
		return err
	}
	defer app.Close()
	go app.Background(ctx)
	return server.Run(ctx, cfg, app.Handler, logger, nil, app.Draining.Start, app.EndSubscriptions)
}

// work runs background job workers until ctx ends (SIGINT/SIGTERM), then lets running jobs finish
// within SHUTDOWN_TIMEOUT (cancelling the rest: River retries them, here or on another process).
// Workers, like serve's in-process ones, use a pool of their own with JOB_WORKERS+4 connections.
func work(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger, metrics *observe.Metrics,
	gatherer prometheus.Gatherer) error {
	opts := jobs.FromConfig(cfg, true)
	opts.Logger, opts.Tracer = logger, metrics.PGXTracer()
	// New notifications, job progress and tasks changed by bulk operations reach live subscriptions
	// on the API instances from the database itself (its triggers announce every commit). With
	// Redis, the shared cache drops the changed tasks too; the API instances' in-process (or near)
	// caches hear of them on the bus.
	bus := events.New(pool, logger)
	if server.SharesInvalidations(cfg) {
		bus.ShareInvalidations()
	}
	invalidators := db.Invalidators{bus}
	if cfg.RedisURL != "" && cfg.CacheEnabled {
		rdb, err := redisx.NewClient(cfg.RedisURL)
		if err != nil {
			return err
		}
		defer rdb.Close()
		c := cache.NewRedis(rdb, server.RedisPrefix+"cache:", logger)
		if cfg.CacheNearMaxEntries > 0 {
			// The servers' near caches must drop what jobs write before the jobs' writes count as done.
			c.AnnounceToNearCaches()
			go func() { _ = c.RunNearSync(ctx) }()
		}
		invalidators = append(invalidators, c)
	}
	opts.Invalidator = invalidators
	q, err := jobs.New(pool, opts)
	if err != nil {
		return err
	}
	defer q.Close()
	return runWorker(ctx, cfg, q, pool, logger, metrics, gatherer)
}

func setRole(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, args []string, stdout io.Writer, logger *slog.Logger) error {
	if len(args) != 2 {
		return fmt.Errorf("%w: set-role needs EMAIL and ROLE", errUsage)
	}
	role := policy.Role(strings.ToUpper(args[1]))
	if !role.Valid() { // the domain checks too; this one answers with the usage
		return fmt.Errorf("%w: role must be USER or ADMIN, got %q", errUsage, args[1])
	}
	// Running servers cache users (and take roles from them): invalidate the shared Redis cache, or
	// tell the servers' in-process (or near) caches over the event bus, so the change applies at once.
	var opts []db.Option
	if cfg.RedisURL != "" && cfg.CacheEnabled {
		rdb, err := redisx.NewClient(cfg.RedisURL)
		if err != nil {
			return err
		}
		defer rdb.Close()
		c := cache.NewRedis(rdb, server.RedisPrefix+"cache:", logger)
		if cfg.CacheNearMaxEntries > 0 {
			// The servers' near caches drop the user before set-role answers.
			c.AnnounceToNearCaches()
			syncCtx, stopSync := context.WithCancel(ctx)
			defer stopSync()
			go func() { _ = c.RunNearSync(syncCtx) }()
		}
		opts = append(opts, db.WithInvalidator(c))
	}
	if server.SharesInvalidations(cfg) {
		bus := events.New(pool, logger)
		bus.ShareInvalidations()
		opts = append(opts, db.WithInvalidator(bus))
	}
	users := accounts.New(reads.NewRouter(db.New(pool, nil, opts...), nil), accounts.Options{})
	u, err := users.SetRole(ctx, args[0], role)
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

// healthcheck asks the server on HTTP_ADDR (this host) for /healthz; `healthcheck worker` asks the
// worker's listener on WORKER_HTTP_ADDR.
func healthcheck(ctx context.Context, getenv func(string) string, args []string) error {
	setting, def := "HTTP_ADDR", ":8080"
	switch {
	case len(args) == 1 && args[0] == "worker":
		setting, def = "WORKER_HTTP_ADDR", ":8081"
	case len(args) > 0:
		return fmt.Errorf("%w: healthcheck takes nothing or `worker`, got %q", errUsage, strings.Join(args, " "))
	}
	addr := strings.TrimSpace(getenv(setting))
	if addr == "" {
		addr = def
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %s %q: %w", setting, addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}
