package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/server"
)

// benchJWTSecret signs the access tokens and cursors of every server the benchmark starts, so the
// tokens and cursors made during setup work on all of them.
const benchJWTSecret = "taskgraph-bench-secret-0123456789abcdef"

// taskSample is how many of each bench user's tasks the task-by-id and write scenarios pick from.
const taskSample = 100

// benchUser is one signed-in client identity with everything its requests need.
type benchUser struct {
	n         int
	id        uuid.UUID
	token     string    // access token, valid for 24 h
	sessionID uuid.UUID // the session the token names (the ceiling looks it up like the server does)
	tasks     []uuid.UUID
	taskGIDs  []string
	// The deep page starts after the DeepOffset-th task in the default order (newest first): its
	// cursor as the API issued it, and its sort key for the ceiling's SQL.
	deepCursor    string
	deepCreatedAt time.Time
	deepID        uuid.UUID
	// Request bodies that do not vary between requests.
	pageBody, deepBody []byte
	taskBodies         [][]byte
	// peer holds the bodies of the comparison with PostGraphile (nil until it is prepared).
	peer *peerBodies
}

// mode is one way of serving the scenarios: the direct-SQL ceiling, the server in one setting, or the
// peer.
type mode string

const (
	modeCeiling      mode = "sql"
	modeDefault      mode = "default"      // CACHE_ENABLED=true without REDIS_URL: the in-process cache, as a new user starts
	modeUncached     mode = "uncached"     // CACHE_ENABLED=false, no Redis, so no response cache either: every cache off
	modeCached       mode = "cached"       // CACHE_ENABLED=true with REDIS_URL (row cache and response cache in Redis)
	modePostGraphile mode = "postgraphile" // the peer (peer.go)
)

// serverModes are the modes the server runs in, in report order.
func serverModes() []mode { return []mode{modeDefault, modeUncached, modeCached} }

// redis reports whether the server uses Redis in this mode.
func (m mode) redis() bool { return m == modeCached }

// title says what the mode is, for tables.
func (m mode) title() string {
	switch m {
	case modeCeiling:
		return "direct SQL (ceiling)"
	case modeDefault:
		return "GraphQL, default (in-process cache)"
	case modeCached:
		return "GraphQL, Redis cache"
	case modePostGraphile:
		return "PostGraphile"
	}
	return "GraphQL, cache off"
}

// serverSettings is the environment the server runs with in mode m, listening on addr.
func serverSettings(c Config, m mode, addr string) map[string]string {
	s := map[string]string{
		"APP_ENV":            config.EnvProduction, // as deployed, and as PostGraphile runs (production mode)
		"HTTP_ADDR":          addr,
		"DATABASE_URL":       c.DatabaseURL,
		"DB_MAX_CONNS":       strconv.Itoa(int(c.DBMaxConns)),
		"JWT_SECRET":         benchJWTSecret,
		"ACCESS_TOKEN_TTL":   "24h",
		"RATE_LIMIT_ENABLED": "false",
		"LOG_LEVEL":          "warn",
		"GRAPHIQL":           "false",
		"CACHE_ENABLED":      strconv.FormatBool(m != modeUncached),
	}
	switch m {
	case modeCached:
		s["REDIS_URL"] = c.RedisURL
	case modeUncached:
		s["RESPONSE_CACHE_TTL"] = "0" // it needs Redis anyway; said explicitly, as the mode promises
	}
	return s
}

// buildApp assembles the real server in this process (setup, statement counts, profiles); obs is
// its metrics (zero: none).
func buildApp(c Config, m mode, pool *pgxpool.Pool, obs server.Observability) (*server.App, error) {
	settings := serverSettings(c, m, "127.0.0.1:0")
	cfg, err := config.Load(func(k string) string { return settings[k] })
	if err != nil {
		return nil, fmt.Errorf("server configuration: %w", err)
	}
	// The server's warnings and errors go to the benchmark's log: an INTERNAL answer names only a
	// request id, and the reason is in this log line.
	logTo := c.Log
	if logTo == nil {
		logTo = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelWarn}))
	app, err := server.Build(cfg, pool, logger, obs)
	if err != nil {
		return nil, fmt.Errorf("build server: %w", err)
	}
	return app, nil
}

// inProcess sends one GraphQL request straight to a handler (no network) and checks the answer.
func inProcess(h http.Handler, token string, body []byte) ([]byte, error) {
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := rec.Body.Bytes()
	return out, checkAnswer(rec.Code, out)
}

// gqlBody encodes a GraphQL request body.
func gqlBody(query string, vars map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		panic(fmt.Sprintf("bench: encode request: %v", err)) // strings, ints and maps only: cannot fail
	}
	return b
}

