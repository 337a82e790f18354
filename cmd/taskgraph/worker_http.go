package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/observe"
)

// runWorker works q's jobs until ctx ends, serving /healthz, /readyz and /metrics on
// WORKER_HTTP_ADDR meanwhile (probes and scraping for the worker, which has no API listener). The
// listener stays up while running jobs finish after SIGTERM, so liveness holds during the drain;
// /readyz turns 503 as soon as the workers stop fetching.
func runWorker(ctx context.Context, cfg config.Config, q *jobs.Queue, pool *pgxpool.Pool, logger *slog.Logger,
	metrics *observe.Metrics, gatherer prometheus.Gatherer) error {
	// Listen first: a worker whose probes cannot reach it would be restarted in a loop, so a taken
	// port is an error at start, not a log line.
	ln, err := net.Listen("tcp", cfg.WorkerHTTPAddr)
	if err != nil {
		return fmt.Errorf("worker: listen on WORKER_HTTP_ADDR %s: %w", cfg.WorkerHTTPAddr, err)
	}
	metrics.WatchPool("primary", pool)
	if jp := q.Pool(); jp != nil {
		metrics.WatchPool("jobs", jp)
	}
	srv := &http.Server{
		Handler:           workerHandler(pool, q.Running, metrics, gatherer),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("worker HTTP listening", "addr", ln.Addr().String())

	// If serving fails, stop working too: a worker nobody can probe should not look alive.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			cancel()
		}
		serveErr <- err
	}()
	runErr := q.Run(runCtx)

	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("worker HTTP shutdown", "error", err.Error())
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(runErr, fmt.Errorf("worker: serve HTTP: %w", err))
	}
	return runErr
}

// pinger is what readiness asks of the database.
type pinger interface {
	Ping(ctx context.Context) error
}

// workerHandler serves the worker's probes and metrics. /healthz: the process answers. /readyz:
// the database answers and the job workers are running (503 otherwise, with what failed).
func workerHandler(db pinger, running func() bool, m *observe.Metrics, gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", m.HTTP("/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})))
	mux.Handle("GET /readyz", m.HTTP("/readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{"database": "ok", "jobs": "running"}
		ready := true
		if err := db.Ping(ctx); err != nil {
			checks["database"], ready = "unreachable", false
		}
		if !running() {
			checks["jobs"], ready = "stopped", false
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	})))
	mux.Handle("GET /metrics", m.Handler(gatherer))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
