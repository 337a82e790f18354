// Package server assembles the HTTP surface: the middleware chain, the gqlgen handler and its
// options, GraphiQL, health endpoints, and the graceful run loop.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/cors"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/download"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/gqllimits"
	"github.com/taskgraph/taskgraph/internal/graphiql"
	"github.com/taskgraph/taskgraph/internal/loaders"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/ratelimit"
	"github.com/taskgraph/taskgraph/internal/schemaversion"
	"github.com/taskgraph/taskgraph/internal/userjobs"
	"github.com/taskgraph/taskgraph/resolvers"
)

// parserTokenLimit bounds the work of parsing one document; real client documents stay far below it.
const parserTokenLimit = 10_000

// Deps is everything the HTTP surface needs, built by cmd/taskgraph.
type Deps struct {
	Config    config.Config
	DB        *db.DB
	Tokens    *auth.TokenIssuer
	Services  Services      // the domain services the transports call
	Sessions  *SessionWatch // long-lived connections by session (nil: not tracked, no per-user cap)
	Logger    *slog.Logger
	Cache     *cache.Cache      // nil: no cache
	Documents *cache.Documents  // automatic persisted queries
	Limiter   ratelimit.Limiter // nil: no rate limits
	Metrics   *observe.Metrics  // nil: no metrics
	Gatherer  prometheus.Gatherer
	Redis     *redis.Client // for readiness; nil without REDIS_URL
	Draining  *Draining     // set by Run on shutdown
	// Events feeds live subscriptions (nil: subscriptions are refused).
	Events *events.Bus
	// Shutdown ends every live subscription (websocket and SSE) when it is done; nil: never.
	Shutdown context.Context
}

// NewHandler builds the whole HTTP handler.
func NewHandler(d Deps) (http.Handler, error) {
	gql, err := newGraphQL(d)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	inner := withNegotiatedRefusals(withThrottleStatus(guardGraphQL(d.Config.MaxBodyBytes,
		auth.Middleware(d.Tokens, d.Services.Accounts.Authenticate, d.Logger)(
			withBudgetHeaders(newCostBudget(d), withLiveStream(d.Sessions, withFlusher(gql)))))))
	// Websocket upgrades and SSE streams live as long as their subscriptions: no request deadline.
	// Only the API answers browsers of other origins: health, metrics, GraphiQL and downloads never do.
	graphqlChain := withCORS(d.Config.CORSAllowedOrigins,
		withStreaming(d.Shutdown, d.Config.MaxBodyBytes, inner, withDeadline(d.Config.RequestTimeout, inner)))
	handlers := map[string]http.Handler{
		patternGraphQL:   graphqlChain,
		patternGraphQLV1: graphqlChain,
		patternHealthz: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}),
		patternReadyz: readyz(d),
		// Export files: the signed URL is the credential (no Authorization), so the route stays outside
		// the GraphQL chain; gzip and the request id below apply as to every route.
		download.Pattern: &download.Handler{Exports: d.Services.Jobs, Logger: d.Logger},
	}
	if d.Gatherer != nil {
		handlers[patternMetrics] = d.Metrics.Handler(d.Gatherer)
	}
	if d.Config.GraphiQL {
		// Served from the binary (internal/graphiql): no CDN, so it works offline.
		ide, err := graphiql.New("Taskgraph", "/graphql")
		if err != nil {
			return nil, err
		}
		handlers[patternGraphiQL] = ide
		handlers[patternGraphiQLAssets] = ide
	}
	if err := registerRoutes(mux, d.Metrics, handlers); err != nil {
		return nil, err
	}

	// Compress answers above a small threshold for clients that accept it (GraphQL JSON compresses ~5-10x).
	// Streams (SSE, incremental delivery) are sent as they are: compression would hold their events back.
	// gzip wins over zstd when a client offers both alike: some offer zstd they cannot decode
	// (GraphQL Code Generator's loader on Node.js 20); zstd goes to clients that rank it higher.
	gzip, err := gzhttp.NewWrapper(gzhttp.MinSize(1024), gzhttp.PreferZstd(false),
		gzhttp.ExceptContentTypes([]string{mediaEventStream, mediaMultipart}))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	// Streams are not compressed: gzip would buffer events (and cannot hijack for a websocket).
	compressed, plain := gzip(mux), mux
	body := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isStreaming(r) {
			plain.ServeHTTP(w, r)
			return
		}
		compressed.ServeHTTP(w, r)
	})
	return withRequestID(withRecover(d.Logger, withAccessLog(d.Logger,
		withClientIP(parsePrefixes(d.Config.TrustedProxies), body)))), nil
}

