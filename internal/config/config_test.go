package config

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over a fixed map.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

const prodSecret = "0123456789abcdef0123456789abcdef" // exactly 32 bytes

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load with empty environment: %v", err)
	}
	want := Config{
		Env:                        "development",
		HTTPAddr:                   ":8080",
		DatabaseURL:                "postgres://postgres@127.0.0.1:5432/taskgraph?sslmode=disable",
		DBMaxConns:                 20,
		JWTSecret:                  c.JWTSecret, // random, checked below
		GeneratedSecret:            true,
		AccessTokenTTL:             15 * time.Minute,
		RefreshTokenTTL:            720 * time.Hour,
		CORSAllowedOrigins:         []string{"http://localhost:3000", "http://localhost:5173"},
		GraphiQL:                   true,
		MaxBodyBytes:               1 << 20,
		ReadTimeout:                10 * time.Second,
		WriteTimeout:               30 * time.Second,
		IdleTimeout:                120 * time.Second,
		ShutdownTimeout:            20 * time.Second,
		LogLevel:                   "info",
		CacheEnabled:               true,
		CacheMaxEntries:            100000,
		CacheNearMaxEntries:        20000,
		RateLimitEnabled:           true,
		RateLimitPoints:            5000,
		AnonRateLimitPoints:        1000,
		AuthRateLimit:              10,
		QueryMaxNodes:              5000,
		QueryMaxDepth:              12,
		ReplicaMaxLag:              time.Second,
		ReadYourWritesFor:          5 * time.Second,
		RequestTimeout:             15 * time.Second,
		JobsInProcess:              true,
		SubscriptionsPerConnection: 10,
		SubscriptionSessionCheck:   30 * time.Second,
		ConnectionsPerUser:         16,
		JobWorkers:                 10,
		JobTimeout:                 time.Minute,
		JobRescueAfter:             time.Hour,
		DueSoonWindow:              24 * time.Hour,
		DueReminderInterval:        time.Minute,
		WebhookRetryBase:           time.Second,
		SMTPFrom:                   "Taskgraph <noreply@localhost>",
		SMTPTLS:                    "starttls",
		WorkerHTTPAddr:             ":8081",
		LongJobTimeout:             30 * time.Minute,
		JobMaxActive:               3,
		JobRetention:               168 * time.Hour,
		ExportRetention:            24 * time.Hour,
		ExportURLTTL:               15 * time.Minute,
		ResponseCacheTTL:           30 * time.Second,
		IdempotencyKeyTTL:          24 * time.Hour,
		TaskChangesRetention:       168 * time.Hour,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if c.Production() {
		t.Error("Production() = true for the default environment")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate on loaded defaults: %v", err)
	}
}

func TestLoadGeneratesSecretInDevelopment(t *testing.T) {
	a, errA := Load(env(nil))
	b, errB := Load(env(nil))
	if errA != nil || errB != nil {
		t.Fatalf("Load: %v, %v", errA, errB)
	}
	raw, err := hex.DecodeString(a.JWTSecret)
	if err != nil || len(raw) != 32 {
		t.Errorf("generated secret %d chars, hex error %v; want 32 random bytes in hex", len(a.JWTSecret), err)
	}
	if !a.GeneratedSecret {
		t.Error("GeneratedSecret = false for a generated secret")
	}
	if a.JWTSecret == b.JWTSecret {
		t.Error("two loads generated the same secret")
	}

	given, err := Load(env(map[string]string{"JWT_SECRET": "short-but-fine-in-dev"}))
	if err != nil {
		t.Fatalf("Load with a development secret: %v", err)
	}
	if given.GeneratedSecret || given.JWTSecret != "short-but-fine-in-dev" {
		t.Errorf("given secret: JWTSecret=%q GeneratedSecret=%v", given.JWTSecret, given.GeneratedSecret)
	}
}

