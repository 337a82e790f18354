package server

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/account"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/ratelimit"
	"github.com/taskgraph/taskgraph/internal/redisx"
)

// App is one assembled Taskgraph: the HTTP handler and the parts tests and commands look into.
type App struct {
	Handler http.Handler
	DB      *db.DB
	Cache   *cache.Cache  // nil when CACHE_ENABLED=false
	Redis   *redis.Client // nil without REDIS_URL
}

// Close releases what Build opened (not the pool, which the caller owns).
func (a *App) Close() {
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
}

// RedisPrefix namespaces every key Taskgraph writes, so one Redis can serve other tenants too.
const RedisPrefix = "taskgraph:"

// Observability is what Build reports to: metrics (nil: none) and the registry /metrics serves.
type Observability struct {
	Metrics  *observe.Metrics
	Gatherer prometheus.Gatherer
}

// Build wires every component from the configuration: the one place the pieces meet. The pool's
// tracer, if any, is set by whoever opened it (metrics need it from the first statement).
func Build(cfg config.Config, pool *pgxpool.Pool, logger *slog.Logger, obs Observability) (*App, error) {
	tokens, err := auth.NewTokenIssuer([]byte(cfg.JWTSecret), cfg.AccessTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	app := &App{}
	if cfg.RedisURL != "" {
		if app.Redis, err = redisx.NewClient(cfg.RedisURL); err != nil {
			return nil, err
		}
	}
	if cfg.CacheEnabled {
		if app.Redis != nil {
			app.Cache = cache.NewRedis(app.Redis, RedisPrefix+"cache:", logger)
		} else if app.Cache, err = cache.NewLocal(int(cfg.CacheMaxEntries), logger); err != nil {
			app.Close()
			return nil, err
		}
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
	var opts []db.Option
	if app.Cache != nil {
		opts = append(opts, db.WithInvalidator(app.Cache))
	}
	app.DB = db.New(pool, db.NewCursorCodec([]byte(cfg.JWTSecret)), opts...)
	obs.Metrics.WatchPool("primary", pool)
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
		Accounts:  account.NewService(app.DB, tokens, cfg.RefreshTokenTTL),
		Logger:    logger,
		Cache:     app.Cache,
		Documents: documents,
		Limiter:   limiter,
		Metrics:   obs.Metrics,
		Gatherer:  obs.Gatherer,
	})
	if err != nil {
		app.Close()
		return nil, err
	}
	return app, nil
}
