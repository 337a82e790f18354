// Package config reads the server's settings from the environment, with documented defaults.
package config

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	netmail "net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/taskgraph/taskgraph/internal/email"
)

// Values of APP_ENV.
const (
	EnvDevelopment = "development"
	EnvProduction  = "production"
)

// minJWTSecretBytes matches the HS256 key size; shorter keys make tokens easier to brute-force.
const minJWTSecretBytes = 32

// Config holds every setting. Build it with Load; settings() documents each variable.
type Config struct {
	Env                string        // APP_ENV
	HTTPAddr           string        // HTTP_ADDR
	DatabaseURL        string        // DATABASE_URL
	DBMaxConns         int32         // DB_MAX_CONNS
	JWTSecret          string        // JWT_SECRET
	GeneratedSecret    bool          // JWTSecret was generated for this run (development only); not a setting
	AccessTokenTTL     time.Duration // ACCESS_TOKEN_TTL
	RefreshTokenTTL    time.Duration // REFRESH_TOKEN_TTL
	CORSAllowedOrigins []string      // CORS_ALLOWED_ORIGINS
	GraphiQL           bool          // GRAPHIQL
	MaxBodyBytes       int64         // MAX_BODY_BYTES
	ReadTimeout        time.Duration // HTTP_READ_TIMEOUT
	WriteTimeout       time.Duration // HTTP_WRITE_TIMEOUT
	IdleTimeout        time.Duration // HTTP_IDLE_TIMEOUT
	ShutdownTimeout    time.Duration // SHUTDOWN_TIMEOUT
	LogLevel           string        // LOG_LEVEL

	RedisURL        string // REDIS_URL
	CacheEnabled    bool   // CACHE_ENABLED
	CacheMaxEntries int64  // CACHE_MAX_ENTRIES
	// CacheNearMaxEntries sizes the near cache in front of Redis (0: none).
	CacheNearMaxEntries int64 // CACHE_NEAR_MAX_ENTRIES

	RateLimitEnabled    bool     // RATE_LIMIT_ENABLED
	RateLimitPoints     int64    // RATE_LIMIT_POINTS_PER_HOUR
	AnonRateLimitPoints int64    // RATE_LIMIT_ANON_POINTS_PER_HOUR
	AuthRateLimit       int64    // AUTH_RATE_LIMIT_PER_MINUTE
	TrustedProxies      []string // TRUSTED_PROXIES

	DatabaseReadURLs  []string      // DATABASE_READ_URLS
	ReplicaMaxLag     time.Duration // REPLICA_MAX_LAG
	ReadYourWritesFor time.Duration // READ_YOUR_WRITES_WINDOW
	RequestTimeout    time.Duration // REQUEST_TIMEOUT
	ShutdownDelay     time.Duration // SHUTDOWN_DELAY

	SubscriptionsPerConnection int64         // SUBSCRIPTIONS_PER_CONNECTION
	SubscriptionSessionCheck   time.Duration // SUBSCRIPTION_SESSION_CHECK
	ConnectionsPerUser         int64         // LIVE_CONNECTIONS_PER_USER

	QueryMaxNodes    int64  // QUERY_MAX_NODES
	QueryMaxDepth    int64  // QUERY_MAX_DEPTH
	TrustedDocuments string // TRUSTED_DOCUMENTS

	JobsInProcess       bool          // JOBS_IN_PROCESS
	JobWorkers          int64         // JOB_WORKERS
	JobTimeout          time.Duration // JOB_TIMEOUT
	JobRescueAfter      time.Duration // JOB_RESCUE_AFTER
	DueSoonWindow       time.Duration // DUE_SOON_WINDOW
	DueReminderInterval time.Duration // DUE_REMINDER_INTERVAL

	WebhookAllowPrivate bool          // WEBHOOK_ALLOW_PRIVATE
	WebhookRetryBase    time.Duration // WEBHOOK_RETRY_BASE

	SMTPURL  string // SMTP_URL (a secret: it may hold a password)
	SMTPFrom string // SMTP_FROM
	SMTPTLS  string // SMTP_TLS

	WorkerHTTPAddr string // WORKER_HTTP_ADDR

	LongJobTimeout  time.Duration // LONG_JOB_TIMEOUT
	JobMaxActive    int64         // JOB_MAX_ACTIVE
	JobRetention    time.Duration // JOB_RETENTION
	ExportRetention time.Duration // EXPORT_RETENTION
	ExportURLTTL    time.Duration // EXPORT_URL_TTL
	PublicURL       string        // PUBLIC_URL

	ResponseCacheTTL time.Duration // RESPONSE_CACHE_TTL

	IdempotencyKeyTTL    time.Duration // IDEMPOTENCY_KEY_TTL
	TaskChangesRetention time.Duration // TASK_CHANGES_RETENTION
}

