package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/ratelimit"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/recency"
	"github.com/taskgraph/taskgraph/internal/redisx"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/userjobs"
	"github.com/taskgraph/taskgraph/internal/webhooks"
)

// App is one assembled Taskgraph: the HTTP handler and the parts tests and commands look into.
type App struct {
	Handler http.Handler
	DB      *db.DB
	Cache   *cache.Cache  // nil when CACHE_ENABLED=false
	Redis   *redis.Client // nil without REDIS_URL
	// Draining turns /readyz unready; pass its Start to Run as the drain hook.
	Draining *Draining
	// Jobs is the background job queue. Writes enqueue through it; with JOBS_IN_PROCESS it also works
	// jobs (Background starts the workers, Close stops them).
	Jobs *jobs.Queue
	// Events fans changes out to live subscriptions on every instance (PostgreSQL LISTEN/NOTIFY);
	// Background runs its listener.
	Events *events.Bus
	// Services are the domain services every transport calls.
	Services Services
	// Feed delivers task changes to this instance's taskChanged subscribers; Background runs it.
	Feed *tasks.Feed
	// Sessions ends the long-lived connections of sessions that end; Background runs it.
	Sessions *SessionWatch

	endStreams   context.CancelFunc
	replicaPools []*db.Replica
	logger       *slog.Logger
	// peerInvalidations hears other processes' writes for the in-process cache, or with Redis for
	// the near cache in front of it (nil with the cache off).
	peerInvalidations *events.Subscription
}

// SharesInvalidations reports whether processes with cfg keep cache entries in their own memory (the
// in-process cache without Redis, the near cache in front of Redis) and so must tell each other,
// over the event bus, which entries their writes made stale. Every process of a deployment (serve,
// worker, set-role) must agree, as they agree on REDIS_URL and CACHE_NEAR_MAX_ENTRIES.
func SharesInvalidations(cfg config.Config) bool {
	return cfg.CacheEnabled && (cfg.RedisURL == "" || cfg.CacheNearMaxEntries > 0)
}

// peerInvalidationBuffer is generous: an invalidate event is small, and a full buffer empties the
// whole cache.
const peerInvalidationBuffer = 4096

// relayInvalidations applies other processes' invalidations to the in-process (or near) cache until
// ctx ends.
// Events that may have been lost (a full buffer, a listener reconnect) empty it: any entry could be
// stale.
func relayInvalidations(ctx context.Context, sub *events.Subscription, c *cache.Cache, logger *slog.Logger) {
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-sub.C:
			c.InvalidatePeer(ctx, ev.EntityKeys())
		case <-sub.Gaps:
			c.Purge()
			logger.WarnContext(ctx, "cache emptied: invalidations from other processes may have been missed")
		}
	}
}

// Services are the domain services, built once per process and shared by every transport.
type Services struct {
	Accounts      *accounts.Service
	Tasks         *tasks.Service
	Notifications *notifications.Service
	Webhooks      *webhooks.Service
	Jobs          *userjobs.Service
}