func TestLoadProduction(t *testing.T) {
	c, err := Load(env(map[string]string{"APP_ENV": "production", "JWT_SECRET": prodSecret}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !c.Production() || c.GeneratedSecret || c.JWTSecret != prodSecret {
		t.Errorf("Production()=%v GeneratedSecret=%v JWTSecret ok=%v", c.Production(), c.GeneratedSecret, c.JWTSecret == prodSecret)
	}
	if len(c.CORSAllowedOrigins) != 0 || c.GraphiQL {
		t.Errorf("production defaults: CORS %q, GraphiQL %v; want none, false", c.CORSAllowedOrigins, c.GraphiQL)
	}
}

func TestLoadProductionRequiresLongSecret(t *testing.T) {
	for _, secret := range []string{"", prodSecret[:31]} {
		_, err := Load(env(map[string]string{"APP_ENV": "production", "JWT_SECRET": secret}))
		if err == nil || !strings.Contains(err.Error(), "JWT_SECRET: ") {
			t.Errorf("JWT_SECRET of %d bytes in production: err = %v, want a JWT_SECRET problem", len(secret), err)
			continue
		}
		if secret != "" && strings.Contains(err.Error(), secret) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
}

func TestLoadWildcardOrigin(t *testing.T) {
	dev, err := Load(env(map[string]string{"CORS_ALLOWED_ORIGINS": "*"}))
	if err != nil || !slices.Equal(dev.CORSAllowedOrigins, []string{"*"}) {
		t.Errorf("development with *: %q, %v; want [*], nil", dev.CORSAllowedOrigins, err)
	}
	_, err = Load(env(map[string]string{"APP_ENV": "production", "JWT_SECRET": prodSecret, "CORS_ALLOWED_ORIGINS": "https://a.example, *"}))
	if err == nil || !strings.Contains(err.Error(), "CORS_ALLOWED_ORIGINS: ") {
		t.Errorf("production with *: err = %v, want a CORS_ALLOWED_ORIGINS problem", err)
	}
}

func TestLoadParsesOverrides(t *testing.T) {
	c, err := Load(env(map[string]string{
		"APP_ENV":                         "production",
		"HTTP_ADDR":                       "127.0.0.1:9000",
		"DATABASE_URL":                    "postgresql://app:pw@db:5432/tg",
		"DB_MAX_CONNS":                    "50",
		"JWT_SECRET":                      prodSecret,
		"ACCESS_TOKEN_TTL":                "5m",
		"REFRESH_TOKEN_TTL":               "24h",
		"CORS_ALLOWED_ORIGINS":            " https://app.example.com , https://admin.example.com:8443,",
		"GRAPHIQL":                        "true",
		"MAX_BODY_BYTES":                  "2048",
		"HTTP_READ_TIMEOUT":               "5s",
		"HTTP_WRITE_TIMEOUT":              "1m",
		"HTTP_IDLE_TIMEOUT":               "30s",
		"SHUTDOWN_TIMEOUT":                "45s",
		"LOG_LEVEL":                       "debug",
		"REDIS_URL":                       "redis://:pw@cache:6379/2",
		"CACHE_ENABLED":                   "false",
		"CACHE_MAX_ENTRIES":               "500",
		"RATE_LIMIT_ENABLED":              "false",
		"RATE_LIMIT_POINTS_PER_HOUR":      "100",
		"RATE_LIMIT_ANON_POINTS_PER_HOUR": "10",
		"AUTH_RATE_LIMIT_PER_MINUTE":      "3",
		"TRUSTED_PROXIES":                 "10.0.0.0/8, 127.0.0.1/32",
		"QUERY_MAX_NODES":                 "1000",
		"QUERY_MAX_DEPTH":                 "8",
		"TRUSTED_DOCUMENTS":               "/etc/taskgraph/documents.json",
		"DATABASE_READ_URLS":              "postgres://r1:5432/tg, postgres://r2:5432/tg",
		"REPLICA_MAX_LAG":                 "500ms",
		"READ_YOUR_WRITES_WINDOW":         "10s",
		"REQUEST_TIMEOUT":                 "5s",
		"SHUTDOWN_DELAY":                  "3s",
		"SUBSCRIPTIONS_PER_CONNECTION":    "4",
		"SUBSCRIPTION_SESSION_CHECK":      "5s",
		"LIVE_CONNECTIONS_PER_USER":       "7",
		"JOBS_IN_PROCESS":                 "false",
		"JOB_WORKERS":                     "3",
		"JOB_TIMEOUT":                     "30s",
		"JOB_RESCUE_AFTER":                "2m",
		"LONG_JOB_TIMEOUT":                "90s",
		"RESPONSE_CACHE_TTL":              "0",
		"IDEMPOTENCY_KEY_TTL":             "2h",
		"TASK_CHANGES_RETENTION":          "72h",
		"JOB_MAX_ACTIVE":                  "5",
		"JOB_RETENTION":                   "48h",
		"EXPORT_RETENTION":                "1h",
		"EXPORT_URL_TTL":                  "5m",
		"PUBLIC_URL":                      "https://api.example.com/",
		"DUE_SOON_WINDOW":                 "2h",
		"DUE_REMINDER_INTERVAL":           "5m",
		"SMTP_URL":                        "smtp://relay.internal:25",
		"SMTP_FROM":                       "Tasks <tasks@example.com>",
		"SMTP_TLS":                        "none",
		"WORKER_HTTP_ADDR":                "127.0.0.1:9100",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Env: "production", HTTPAddr: "127.0.0.1:9000", DatabaseURL: "postgresql://app:pw@db:5432/tg",
		DBMaxConns: 50, JWTSecret: prodSecret, AccessTokenTTL: 5 * time.Minute, RefreshTokenTTL: 24 * time.Hour,
		CORSAllowedOrigins: []string{"https://app.example.com", "https://admin.example.com:8443"},
		GraphiQL:           true, MaxBodyBytes: 2048, ReadTimeout: 5 * time.Second, WriteTimeout: time.Minute,
		IdleTimeout: 30 * time.Second, ShutdownTimeout: 45 * time.Second, LogLevel: "debug",
		RedisURL: "redis://:pw@cache:6379/2", CacheMaxEntries: 500, CacheNearMaxEntries: 20000, RateLimitPoints: 100, AnonRateLimitPoints: 10,
		AuthRateLimit: 3, TrustedProxies: []string{"10.0.0.0/8", "127.0.0.1/32"}, QueryMaxNodes: 1000, QueryMaxDepth: 8,
		TrustedDocuments: "/etc/taskgraph/documents.json",
		DatabaseReadURLs: []string{"postgres://r1:5432/tg", "postgres://r2:5432/tg"}, ReplicaMaxLag: 500 * time.Millisecond,
		ReadYourWritesFor: 10 * time.Second, RequestTimeout: 5 * time.Second, ShutdownDelay: 3 * time.Second,
		SubscriptionsPerConnection: 4, SubscriptionSessionCheck: 5 * time.Second, ConnectionsPerUser: 7,
		SMTPURL: "smtp://relay.internal:25", SMTPFrom: "Tasks <tasks@example.com>", SMTPTLS: "none", WorkerHTTPAddr: "127.0.0.1:9100",
		JobWorkers: 3, JobTimeout: 30 * time.Second, JobRescueAfter: 2 * time.Minute, DueSoonWindow: 2 * time.Hour,
		WebhookRetryBase:    time.Second,
		DueReminderInterval: 5 * time.Minute,
		IdempotencyKeyTTL:   2 * time.Hour, TaskChangesRetention: 72 * time.Hour,
		LongJobTimeout: 90 * time.Second, JobMaxActive: 5, JobRetention: 48 * time.Hour,
		ExportRetention: time.Hour, ExportURLTTL: 5 * time.Minute, PublicURL: "https://api.example.com",
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("overrides:\n got %+v\nwant %+v", c, want)
	}
}

func TestLoadReportsEveryProblemOnce(t *testing.T) {
	bad := map[string]string{
		"APP_ENV":              "staging",
		"HTTP_ADDR":            "8080",
		"DATABASE_URL":         "mysql://root:hunter2pw@db/tg",
		"DB_MAX_CONNS":         "abc",
		"ACCESS_TOKEN_TTL":     "3s",
		"REFRESH_TOKEN_TTL":    "forever",
		"CORS_ALLOWED_ORIGINS": "https://app.example.com/",
		"GRAPHIQL":             "maybe",
		"MAX_BODY_BYTES":       "99999999999999999999",
		"HTTP_READ_TIMEOUT":    "0s",
		"HTTP_WRITE_TIMEOUT":   "10",
		"HTTP_IDLE_TIMEOUT":    "2h",
		"SHUTDOWN_TIMEOUT":     "-1s",
		"LOG_LEVEL":            "verbose",
	}
	_, err := Load(env(bad))
	if err == nil {
		t.Fatal("Load accepted invalid values")
	}
	msg := err.Error()
	for name := range bad {
		if n := strings.Count(msg, name+": "); n != 1 {
			t.Errorf("%s reported %d times, want once, in: %s", name, n, msg)
		}
	}
	for _, want := range []string{
		`DB_MAX_CONNS: must be an integer between 1 and 1000, got "abc"`,
		`ACCESS_TOKEN_TTL: must be a duration between 5s and 24h (e.g. 90s, 15m, 2h), got 3s`,
		`APP_ENV: must be one of development, production, got "staging"`,
		`GRAPHIQL: must be true or false, got "maybe"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2pw") {
		t.Errorf("error echoes the database password: %s", msg)
	}
}

func TestLoadRefreshMustOutliveAccess(t *testing.T) {
	_, err := Load(env(map[string]string{"ACCESS_TOKEN_TTL": "2h", "REFRESH_TOKEN_TTL": "1h"}))
	if err == nil || !strings.Contains(err.Error(), "REFRESH_TOKEN_TTL: must be longer than ACCESS_TOKEN_TTL") {
		t.Errorf("err = %v, want REFRESH_TOKEN_TTL must be longer than ACCESS_TOKEN_TTL", err)
	}
}

func TestValidate(t *testing.T) {
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c.DBMaxConns = 0
	c.Env = "production" // the generated 64-char secret is long enough, so only the pool size fails
	err = c.Validate()
	if err == nil || !strings.Contains(err.Error(), "DB_MAX_CONNS: must be an integer between 1 and 1000, got 0") {
		t.Errorf("Validate = %v, want a DB_MAX_CONNS problem", err)
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "JWT_SECRET: ") {
		t.Errorf("Validate on zero Config = %v, want problems including JWT_SECRET", err)
	}
}

func TestLogValueMasksSecrets(t *testing.T) {
	const secret, password, queryPassword = "super-secret-signing-key-0123456789", "dbpassw0rd", "qpassw0rd"
	c, err := Load(env(map[string]string{
		"JWT_SECRET":   secret,
		"DATABASE_URL": "postgres://app:" + password + "@db:5432/tg?sslmode=disable&password=" + queryPassword,
	}))
	if err != nil {
		t.Fatal(err)
	}
	gen, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	// With failover (docs/operations.md) the URL lists every node and picks the writable one.
	multi, err := Load(env(map[string]string{
		"JWT_SECRET":   secret,
		"DATABASE_URL": "postgres://app:" + password + "@db1:5432,db2:5432/tg?target_session_attrs=read-write",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c       Config
		secrets []string
		want    []string
	}{
		{c, []string{secret, password, queryPassword}, []string{"JWT_SECRET=***", "app:xxxxx@db:5432", "DB_MAX_CONNS=20"}},
		{gen, []string{gen.JWTSecret}, []string{"JWT_SECRET=(generated)"}},
		{multi, []string{password}, []string{"app:xxxxx@db1:5432,db2:5432/tg?target_session_attrs=read-write"}},
	} {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", tc.c)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", tc.c)
		out := buf.String()
		for _, s := range tc.secrets {
			if strings.Contains(out, s) {
				t.Errorf("log output contains a secret %q:\n%s", s, out)
			}
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("log output lacks %q:\n%s", w, out)
			}
		}
	}
}

func TestUsageListsEverySetting(t *testing.T) {
	var buf bytes.Buffer
	Usage(&buf)
	out := buf.String()
	names := []string{
		"APP_ENV", "HTTP_ADDR", "DATABASE_URL", "DB_MAX_CONNS", "JWT_SECRET", "ACCESS_TOKEN_TTL",
		"REFRESH_TOKEN_TTL", "CORS_ALLOWED_ORIGINS", "GRAPHIQL", "MAX_BODY_BYTES", "HTTP_READ_TIMEOUT",
		"HTTP_WRITE_TIMEOUT", "HTTP_IDLE_TIMEOUT", "SHUTDOWN_TIMEOUT", "LOG_LEVEL",
		"REDIS_URL", "CACHE_ENABLED", "CACHE_MAX_ENTRIES", "CACHE_NEAR_MAX_ENTRIES", "RATE_LIMIT_ENABLED", "RATE_LIMIT_POINTS_PER_HOUR",
		"RATE_LIMIT_ANON_POINTS_PER_HOUR", "AUTH_RATE_LIMIT_PER_MINUTE", "TRUSTED_PROXIES", "QUERY_MAX_NODES",
		"QUERY_MAX_DEPTH", "TRUSTED_DOCUMENTS", "DATABASE_READ_URLS", "REPLICA_MAX_LAG", "READ_YOUR_WRITES_WINDOW",
		"REQUEST_TIMEOUT", "SHUTDOWN_DELAY", "JOBS_IN_PROCESS", "JOB_WORKERS", "JOB_TIMEOUT", "JOB_RESCUE_AFTER",
		"DUE_SOON_WINDOW", "DUE_REMINDER_INTERVAL", "SUBSCRIPTIONS_PER_CONNECTION", "SUBSCRIPTION_SESSION_CHECK",
		"LIVE_CONNECTIONS_PER_USER", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_RETRY_BASE",
		"SMTP_URL", "SMTP_FROM", "SMTP_TLS", "WORKER_HTTP_ADDR",
		"RESPONSE_CACHE_TTL", "LONG_JOB_TIMEOUT", "JOB_MAX_ACTIVE", "JOB_RETENTION", "EXPORT_RETENTION", "EXPORT_URL_TTL", "PUBLIC_URL",
		"IDEMPOTENCY_KEY_TTL", "TASK_CHANGES_RETENTION",
	}
	for _, name := range names {
		if !strings.Contains(out, "\n"+name+" ") {
			t.Errorf("Usage lacks a row for %s:\n%s", name, out)
		}
	}
	// Every Config field except GeneratedSecret is a setting, so a new field needs a table row.
	if fields := reflect.TypeFor[Config]().NumField() - 1; fields != len(names) || len(settings()) != len(names) {
		t.Errorf("Config has %d settings, table %d rows, test knows %d", fields, len(settings()), len(names))
	}
	for _, want := range []string{"random per start in development", "true (production: false)", "(empty)"} {
		if !strings.Contains(out, want) {
			t.Errorf("Usage lacks %q:\n%s", want, out)
		}
	}
}

func TestLogValueMasksRedisPassword(t *testing.T) {
	c, err := Load(env(map[string]string{"REDIS_URL": "redis://user:hunter2secret@cache:6379/0"}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	if strings.Contains(buf.String(), "hunter2secret") || !strings.Contains(buf.String(), "cache:6379") {
		t.Fatalf("log = %s; want the Redis host without its password", buf.String())
	}
}

// TestReadmeListsEverySetting keeps the settings table of docs/configuration.md in step with the code.
func TestReadmeListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings() {
		if !strings.Contains(string(readme), "| `"+s.name+"` |") {
			t.Errorf("docs/configuration.md's settings table lacks a row for %s", s.name)
		}
	}
}

func TestJobRescueAfterMustExceedJobTimeout(t *testing.T) {
	_, err := Load(env(map[string]string{"JOB_TIMEOUT": "10m", "JOB_RESCUE_AFTER": "5m"}))
	if err == nil || !strings.Contains(err.Error(), "JOB_RESCUE_AFTER: must be longer than JOB_TIMEOUT (10m)") {
		t.Errorf("JOB_RESCUE_AFTER below JOB_TIMEOUT: err = %v, want a JOB_RESCUE_AFTER problem", err)
	}
	_, err = Load(env(map[string]string{"LONG_JOB_TIMEOUT": "2h"}))
	if err == nil || !strings.Contains(err.Error(), "JOB_RESCUE_AFTER: must be longer than LONG_JOB_TIMEOUT (2h)") {
		t.Errorf("JOB_RESCUE_AFTER below LONG_JOB_TIMEOUT: err = %v, want a JOB_RESCUE_AFTER problem", err)
	}
	c, err := Load(env(map[string]string{"JOB_TIMEOUT": "1s", "LONG_JOB_TIMEOUT": "1s", "JOB_RESCUE_AFTER": "2s"}))
	if err != nil || c.JobTimeout != time.Second || c.JobRescueAfter != 2*time.Second {
		t.Errorf("JOB_TIMEOUT=1s JOB_RESCUE_AFTER=2s: %v, %v, %v", c.JobTimeout, c.JobRescueAfter, err)
	}
}

// The SMTP password is a secret: masked when the config is logged, never quoted by a problem report.
func TestSMTPURLPasswordNeverShown(t *testing.T) {
	const password = "smtp-hunter2-pw"
	c, err := Load(env(map[string]string{"SMTP_URL": "smtp://mailer:" + password + "@mail.example.com:587"}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "config", c)
	out := buf.String()
	if strings.Contains(out, password) || !strings.Contains(out, "mailer:xxxxx@mail.example.com:587") {
		t.Fatalf("log = %s; want the SMTP URL without its password", out)
	}
	for _, vars := range []map[string]string{
		{"SMTP_URL": "smtp://mailer:" + password + "@mail.example.com:99999"},
		{"SMTP_URL": "smtp://mailer:" + password + "@mail.example.com:abc"},
		{"SMTP_URL": "ftp://mailer:" + password + "@mail.example.com"},
		{"SMTP_URL": "smtp://mailer:" + password + "@127.0.0.1:1025", "SMTP_TLS": "none"},
	} {
		_, err := Load(env(vars))
		if err == nil || !strings.Contains(err.Error(), "SMTP_URL: ") {
			t.Errorf("%v: err = %v, want an SMTP_URL problem", vars, err)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("the problem report shows the password: %v", err)
		}
	}
}

func TestSMTPSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		want string // "" for no problem
	}{
		{map[string]string{}, ""},
		{map[string]string{"SMTP_URL": "smtp://127.0.0.1:1025", "SMTP_TLS": "none"}, ""},
		{map[string]string{"SMTP_URL": "smtps://u:p@mail.example.com", "APP_ENV": "production", "JWT_SECRET": prodSecret}, ""},
		{map[string]string{"SMTP_URL": "smtps://mail.example.com", "SMTP_TLS": "none"}, "SMTP_URL: SMTP_TLS=none contradicts smtps://"},
		{map[string]string{"SMTP_TLS": "opportunistic", "SMTP_URL": "smtp://mail.example.com"}, `SMTP_TLS: must be one of starttls, none, got "opportunistic"`},
		{map[string]string{"SMTP_FROM": "nobody"}, `SMTP_FROM: must be an address`},
		{map[string]string{"WORKER_HTTP_ADDR": "9090"}, `WORKER_HTTP_ADDR: must be host:port or :port, got "9090"`},
	} {
		_, err := Load(env(tc.vars))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.vars, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err = %v, want %q", tc.vars, err, tc.want)
		case tc.want != "" && strings.Contains(err.Error(), "; "): // problems are joined with "; "
			t.Errorf("%v: more than one problem reported: %v", tc.vars, err)
		}
	}
}