// Load reads every setting through getenv (os.Getenv in production code, a map in tests), applies
// defaults and validates the result. All problems are reported together, so one restart fixes them all.
func Load(getenv func(string) string) (Config, error) {
	// Some defaults depend on the environment, so it is read first.
	prod := strings.TrimSpace(getenv("APP_ENV")) == EnvProduction
	var c Config
	var problems []string
	unparsed := make(map[string]bool)
	for _, s := range settings() {
		raw := strings.TrimSpace(getenv(s.name))
		if raw == "" {
			raw = s.defaultFor(prod)
		}
		if err := s.parse(&c, raw); err != nil {
			problems = append(problems, s.name+": "+err.Error())
			unparsed[s.name] = true
		}
	}
	if c.JWTSecret == "" && !prod {
		c.JWTSecret, c.GeneratedSecret = randomSecret(), true
	}
	problems = append(problems, c.problems(unparsed)...)
	if err := joinProblems(problems); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks every setting's range and the rules between settings.
func (c Config) Validate() error {
	return joinProblems(c.problems(nil))
}

// problems lists what is wrong with c, skipping settings that already failed to parse.
func (c Config) problems(skip map[string]bool) []string {
	var out []string
	for _, s := range settings() {
		if skip[s.name] || s.check == nil {
			continue
		}
		if err := s.check(c); err != nil {
			out = append(out, s.name+": "+err.Error())
		}
	}
	return out
}

func joinProblems(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return errors.New("config: invalid settings: " + strings.Join(problems, "; "))
}

// Production reports whether APP_ENV is "production".
func (c Config) Production() bool { return c.Env == EnvProduction }

// LogValue renders every setting under its variable name with secrets masked, so the effective
// configuration can be logged at startup.
func (c Config) LogValue() slog.Value {
	list := settings()
	attrs := make([]slog.Attr, 0, len(list))
	for _, s := range list {
		attrs = append(attrs, slog.Attr{Key: s.name, Value: s.show(c)})
	}
	return slog.GroupValue(attrs...)
}

// Usage prints every setting with its default and description, for --help.
func Usage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tDESCRIPTION")
	for _, s := range settings() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.name, s.usageDefault(), s.desc)
	}
	tw.Flush()
}

func randomSecret() string {
	b := make([]byte, minJWTSecretBytes)
	rand.Read(b) // never fails: crypto/rand aborts the program instead
	return hex.EncodeToString(b)
}

// setting describes one environment variable: its defaults, how to parse it and how to check and show
// the parsed value. parse rejects only text it cannot store; check holds the rules (ranges, rules
// between settings), so Validate applies them to any Config, not just a loaded one.
type setting struct {
	name        string
	devDefault  string
	prodDefault string
	desc        string
	parse       func(c *Config, raw string) error
	check       func(c Config) error // optional
	show        func(c Config) slog.Value
}

func (s setting) defaultFor(prod bool) string {
	if prod {
		return s.prodDefault
	}
	return s.devDefault
}

func (s setting) usageDefault() string {
	show := func(v string) string { return cmp.Or(v, "(empty)") }
	if s.devDefault == s.prodDefault {
		return show(s.devDefault)
	}
	return show(s.devDefault) + " (production: " + cmp.Or(s.prodDefault, "empty") + ")"
}