// withCORS lets browsers on exactly origins call next. With no origin configured it adds nothing:
// rs/cors reads an empty AllowedOrigins as every origin, so it is not even built then.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowedHeaders: []string{"Authorization", "Content-Type", "X-Request-ID", "Apollographql-Client-Name", "Apollographql-Client-Version",
			headerIdempotencyKey},
		ExposedHeaders: []string{"X-Request-ID", "Retry-After", headerReplayed, headerRateLimit, headerRateLimitPolicy},
		MaxAge:         600,
	}).Handler(next)
}

func newGraphQL(d Deps) (*handler.Server, error) {
	sv := d.Services
	r := &resolvers.Resolver{Accounts: sv.Accounts, Tasks: sv.Tasks, Notifications: sv.Notifications,
		Webhooks: sv.Webhooks, Jobs: sv.Jobs, Events: d.Events, Logger: d.Logger}
	cfg := graph.Config{
		Resolvers: r,
		Directives: graph.DirectiveRoot{
			Auth:    auth.AuthDirective,
			HasRole: auth.HasRoleDirective,
		},
	}
	gqllimits.Complexity(&cfg.Complexity)
	srv := handler.New(graph.NewExecutableSchema(cfg))
	srv.AddTransport(transport.Options{})
	srv.AddTransport(incrementalWebsockets(websocketTransport(d)))
	// guardGraphQL chose each request's framing; every transport below serves one (transport.go).
	srv.AddTransport(jsonTransport{})
	srv.AddTransport(sseTransport{})
	srv.AddTransport(multipartTransport{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetParserTokenLimit(parserTokenLimit)
	srv.SetErrorPresenter(errorPresenter(d.Logger, d.Config.Production()))
	srv.SetRecoverFunc(recoverFunc(d.Logger))
	// Outermost interceptor, so its timing covers everything below.
	srv.Use(d.Metrics.GraphQLExtension())
	// Every operation on a long-lived connection is checked against its session and role as they
	// are on the primary when it starts; then it gets loaders of its own, for its actor.
	srv.Use(liveAuth{authenticate: sv.Accounts.AuthenticateNow})
	srv.Use(loaders.Extension{Services: loaders.Services{Accounts: sv.Accounts, Tasks: sv.Tasks}})
	// Every GraphQL answer names the API version it was served by.
	srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		if resp != nil {
			if resp.Extensions == nil {
				resp.Extensions = map[string]any{}
			}
			resp.Extensions["apiVersion"] = schemaversion.Version
		}
		return resp
	})

	// Parameter mutators run in order before gqlgen parses: first find the document (trusted
	// documents or APQ), then refuse hostile ones before gqlgen's validator sees them.
	if d.Config.TrustedDocuments != "" {
		trusted, err := loadTrustedDocuments(d.Config.TrustedDocuments)
		if err != nil {
			return nil, err
		}
		srv.Use(trusted)
	} else if d.Documents != nil {
		srv.Use(persistedQueries{apq: extension.AutomaticPersistedQuery{Cache: d.Documents}})
	}
	limits := gqllimits.DefaultLimits()
	limits.MaxTokens = parserTokenLimit
	limits.MaxDepth = int(d.Config.QueryMaxDepth)
	limits.MaxNodes = int(d.Config.QueryMaxNodes)
	srv.Use(gqllimits.NewGuard(limits, 2048))
	// A client that cannot take @defer's later payloads gets the whole answer at once; the others
	// get deferred fragments only in later payloads.
	srv.Use(deferDelivery{})
	srv.Use(&deferredPayloads{})
	// After validation: what gqlparser lets through but the spec does not, and mutations that a GET
	// reached through a persisted-query hash (guardGraphQL sees only documents sent as text).
	srv.Use(&strictVariables{})
	srv.Use(getRunsQueriesOnly{})
	// After validation: cost, then the client's budget for it.
	srv.Use(gqllimits.NewCostLimit(limits.MaxNodes))
	// Always installed: without rate limits it charges nothing but still answers dry runs (which must
	// never execute).
	budget := newCostBudget(d)
	if budget == nil {
		budget = &costBudget{metrics: d.Metrics}
	}
	srv.Use(*budget)
	// After admission (cost and budget): a mutation with an Idempotency-Key runs at most once.
	idem, err := newIdempotentMutations(d)
	if err != nil {
		return nil, err
	}
	srv.Use(idem)
	if d.Config.Production() {
		// Suggestions ("did you mean …") and introspection describe the schema to anyone probing it.
		srv.SetDisableSuggestion(true)
		srv.Use(noIntrospection{})
	} else {
		srv.Use(extension.Introspection{})
	}
	// Last, so it is the innermost response interceptor. Not with replicas: an answer read from a
	// lagging replica could be stored under tokens that a write has already replaced.
	if responses := d.Cache.Responses(d.Config.ResponseCacheTTL); responses != nil && len(d.DB.Replicas()) == 0 {
		srv.Use(responseCache{responses: responses, tasks: d.Services.Tasks})
		d.Metrics.WatchResponses(func() (hits, misses int64) {
			s := responses.Stats()
			return s.Hits, s.Misses
		})
	}
	return srv, nil
}