// prepareUsers signs in the bench users through the real login mutation (one at a time, on an
// in-process server, so argon2id's memory never shows in the measured server's RSS), samples their
// tasks and finds their deep-page cursors by paging through the API.
func prepareUsers(ctx context.Context, c Config, pool *pgxpool.Pool) ([]*benchUser, error) {
	app, err := buildApp(c, modeUncached, pool, server.Observability{})
	if err != nil {
		return nil, err
	}
	defer app.Close()

	n := c.benchUsers()
	users := make([]*benchUser, n)
	for i := range users {
		u := &benchUser{n: i + 1}
		users[i] = u
		if err := pool.QueryRow(ctx, `SELECT id FROM users WHERE email = $1`, benchEmail(u.n)).Scan(&u.id); err != nil {
			return nil, fmt.Errorf("find bench user %d: %w", u.n, err)
		}
		out, err := inProcess(app.Handler, "", gqlBody(loginMutation, map[string]any{
			"input": map[string]any{"email": benchEmail(u.n), "password": benchPassword},
		}))
		if err != nil {
			return nil, fmt.Errorf("sign in bench user %d: %w", u.n, err)
		}
		var login struct {
			Data struct{ Login struct{ AccessToken string } }
		}
		if err := json.Unmarshal(out, &login); err != nil || login.Data.Login.AccessToken == "" {
			return nil, fmt.Errorf("sign in bench user %d: no access token in %.200s", u.n, out)
		}
		u.token = login.Data.Login.AccessToken
		if err := pool.QueryRow(ctx, `SELECT id FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1`,
			u.id).Scan(&u.sessionID); err != nil {
			return nil, fmt.Errorf("session of bench user %d: %w", u.n, err)
		}
		rows, err := pool.Query(ctx, `SELECT id FROM tasks WHERE owner_id = $1 ORDER BY random() LIMIT $2`, u.id, taskSample)
		if err != nil {
			return nil, fmt.Errorf("sample tasks of bench user %d: %w", u.n, err)
		}
		for rows.Next() {
			var id uuid.UUID
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sample tasks of bench user %d: %w", u.n, err)
			}
			u.tasks = append(u.tasks, id)
			u.taskGIDs = append(u.taskGIDs, globalid.Encode(globalid.KindTask, id))
		}
		if err := rows.Err(); err != nil || len(u.tasks) == 0 {
			return nil, fmt.Errorf("sample tasks of bench user %d: %d found, err %v", u.n, len(u.tasks), err)
		}
		if err := pool.QueryRow(ctx, `SELECT created_at, id FROM tasks WHERE owner_id = $1
			ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT 1`, u.id, c.DeepOffset-1).Scan(&u.deepCreatedAt, &u.deepID); err != nil {
			return nil, fmt.Errorf("row %d of bench user %d: %w", c.DeepOffset, u.n, err)
		}
	}
	if err := findDeepCursors(ctx, app.Handler, users, c.DeepOffset); err != nil {
		return nil, err
	}
	for _, u := range users {
		u.pageBody = gqlBody(pageQuery, nil)
		u.deepBody = gqlBody(deepQuery, map[string]any{"after": u.deepCursor})
		for _, gid := range u.taskGIDs {
			u.taskBodies = append(u.taskBodies, gqlBody(taskQuery, map[string]any{"id": gid}))
		}
	}
	return users, nil
}

// findDeepCursors pages each user's task list forward, 100 at a time, to the cursor of row offset,
// and checks that it names the row the ceiling will use.
func findDeepCursors(ctx context.Context, h http.Handler, users []*benchUser, offset int) error {
	const workers = 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     = make(chan *benchUser)
	)
	for range workers {
		wg.Go(func() {
			for u := range next {
				if err := findDeepCursor(ctx, h, u, offset); err != nil {
					mu.Lock()
					firstErr = cmp.Or(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, u := range users {
		next <- u
	}
	close(next)
	wg.Wait()
	return firstErr
}

func findDeepCursor(ctx context.Context, h http.Handler, u *benchUser, offset int) error {
	var (
		after  *string
		seen   int
		lastID string
	)
	for seen < offset {
		if err := ctx.Err(); err != nil {
			return err
		}
		out, err := inProcess(h, u.token, gqlBody(cursorQuery, map[string]any{"first": min(100, offset-seen), "after": after}))
		if err != nil {
			return fmt.Errorf("page to the deep cursor of bench user %d: %w", u.n, err)
		}
		var page struct {
			Data struct {
				Tasks struct {
					Edges []struct {
						Cursor string
						Node   struct{ ID string }
					}
				}
			}
		}
		if err := json.Unmarshal(out, &page); err != nil {
			return fmt.Errorf("page to the deep cursor of bench user %d: %w", u.n, err)
		}
		edges := page.Data.Tasks.Edges
		if len(edges) == 0 {
			return fmt.Errorf("bench user %d has only %d tasks, want more than %d", u.n, seen, offset)
		}
		seen += len(edges)
		last := edges[len(edges)-1]
		after, lastID = &last.Cursor, last.Node.ID
	}
	if want := globalid.Encode(globalid.KindTask, u.deepID); lastID != want {
		return fmt.Errorf("bench user %d: row %d is %s through the API but %s in SQL", u.n, offset, lastID, want)
	}
	u.deepCursor = *after
	return nil
}