// settings is the table behind Load, Validate, Usage and LogValue. It is built per call so that no
// package-level state can be changed.
func settings() []setting {
	refresh := durationSetting("REFRESH_TOKEN_TTL", "720h", time.Hour, 8760*time.Hour,
		"lifetime of a refresh token (one sign-in session); must exceed ACCESS_TOKEN_TTL",
		func(c *Config) *time.Duration { return &c.RefreshTokenTTL })
	refresh.check = both(refresh.check, func(c Config) error {
		if c.RefreshTokenTTL <= c.AccessTokenTTL {
			return fmt.Errorf("must be longer than ACCESS_TOKEN_TTL (%s), got %s",
				formatDuration(c.AccessTokenTTL), formatDuration(c.RefreshTokenTTL))
		}
		return nil
	})
	graphiql := boolSetting("GRAPHIQL", "true", "serve the GraphiQL IDE at GET /",
		func(c *Config) *bool { return &c.GraphiQL })
	graphiql.prodDefault = "false"
	rescueAfter := durationSetting("JOB_RESCUE_AFTER", "1h", 2*time.Second, 24*time.Hour,
		"a job still running after this long (its worker died) is retried; must exceed JOB_TIMEOUT",
		func(c *Config) *time.Duration { return &c.JobRescueAfter })
	rescueAfter.check = both(rescueAfter.check, func(c Config) error {
		if c.JobRescueAfter <= c.JobTimeout {
			return fmt.Errorf("must be longer than JOB_TIMEOUT (%s), got %s",
				formatDuration(c.JobTimeout), formatDuration(c.JobRescueAfter))
		}
		if c.JobRescueAfter <= c.LongJobTimeout {
			return fmt.Errorf("must be longer than LONG_JOB_TIMEOUT (%s), got %s",
				formatDuration(c.LongJobTimeout), formatDuration(c.JobRescueAfter))
		}
		return nil
	})

	webhookAllowPrivate := boolSetting("WEBHOOK_ALLOW_PRIVATE", "false",
		"webhooks may use http and reach loopback, private, link-local and metadata addresses (development and tests only)",
		func(c *Config) *bool { return &c.WebhookAllowPrivate })
	webhookAllowPrivate.check = func(c Config) error {
		if c.WebhookAllowPrivate && c.Production() {
			return errors.New("must be false in production")
		}
		return nil
	}

	return []setting{
		enumSetting("APP_ENV", EnvDevelopment,
			"deployment mode; production changes the defaults marked below and requires JWT_SECRET",
			func(c *Config) *string { return &c.Env }, EnvDevelopment, EnvProduction),
		{
			name: "HTTP_ADDR", devDefault: ":8080", prodDefault: ":8080",
			desc:  "address the HTTP server listens on, host:port (empty host: all interfaces)",
			parse: func(c *Config, raw string) error { c.HTTPAddr = raw; return nil },
			check: func(c Config) error {
				if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
					return fmt.Errorf("must be host:port or :port, got %q", c.HTTPAddr)
				}
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(c.HTTPAddr) },
		},
		{
			name:        "DATABASE_URL",
			devDefault:  defaultDatabaseURL,
			prodDefault: defaultDatabaseURL,
			desc:        "PostgreSQL URL, postgres://user:password@host:port/db?sslmode=...",
			parse:       func(c *Config, raw string) error { c.DatabaseURL = raw; return nil },
			check: func(c Config) error {
				// Never echo the value: it may hold a password.
				if !isPostgresURL(c.DatabaseURL) {
					return errors.New("must be a postgres:// or postgresql:// URL")
				}
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(redactDatabaseURL(c.DatabaseURL)) },
		},
		intSetting("DB_MAX_CONNS", "20", 1, 1000, "maximum open database connections",
			func(c *Config) *int32 { return &c.DBMaxConns }),
		{
			name: "JWT_SECRET",
			desc: "secret signing access tokens, at least 32 bytes; empty: random per start in development " +
				"(tokens die on restart); required in production",
			parse: func(c *Config, raw string) error { c.JWTSecret = raw; return nil },
			check: checkJWTSecret,
			show: func(c Config) slog.Value {
				switch {
				case c.GeneratedSecret:
					return slog.StringValue("(generated)")
				case c.JWTSecret == "":
					return slog.StringValue("(empty)")
				}
				return slog.StringValue("***")
			},
		},
		durationSetting("ACCESS_TOKEN_TTL", "15m", 5*time.Second, 24*time.Hour, "lifetime of an access token (seconds are for tests of clients' token refresh)",
			func(c *Config) *time.Duration { return &c.AccessTokenTTL }),
		refresh,
		{
			name:        "CORS_ALLOWED_ORIGINS",
			devDefault:  "http://localhost:3000,http://localhost:5173",
			prodDefault: "",
			desc:        "comma-separated origins allowed to call the API from a browser; empty: no cross-origin access; \"*\": any origin (development only)",
			parse: func(c *Config, raw string) error {
				c.CORSAllowedOrigins = splitList(raw)
				return nil
			},
			check: checkOrigins,
			show:  func(c Config) slog.Value { return slog.StringValue(strings.Join(c.CORSAllowedOrigins, ",")) },
		},
		graphiql,
		intSetting("MAX_BODY_BYTES", "1048576", 1<<10, 64<<20, "largest accepted request body, in bytes",
			func(c *Config) *int64 { return &c.MaxBodyBytes }),
		durationSetting("HTTP_READ_TIMEOUT", "10s", time.Second, 10*time.Minute, "time allowed to read a whole request",
			func(c *Config) *time.Duration { return &c.ReadTimeout }),
		durationSetting("HTTP_WRITE_TIMEOUT", "30s", time.Second, 10*time.Minute, "time allowed to handle a request and write the response",
			func(c *Config) *time.Duration { return &c.WriteTimeout }),
		durationSetting("HTTP_IDLE_TIMEOUT", "120s", time.Second, time.Hour, "how long an idle keep-alive connection stays open",
			func(c *Config) *time.Duration { return &c.IdleTimeout }),
		durationSetting("SHUTDOWN_TIMEOUT", "20s", time.Second, 10*time.Minute, "grace period for in-flight requests on SIGINT/SIGTERM",
			func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		enumSetting("LOG_LEVEL", "info", "minimum level of log records",
			func(c *Config) *string { return &c.LogLevel }, "debug", "info", "warn", "error"),
		{
			name: "REDIS_URL",
			desc: "Redis for the shared cache, rate limits and persisted queries, e.g. redis://127.0.0.1:6379/0; " +
				"empty: in-process equivalents (fine for one instance)",
			parse: func(c *Config, raw string) error { c.RedisURL = raw; return nil },
			check: func(c Config) error {
				if c.RedisURL == "" {
					return nil
				}
				if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
					return errors.New("must be a redis:// or rediss:// URL")
				}
				return nil
			},
			show: func(c Config) slog.Value {
				if c.RedisURL == "" {
					return slog.StringValue("(empty)")
				}
				u, err := url.Parse(c.RedisURL)
				if err != nil {
					return slog.StringValue("(invalid URL, hidden)")
				}
				return slog.StringValue(u.Redacted())
			},
		},
		boolSetting("CACHE_ENABLED", "true", "cache users, tasks and task counts (in Redis when REDIS_URL is set)",
			func(c *Config) *bool { return &c.CacheEnabled }),
		intSetting("CACHE_MAX_ENTRIES", "100000", 100, 100_000_000, "entries held by the in-process cache (used without REDIS_URL)",
			func(c *Config) *int64 { return &c.CacheMaxEntries }),
		intSetting("CACHE_NEAR_MAX_ENTRIES", "20000", 0, 100_000_000,
			"entries each instance keeps in a near cache in front of Redis (0: none); a write answers once every instance has dropped what it changed (or, if one does not acknowledge, once its lease has run out: at most 260 ms)",
			func(c *Config) *int64 { return &c.CacheNearMaxEntries }),
		boolSetting("RATE_LIMIT_ENABLED", "true", "limit each client's query cost per hour and sign-in attempts per minute",
			func(c *Config) *bool { return &c.RateLimitEnabled }),
		intSetting("RATE_LIMIT_POINTS_PER_HOUR", "5000", 1, 10_000_000,
			"query-cost points per signed-in user per hour (a query costs 1 point per 100 nodes it may fetch, at least 1)",
			func(c *Config) *int64 { return &c.RateLimitPoints }),
		intSetting("RATE_LIMIT_ANON_POINTS_PER_HOUR", "1000", 1, 10_000_000, "query-cost points per anonymous client IP per hour",
			func(c *Config) *int64 { return &c.AnonRateLimitPoints }),
		intSetting("AUTH_RATE_LIMIT_PER_MINUTE", "10", 1, 100_000,
			"login and register attempts per client IP per minute (and half as many per email)",
			func(c *Config) *int64 { return &c.AuthRateLimit }),
		{
			name: "TRUSTED_PROXIES",
			desc: "comma-separated CIDRs of reverse proxies (e.g. nginx) whose X-Forwarded-For names the client IP; empty: use the peer address",
			parse: func(c *Config, raw string) error {
				c.TrustedProxies = splitList(raw)
				return nil
			},
			check: func(c Config) error {
				for _, p := range c.TrustedProxies {
					if _, err := netip.ParsePrefix(p); err != nil {
						return fmt.Errorf("each entry must be a CIDR such as 10.0.0.0/8, got %q", p)
					}
				}
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(strings.Join(c.TrustedProxies, ",")) },
		},
		{
			name: "DATABASE_READ_URLS",
			desc: "comma-separated PostgreSQL URLs of streaming replicas for reads; empty: all reads on DATABASE_URL",
			parse: func(c *Config, raw string) error {
				c.DatabaseReadURLs = splitList(raw)
				return nil
			},
			check: func(c Config) error {
				for i, u := range c.DatabaseReadURLs {
					if !isPostgresURL(u) {
						return fmt.Errorf("entry %d must be a postgres:// or postgresql:// URL", i+1)
					}
				}
				return nil
			},
			show: func(c Config) slog.Value {
				shown := make([]string, len(c.DatabaseReadURLs))
				for i, u := range c.DatabaseReadURLs {
					shown[i] = redactDatabaseURL(u)
				}
				return slog.StringValue(strings.Join(shown, ","))
			},
		},
		durationSetting("REPLICA_MAX_LAG", "1s", 100*time.Millisecond, time.Minute,
			"a replica further behind the primary than this leaves the read rotation until it catches up",
			func(c *Config) *time.Duration { return &c.ReplicaMaxLag }),
		durationSetting("READ_YOUR_WRITES_WINDOW", "5s", 0, 10*time.Minute,
			"after a user writes, their reads go to the primary for this long (shared through Redis when set)",
			func(c *Config) *time.Duration { return &c.ReadYourWritesFor }),
		durationSetting("REQUEST_TIMEOUT", "15s", 100*time.Millisecond, 5*time.Minute,
			"deadline for handling one GraphQL request, database work included",
			func(c *Config) *time.Duration { return &c.RequestTimeout }),
		durationSetting("SHUTDOWN_DELAY", "0s", 0, time.Minute,
			"on SIGTERM, answer /readyz with 503 for this long before closing the listener (lets load balancers drain)",
			func(c *Config) *time.Duration { return &c.ShutdownDelay }),
		intSetting("SUBSCRIPTIONS_PER_CONNECTION", "10", 1, 1000,
			"live subscriptions one websocket connection may hold at once",
			func(c *Config) *int64 { return &c.SubscriptionsPerConnection }),
		durationSetting("SUBSCRIPTION_SESSION_CHECK", "30s", 100*time.Millisecond, time.Hour,
			"how often every open websocket and SSE stream re-checks its session, as a safety net besides the "+
				"database's revocation events and the access token's expiry, which end them at once",
			func(c *Config) *time.Duration { return &c.SubscriptionSessionCheck }),
		intSetting("LIVE_CONNECTIONS_PER_USER", "16", 1, 10_000,
			"open websockets and SSE streams one user may hold at once on one instance; more are refused",
			func(c *Config) *int64 { return &c.ConnectionsPerUser }),
		intSetting("QUERY_MAX_NODES", "5000", 100, 1_000_000,
			"most nodes one query may ask for: each connection counts its page size times its children",
			func(c *Config) *int64 { return &c.QueryMaxNodes }),
		intSetting("QUERY_MAX_DEPTH", "12", 2, 100, "deepest selection nesting one query may use",
			func(c *Config) *int64 { return &c.QueryMaxDepth }),
		{
			name: "TRUSTED_DOCUMENTS",
			desc: "path of a JSON file mapping sha256 hashes to the only GraphQL documents the server will run " +
				"(persisted-query allow-list); empty: any document",
			parse: func(c *Config, raw string) error { c.TrustedDocuments = raw; return nil },
			show:  func(c Config) slog.Value { return slog.StringValue(c.TrustedDocuments) },
		},
		boolSetting("JOBS_IN_PROCESS", "true",
			"serve also runs the background job workers; false: only `taskgraph worker` processes run them",
			func(c *Config) *bool { return &c.JobsInProcess }),
		intSetting("JOB_WORKERS", "10", 1, 1000,
			"background jobs worked at once per process (serve in-process, or taskgraph worker); they use JOB_WORKERS+4 database connections of their own",
			func(c *Config) *int64 { return &c.JobWorkers }),
		durationSetting("JOB_TIMEOUT", "1m", time.Second, time.Hour,
			"a background job running longer is cancelled and retried with backoff",
			func(c *Config) *time.Duration { return &c.JobTimeout }),
		rescueAfter,
		durationSetting("DUE_SOON_WINDOW", "24h", time.Minute, 30*24*time.Hour,
			"tasks due within this window get one TASK_DUE_SOON reminder per due date",
			func(c *Config) *time.Duration { return &c.DueSoonWindow }),
		durationSetting("DUE_REMINDER_INTERVAL", "1m", time.Second, 24*time.Hour,
			"how often the periodic due-reminder job looks for tasks due soon",
			func(c *Config) *time.Duration { return &c.DueReminderInterval }),
		webhookAllowPrivate,
		durationSetting("WEBHOOK_RETRY_BASE", "1s", 0, time.Minute,
			"a failed webhook delivery is retried after WEBHOOK_RETRY_BASE × attempt⁴ (0: at once, for tests)",
			func(c *Config) *time.Duration { return &c.WebhookRetryBase }),
		smtpURLSetting(),
		{
			name: "SMTP_FROM", devDefault: defaultSMTPFrom, prodDefault: defaultSMTPFrom,
			desc:  "sender of notification emails, an address with an optional display name",
			parse: func(c *Config, raw string) error { c.SMTPFrom = raw; return nil },
			check: func(c Config) error {
				if _, err := netmail.ParseAddress(c.SMTPFrom); err != nil {
					return fmt.Errorf("must be an address such as \"Taskgraph <noreply@example.com>\", got %q", c.SMTPFrom)
				}
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(c.SMTPFrom) },
		},
		enumSetting("SMTP_TLS", email.TLSStartTLS,
			"TLS for smtp:// URLs (smtps:// is TLS from the start): starttls requires STARTTLS; none sends in the clear "+
				"(a development mail catcher or a relay on a trusted network; never with credentials)",
			func(c *Config) *string { return &c.SMTPTLS }, email.TLSStartTLS, email.TLSNone),
		{
			name: "WORKER_HTTP_ADDR", devDefault: ":8081", prodDefault: ":8081",
			desc:  "address `taskgraph worker` serves /healthz, /readyz and /metrics on, host:port (port 0: any free port)",
			parse: func(c *Config, raw string) error { c.WorkerHTTPAddr = raw; return nil },
			check: func(c Config) error {
				if _, port, err := net.SplitHostPort(c.WorkerHTTPAddr); err != nil || port == "" {
					return fmt.Errorf("must be host:port or :port, got %q", c.WorkerHTTPAddr)
				}
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(c.WorkerHTTPAddr) },
		},
		durationSetting("RESPONSE_CACHE_TTL", "30s", 0, 5*time.Minute,
			"with a cache (Redis or in-process) and no read replicas: how long a whole answer to a query that reads only the viewer's own data may be reused while nothing it depends on changed; 0: off",
			func(c *Config) *time.Duration { return &c.ResponseCacheTTL }),
		durationSetting("IDEMPOTENCY_KEY_TTL", "24h", time.Minute, 30*24*time.Hour,
			"a mutation's Idempotency-Key and its stored answer are kept this long; a retry after that runs again",
			func(c *Config) *time.Duration { return &c.IdempotencyKeyTTL }),
		durationSetting("TASK_CHANGES_RETENTION", "168h", time.Minute, 365*24*time.Hour,
			"task changes and deletions are kept this long for taskChanges (delta sync); an older sync token answers SYNC_TOKEN_EXPIRED",
			func(c *Config) *time.Duration { return &c.TaskChangesRetention }),
		durationSetting("LONG_JOB_TIMEOUT", "30m", time.Second, 12*time.Hour,
			"exports, reports and bulk operations get this long per attempt (a retry resumes at the last chunk)",
			func(c *Config) *time.Duration { return &c.LongJobTimeout }),
		intSetting("JOB_MAX_ACTIVE", "3", 1, 100,
			"a user's exports, reports and bulk operations queued or running at once; more answer RATE_LIMITED",
			func(c *Config) *int64 { return &c.JobMaxActive }),
		durationSetting("JOB_RETENTION", "168h", time.Minute, 365*24*time.Hour,
			"finished exports, reports and bulk operations are deleted this long after they finish",
			func(c *Config) *time.Duration { return &c.JobRetention }),
		durationSetting("EXPORT_RETENTION", "24h", time.Minute, 30*24*time.Hour,
			"an export file is deleted this long after it was made",
			func(c *Config) *time.Duration { return &c.ExportRetention }),
		durationSetting("EXPORT_URL_TTL", "15m", time.Second, 7*24*time.Hour,
			"a signed export download URL works this long after it was handed out",
			func(c *Config) *time.Duration { return &c.ExportURLTTL }),
		{
			name: "PUBLIC_URL",
			desc: "the API's public origin (e.g. https://api.example.com) for absolute export download URLs; empty: URLs relative to the API's origin",
			parse: func(c *Config, raw string) error {
				raw = strings.TrimRight(raw, "/")
				if raw != "" {
					u, err := url.Parse(raw)
					if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
						return errors.New("must be an http(s) origin such as https://api.example.com, optionally with a path prefix")
					}
				}
				c.PublicURL = raw
				return nil
			},
			show: func(c Config) slog.Value { return slog.StringValue(c.PublicURL) },
		},
	}
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/taskgraph?sslmode=disable"