// newCostBudget is the hourly cost budget per client (nil without rate limits).
func newCostBudget(d Deps) *costBudget {
	if d.Limiter == nil {
		return nil
	}
	return &costBudget{
		limiter: d.Limiter,
		user:    ratelimit.PerHour(int(d.Config.RateLimitPoints), int(d.Config.RateLimitPoints)),
		anon:    ratelimit.PerHour(int(d.Config.AnonRateLimitPoints), int(d.Config.AnonRateLimitPoints)),
		metrics: d.Metrics,
	}
}

// downloadSigner signs export download URLs (resolvers) and checks them (the download route).
func downloadSigner(cfg config.Config) *userjobs.Signer {
	return userjobs.NewSigner([]byte(cfg.JWTSecret), cfg.PublicURL, cfg.ExportURLTTL)
}

// Draining is set when shutdown begins: /readyz then answers 503 so load balancers stop sending
// new requests while in-flight ones finish.
type Draining struct{ flag atomic.Bool }

// Start marks the instance as draining.
func (d *Draining) Start() {
	if d != nil {
		d.flag.Store(true)
	}
}

func (d *Draining) active() bool { return d != nil && d.flag.Load() }

// readyz reports every dependency. The instance is ready when it is not draining and the primary
// answers; replicas and Redis are reported but optional (reads fall back to the primary, the cache
// and limits to memory).
func readyz(d Deps) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{}
		ready := true
		if d.Draining.active() {
			checks["shutdown"] = "draining"
			ready = false
		}
		if err := d.DB.Pool().Ping(ctx); err != nil {
			checks["database"] = "unreachable"
			ready = false
		} else {
			checks["database"] = "ok"
		}
		for _, rep := range d.DB.Replicas() {
			checks[rep.Name] = "ok"
			if !rep.Healthy() {
				checks[rep.Name] = "out of rotation (unreachable or lagging)"
			}
		}
		if d.Redis != nil {
			checks["redis"] = "ok"
			if err := d.Redis.Ping(ctx).Err(); err != nil {
				checks["redis"] = "unreachable (serving without it)"
			}
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "unavailable", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]any{"status": status, "checks": checks})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// readHeaderTimeout is how long a client may take to send its request headers: 5 s, or less when
// HTTP_READ_TIMEOUT (the time for the whole request, headers included) is shorter.
func readHeaderTimeout(read time.Duration) time.Duration {
	const headers = 5 * time.Second
	if read > 0 && read < headers {
		return read
	}
	return headers
}

// Run serves h on cfg.HTTPAddr until ctx ends, then drains in-flight requests for up to
// cfg.ShutdownTimeout. ready, when non-nil, receives the bound address once listening.
func Run(ctx context.Context, cfg config.Config, h http.Handler, logger *slog.Logger, ready chan<- net.Addr, onDrain ...func()) error {
	// While draining, every answer carries "Connection: close", so clients and proxies (nginx's
	// upstream keep-alive pool) open a new connection for their next request instead of reusing this
	// one. Otherwise Shutdown, which closes idle keep-alive connections, races with requests already
	// on their way over them: the client sees EOF or a reset and cannot tell whether its request ran.
	var draining atomic.Bool
	srv := &http.Server{
		Addr: cfg.HTTPAddr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: readHeaderTimeout(cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	logger.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "deadline", cfg.ShutdownTimeout.String(), "delay", cfg.ShutdownDelay.String())
	draining.Store(true)
	for _, f := range onDrain {
		f()
	}
	// Keep serving while load balancers notice /readyz turned 503, then stop accepting.
	time.Sleep(cfg.ShutdownDelay)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