// Close releases what Build opened (not the primary pool, which the caller owns). Running jobs get
// SHUTDOWN_TIMEOUT to finish first.
func (a *App) Close() {
	a.EndSubscriptions()
	if a.Jobs != nil {
		a.Jobs.Close()
	}
	for _, r := range a.replicaPools {
		r.Pool.Close()
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
}

// EndSubscriptions ends every live subscription (websocket connections are closed, SSE streams
// end): http.Server.Shutdown does not wait for or close hijacked connections. Pass it to Run as a
// drain hook.
func (a *App) EndSubscriptions() {
	if a.endStreams != nil {
		a.endStreams()
	}
}

// replicaCheckInterval is how often replica health and lag are measured.
const replicaCheckInterval = 500 * time.Millisecond

// Background runs the app's housekeeping (replica health checks) and, with JOBS_IN_PROCESS, the job
// workers until ctx ends; then it stops the workers (running jobs get SHUTDOWN_TIMEOUT to finish).
func (a *App) Background(ctx context.Context) {
	var wg sync.WaitGroup
	if a.Jobs != nil && a.Jobs.Works() {
		wg.Go(func() {
			if err := a.Jobs.Run(ctx); err != nil {
				a.logger.ErrorContext(ctx, "background jobs", "error", err.Error())
			}
		})
	}
	wg.Go(func() { a.Events.Run(ctx) })
	wg.Go(func() { a.Feed.Run(ctx) })
	wg.Go(func() { a.Sessions.Run(ctx) })
	if a.Cache != nil {
		wg.Go(func() { _ = a.Cache.RunNearSync(ctx) }) // returns at once without a near cache
	}
	if a.peerInvalidations != nil && a.Cache != nil {
		wg.Go(func() { relayInvalidations(ctx, a.peerInvalidations, a.Cache, a.logger) })
	}
	a.DB.RunReplicaChecks(ctx, replicaCheckInterval)
	wg.Wait()
}

// openReplicas opens a pool per DATABASE_READ_URLS entry. A replica that is down at start is still
// added: it joins the rotation once the health check sees it.
func openReplicas(cfg config.Config, obs Observability) ([]*db.Replica, error) {
	var out []*db.Replica
	for i, url := range cfg.DatabaseReadURLs {
		pool, err := db.NewPool(url, db.PoolOptions{MaxConns: cfg.DBMaxConns, Tracer: obs.Metrics.PGXTracer()})
		if err != nil {
			for _, r := range out {
				r.Pool.Close()
			}
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		name := fmt.Sprintf("replica-%d", i+1)
		obs.Metrics.WatchPool(name, pool)
		out = append(out, &db.Replica{Name: name, Pool: pool})
	}
	return out, nil
}

// RedisPrefix namespaces every key Taskgraph writes, so one Redis can serve other tenants too.
const RedisPrefix = "taskgraph:"

// Observability is what Build reports to: metrics (nil: none) and the registry /metrics serves.
type Observability struct {
	Metrics  *observe.Metrics
	Gatherer prometheus.Gatherer
}

// Option changes how Build wires a part that is not a setting.
type Option func(*buildOptions)

type buildOptions struct {
	hasher auth.Hasher
}

// WithPasswordHasher hashes new passwords with h (test suites pass auth.TestHasher()).
func WithPasswordHasher(h auth.Hasher) Option {
	return func(o *buildOptions) { o.hasher = h }
}

// Build wires every component from the configuration: the one place the pieces meet. The pool's
// tracer, if any, is set by whoever opened it (metrics need it from the first statement).
func Build(cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger, obs Observability, options ...Option) (*App, error) {
	var bo buildOptions
	for _, o := range options {
		o(&bo)
	}
	tokens, err := auth.NewTokenIssuer([]byte(cfg.JWTSecret), cfg.AccessTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	streams, endStreams := context.WithCancel(context.Background())
	app := &App{Draining: &Draining{}, logger: logger, endStreams: endStreams, Events: events.New(pool, logger)}
	if cfg.RedisURL != "" {
		if app.Redis, err = redisx.NewClient(cfg.RedisURL); err != nil {
			return nil, err
		}
	}
	if cfg.CacheEnabled {
		if app.Redis != nil {
			app.Cache = cache.NewRedis(app.Redis, RedisPrefix+"cache:", logger)
			if cfg.CacheNearMaxEntries > 0 {
				// A near cache in front of Redis: hot rows (sessions, users, tasks) without a round
				// trip. A write answers once every instance has dropped what it changed, or can no
				// longer serve it (cache.nearSync; Background runs it).
				if err = app.Cache.EnableNear(int(cfg.CacheNearMaxEntries)); err != nil {
					app.Close()
					return nil, err
				}
			}
		} else if app.Cache, err = cache.NewLocal(int(cfg.CacheMaxEntries), logger); err != nil {
			app.Close()
			return nil, err
		}
	}
	if SharesInvalidations(cfg) {
		// Each instance (and worker) caches in its own memory (without Redis, or the near cache in
		// front of it): they tell each other what their writes changed, over the same LISTEN/NOTIFY
		// channel as live updates.
		app.Events.ShareInvalidations()
		bus := app.Events
		app.peerInvalidations = bus.Subscribe(func(ev events.Event) bool {
			return ev.Kind == events.KindInvalidate && bus.FromElsewhere(ev)
		}, peerInvalidationBuffer)
	}
	documents, err := cache.NewDocuments(app.Redis, RedisPrefix+"apq:", 10_000, logger)
	if err != nil {
		app.Close()
		return nil, err
	}
	var limiter ratelimit.Limiter
	if cfg.RateLimitEnabled {
		limiter = ratelimit.NewLocal(100_000)
		if app.Redis != nil {
			guard := redisx.NewGuard("ratelimit", logger, redisx.GuardOptions{})
			limiter = ratelimit.NewResilient(ratelimit.NewRedis(app.Redis, RedisPrefix), limiter, guard, logger)
		}
	}
	// Every committed write tells the cache what to drop and the tracker who wrote (read-your-writes).
	writes := recency.New(cfg.ReadYourWritesFor, app.Redis, RedisPrefix+"wrote:", logger)
	opts := []db.Option{db.WithInvalidator(db.Invalidators{app.Cache, writes, app.Events})}
	replicas, err := openReplicas(cfg, obs)
	if err != nil {
		app.Close()
		return nil, err
	}
	app.replicaPools = replicas
	if len(replicas) > 0 {
		opts = append(opts, db.WithReplicas(replicas, cfg.ReplicaMaxLag, logger))
	}
	// Jobs are enqueued in the transaction of the write that causes them; the workers, when they
	// run in this process, use a pool of their own (JOB_WORKERS+4 connections).
	jobOpts := jobs.FromConfig(cfg, cfg.JobsInProcess)
	jobOpts.Logger, jobOpts.Tracer = logger, obs.Metrics.PGXTracer()
	// Bulk operations change tasks from the workers: caches, read-your-writes and live
	// subscriptions hear of them like of any write.
	jobOpts.Invalidator = db.Invalidators{app.Cache, writes, app.Events}
	if app.Jobs, err = jobs.New(pool, jobOpts); err != nil {
		app.Close()
		return nil, err
	}
	opts = append(opts, db.WithEnqueuer(app.Jobs))
	app.DB = db.New(pool, cursor.NewCodec([]byte(cfg.JWTSecret)), opts...)
	router := reads.NewRouter(app.DB, writes)
	app.Feed = tasks.NewFeed(app.Events, router, logger)
	var signIn accounts.SignInLimiter
	if limiter != nil {
		signIn = newSignInLimiter(limiter, int(cfg.AuthRateLimit), obs.Metrics)
	}
	app.Services = Services{
		Accounts: accounts.New(router, accounts.Options{Cache: app.Cache, Tokens: tokens, RefreshTTL: cfg.RefreshTokenTTL,
			SignIn: signIn, Hasher: bo.hasher}),
		Tasks:         tasks.New(router, app.Cache, app.Feed),
		Notifications: notifications.New(router),
		Webhooks:      webhooks.New(router, cfg.WebhookAllowPrivate),
		Jobs:          userjobs.New(router, int(cfg.JobMaxActive), downloadSigner(cfg), app.Events),
	}
	app.Sessions = NewSessionWatch(app.Events, int(cfg.ConnectionsPerUser), cfg.SubscriptionSessionCheck,
		app.Services.Accounts.LiveSessions, logger)
	obs.Metrics.WatchPool("primary", pool)
	obs.Metrics.WatchEvents(app.Events.Stats)
	if jp := app.Jobs.Pool(); jp != nil {
		obs.Metrics.WatchPool("jobs", jp)
	}
	if c := app.Cache; c != nil {
		obs.Metrics.WatchCache(func() (hits, misses, faults int64) {
			s := c.Stats()
			return s.Hits, s.Misses, s.Faults
		})
	}
	app.Handler, err = NewHandler(Deps{
		Config:    cfg,
		DB:        app.DB,
		Tokens:    tokens,
		Services:  app.Services,
		Sessions:  app.Sessions,
		Logger:    logger,
		Cache:     app.Cache,
		Documents: documents,
		Limiter:   limiter,
		Metrics:   obs.Metrics,
		Gatherer:  obs.Gatherer,
		Redis:     app.Redis,
		Draining:  app.Draining,
		Events:    app.Events,
		Shutdown:  streams,
	})
	if err != nil {
		app.Close()
		return nil, err
	}
	return app, nil
}