const defaultSMTPFrom = "Taskgraph <noreply@localhost>"

// smtpURLSetting: empty turns email off. The URL may hold a password: it is shown redacted and no
// problem report quotes it.
func smtpURLSetting() setting {
	return setting{
		name: "SMTP_URL",
		desc: "SMTP server for notification emails, smtp://[user:password@]host[:port] (default port 587, STARTTLS) or " +
			"smtps://... (default port 465, TLS); empty: no email",
		parse: func(c *Config, raw string) error { c.SMTPURL = raw; return nil },
		check: func(c Config) error {
			if c.SMTPURL == "" {
				return nil
			}
			// The email package's own parser, so that a URL accepted here is one it can use. A bad
			// SMTP_TLS or SMTP_FROM is reported under its own name, not here too.
			mode := c.SMTPTLS
			if mode != email.TLSStartTLS && mode != email.TLSNone {
				mode = ""
			}
			_, err := email.ParseConfig(c.SMTPURL, defaultSMTPFrom, mode)
			return err
		},
		show: func(c Config) slog.Value {
			if c.SMTPURL == "" {
				return slog.StringValue("(empty)")
			}
			u, err := url.Parse(c.SMTPURL)
			if err != nil {
				return slog.StringValue("(invalid URL, hidden)")
			}
			return slog.StringValue(u.Redacted())
		},
	}
}

