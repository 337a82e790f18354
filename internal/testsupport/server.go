package testsupport

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/server"
)

// Env is a running Taskgraph on a fresh database, reached over real HTTP.
type Env struct {
	DB     *Database
	Store  *db.DB
	App    *server.App
	Config config.Config
	Server *httptest.Server
	Logs   *LogBuffer
}

// NewEnv starts the real handler on a fresh database. overrides sets environment variables on top
// of the defaults (for example APP_ENV=production).
func NewEnv(t testing.TB, overrides map[string]string) *Env {
	t.Helper()
	return NewEnvOn(t, NewDatabase(t), overrides)
}

// NewEnvOn starts another instance on an existing test database (several instances behind one
// database, as in production).
func NewEnvOn(t testing.TB, database *Database, overrides map[string]string) *Env {
	t.Helper()
	// Tests sign in far more often than a person; the tests of the limits set them low again.
	env := map[string]string{
		"JWT_SECRET": "test-secret-test-secret-test-secret-0123", "LOG_LEVEL": "debug",
		"AUTH_RATE_LIMIT_PER_MINUTE": "100000",
	}
	if testing.Short() {
		// The fast tier runs no background workers unless a test asks for them: River's leader
		// election, polling and periodic jobs would otherwise run beside every test.
		env["JOBS_IN_PROCESS"] = "false"
	}
	for k, v := range overrides {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	// Statements are also counted per request, so a test can tell one request's from background work's.
	if database.Counter != nil {
		database.Counter.KeyBy(server.RequestID)
	}
	logs := &LogBuffer{}
	// Everything is logged unless the test asks for a level (the benchmarks ask for warn, as
	// `taskgraph bench` runs its server: an access log line per request is not what they measure).
	level := slog.LevelDebug
	if _, set := overrides["LOG_LEVEL"]; set {
		if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
			t.Fatalf("LOG_LEVEL: %v", err)
		}
	}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	metrics, err := observe.New(reg)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	// Sign-ups hash with cheap argon2 parameters: the production ones cost most of the fast tier's CPU.
	app, err := server.Build(cfg, database.Pool, logger, server.Observability{Metrics: metrics, Gatherer: reg},
		server.WithPasswordHasher(auth.TestHasher()))
	if err != nil {
		t.Fatalf("build server: %v", err)
	}
	t.Cleanup(app.Close)
	bg, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go app.Background(bg)
	h := app.Handler
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Env{DB: database, Store: app.DB, App: app, Config: cfg, Server: srv, Logs: logs}
}

// Response is a decoded GraphQL response with its HTTP status and headers.
type Response struct {
	Status int
	Header http.Header
	Data   json.RawMessage `json:"data"`
	Errors []Error         `json:"errors"`
	// Extensions are the answer's extensions (apiVersion, cost, ...).
	Extensions map[string]any `json:"extensions"`
}

// Error is one GraphQL error.
type Error struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Code returns the error's extensions.code.
func (e Error) Code() string { s, _ := e.Extensions["code"].(string); return s }

// Field returns the error's extensions.field.
func (e Error) Field() string { s, _ := e.Extensions["field"].(string); return s }

// Codes lists the codes of every error, in order.
func (r Response) Codes() []string {
	out := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		out[i] = e.Code()
	}
	return out
}

// Decode unmarshals data into v, failing the test if the response has errors.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected GraphQL errors (status %d): %+v", r.Status, r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode data %s: %v", r.Data, err)
	}
}

// Client sends GraphQL requests as one user (or anonymously when Token is empty).
type Client struct {
	Env   *Env
	Token string
}

// Anonymous returns a client without a token.
func (e *Env) Anonymous() *Client { return &Client{Env: e} }

// Do posts one operation and decodes the answer.
func (c *Client) Do(t testing.TB, query string, vars map[string]any) Response {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	return c.Raw(t, http.MethodPost, "/graphql", "application/json", body)
}

// Raw sends any request to the server and decodes a GraphQL-shaped answer when there is one.
func (c *Client) Raw(t testing.TB, method, path, contentType string, body []byte) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.Env.Server.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	res, err := c.Env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := Response{Status: res.StatusCode, Header: res.Header}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/") && len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("response is not JSON (%d): %s", res.StatusCode, raw)
		}
	}
	return out
}

// User is a registered test user with a signed-in client.
type User struct {
	*Client
	ID           uuid.UUID
	GlobalID     string
	Email        string
	Password     string
	RefreshToken string
}

const registerMutation = `mutation($input: RegisterInput!) {
  register(input: $input) { accessToken refreshToken user { id } }
}`

// Register creates a user through the API and returns it signed in.
func (e *Env) Register(t testing.TB, name string) *User {
	t.Helper()
	email := strings.ToLower(name) + "-" + randomHex(3) + "@example.com"
	password := "password-" + randomHex(4)
	res := e.Anonymous().Do(t, registerMutation, map[string]any{
		"input": map[string]any{"name": name, "email": email, "password": password},
	})
	var data struct {
		Register struct {
			AccessToken, RefreshToken string
			User                      struct{ ID string }
		}
	}
	res.Decode(t, &data)
	_, id, err := globalid.Decode("id", data.Register.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	return &User{
		Client: &Client{Env: e, Token: data.Register.AccessToken}, ID: id, GlobalID: data.Register.User.ID,
		Email: email, Password: password, RefreshToken: data.Register.RefreshToken,
	}
}

// MakeAdmin promotes u; the change applies to u's existing tokens at once.
func (e *Env) MakeAdmin(t testing.TB, u *User) {
	t.Helper()
	if _, err := e.Store.Stores().Users.SetRole(context.Background(), u.Email, policy.RoleAdmin); err != nil {
		t.Fatal(err)
	}
}

// CreateTask inserts a task for owner directly through the store (fast setup for list tests).
func (e *Env) CreateTask(t testing.TB, owner uuid.UUID, nt db.NewTask) *db.Task {
	t.Helper()
	if nt.Status == "" {
		nt.Status = db.StatusTodo
	}
	task, err := e.Store.Stores().Tasks.Create(context.Background(), owner, nt)
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	return task
}

// Exec runs SQL on the test database (for setup that the API cannot express, such as back-dating).
func (e *Env) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := e.DB.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// CountRows returns the number of rows of table (for "nothing was written" assertions).
func (e *Env) CountRows(t testing.TB, table string) int {
	t.Helper()
	var n int
	if err := e.DB.Pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// WaitEventsReady waits until the instance's event listener listens (live updates and, without
// Redis, cache invalidations from other processes reach it only from then on).
func (e *Env) WaitEventsReady(t testing.TB) {
	t.Helper()
	select {
	case <-e.App.Events.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("event listener never became ready")
	}
}

// MetricLines returns the lines of the server's /metrics exposition.
func (e *Env) MetricLines(t testing.TB) []string {
	t.Helper()
	res, err := e.Server.Client().Get(e.Server.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", res.StatusCode, err)
	}
	return strings.Split(string(body), "\n")
}