func checkJWTSecret(c Config) error {
	// Report lengths only: the value itself must never reach a log.
	switch {
	case c.JWTSecret == "" && c.Production():
		return errors.New("required in production (at least 32 bytes, e.g. openssl rand -hex 32)")
	case c.JWTSecret == "":
		return errors.New("must not be empty")
	case c.Production() && len(c.JWTSecret) < minJWTSecretBytes:
		return fmt.Errorf("must be at least %d bytes in production, got %d", minJWTSecretBytes, len(c.JWTSecret))
	}
	return nil
}

func checkOrigins(c Config) error {
	for _, origin := range c.CORSAllowedOrigins {
		if origin == "*" {
			if c.Production() {
				return errors.New(`"*" is allowed only in development; list the allowed origins`)
			}
			continue
		}
		// Browsers send Origin as scheme://host[:port] exactly; anything else would never match.
		u, err := url.Parse(origin)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("each origin must look like https://app.example.com (no path or trailing slash), got %q", origin)
		}
	}
	return nil
}

func isPostgresURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}

// redactDatabaseURL masks the password, whether in the user info or in a password= parameter.
func redactDatabaseURL(raw string) string {
	if !isPostgresURL(raw) {
		return "(invalid URL, hidden)"
	}
	u, _ := url.Parse(raw)
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

func splitList(raw string) []string {
	var out []string
	for part := range strings.SplitSeq(raw, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func both(a, b func(Config) error) func(Config) error {
	return func(c Config) error {
		if err := a(c); err != nil {
			return err
		}
		return b(c)
	}
}

func enumSetting(name, def, desc string, field func(*Config) *string, choices ...string) setting {
	return setting{
		name: name, devDefault: def, prodDefault: def,
		desc:  desc + ": " + strings.Join(choices, " | "),
		parse: func(c *Config, raw string) error { *field(c) = raw; return nil },
		check: func(c Config) error {
			if v := *field(&c); !slices.Contains(choices, v) {
				return fmt.Errorf("must be one of %s, got %q", strings.Join(choices, ", "), v)
			}
			return nil
		},
		show: func(c Config) slog.Value { return slog.StringValue(*field(&c)) },
	}
}

func boolSetting(name, def, desc string, field func(*Config) *bool) setting {
	return setting{
		name: name, devDefault: def, prodDefault: def,
		desc: desc + " (true | false)",
		parse: func(c *Config, raw string) error {
			v, err := strconv.ParseBool(raw)
			if err != nil {
				return fmt.Errorf("must be true or false, got %q", raw)
			}
			*field(c) = v
			return nil
		},
		show: func(c Config) slog.Value { return slog.BoolValue(*field(&c)) },
	}
}

func intSetting[T int32 | int64](name, def string, lo, hi T, desc string, field func(*Config) *T) setting {
	want := fmt.Sprintf("must be an integer between %d and %d", lo, hi)
	return setting{
		name: name, devDefault: def, prodDefault: def,
		desc: fmt.Sprintf("%s (%d..%d)", desc, lo, hi),
		parse: func(c *Config, raw string) error {
			v, err := strconv.ParseInt(raw, 10, 64)
			if err != nil || v < int64(lo) || v > int64(hi) {
				// Out-of-range values are rejected here too: they may not fit in T.
				return fmt.Errorf("%s, got %q", want, raw)
			}
			*field(c) = T(v)
			return nil
		},
		check: func(c Config) error {
			if v := *field(&c); v < lo || v > hi {
				return fmt.Errorf("%s, got %d", want, v)
			}
			return nil
		},
		show: func(c Config) slog.Value { return slog.Int64Value(int64(*field(&c))) },
	}
}

func durationSetting(name, def string, lo, hi time.Duration, desc string, field func(*Config) *time.Duration) setting {
	want := fmt.Sprintf("must be a duration between %s and %s (e.g. 90s, 15m, 2h)", formatDuration(lo), formatDuration(hi))
	return setting{
		name: name, devDefault: def, prodDefault: def,
		desc: fmt.Sprintf("%s (%s..%s)", desc, formatDuration(lo), formatDuration(hi)),
		parse: func(c *Config, raw string) error {
			v, err := time.ParseDuration(raw)
			if err != nil {
				return fmt.Errorf("%s, got %q", want, raw)
			}
			*field(c) = v
			return nil
		},
		check: func(c Config) error {
			if v := *field(&c); v < lo || v > hi {
				return fmt.Errorf("%s, got %s", want, formatDuration(v))
			}
			return nil
		},
		show: func(c Config) slog.Value { return slog.StringValue(formatDuration(*field(&c))) },
	}
}

// formatDuration drops time.Duration's zero units: "24h" rather than "24h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
