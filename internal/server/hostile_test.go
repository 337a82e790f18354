package server_test

// Hostile requests: tampered tokens, other users' ids, forged cursors, documents above the limits,
// bad inputs, malformed transports, fragment bombs and a slow client. Each case pins the HTTP status and
// extensions.code, and that nothing was written.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// hostileCanary goes into hostile requests to prove that no answer quotes the request.
const hostileCanary = "HOSTILE-CANARY-91c4"

// hresp is one raw answer with its GraphQL parts decoded.
type hresp struct {
	Status     int
	Header     http.Header
	Body       []byte
	Data       json.RawMessage
	Errors     []testsupport.Error
	Extensions map[string]any
	Elapsed    time.Duration
}

// code is the first error's extensions.code ("" without errors).
func (r hresp) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Code()
}

// hasData reports whether the answer carries a non-null data member.
func (r hresp) hasData() bool {
	d := strings.TrimSpace(string(r.Data))
	return d != "" && d != "null"
}

// hdo sends one request with any headers (repeated values included) and decodes the answer.
func hdo(t testing.TB, env *testsupport.Env, method, path string, header http.Header, body []byte) hresp {
	t.Helper()
	return hdoURL(t, env.Server.Client(), env.Server.URL, method, path, header, body)
}

func hdoURL(t testing.TB, client *http.Client, base, method, path string, header http.Header, body []byte) hresp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := hresp{Status: res.StatusCode, Header: res.Header, Body: raw, Elapsed: time.Since(start)}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/") && len(raw) > 0 &&
		res.Header.Get("Content-Encoding") == "" {
		var doc struct {
			Data       json.RawMessage     `json:"data"`
			Errors     []testsupport.Error `json:"errors"`
			Extensions map[string]any      `json:"extensions"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s %s: response is not JSON (%d): %.300s", method, path, res.StatusCode, raw)
		}
		out.Data, out.Errors, out.Extensions = doc.Data, doc.Errors, doc.Extensions
	}
	return out
}

// gqlPost posts one GraphQL operation as token (anonymous when token is "").
func gqlPost(t testing.TB, env *testsupport.Env, token, query string, vars map[string]any) hresp {
	t.Helper()
	return hdo(t, env, http.MethodPost, "/graphql", bearer(token), gqlBody(t, query, vars, nil))
}

// gqlBody encodes a POST body; extensions may be nil.
func gqlBody(t testing.TB, query string, vars map[string]any, extensions map[string]any) []byte {
	t.Helper()
	m := map[string]any{}
	if query != "" {
		m["query"] = query
	}
	if vars != nil {
		m["variables"] = vars
	}
	if extensions != nil {
		m["extensions"] = extensions
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// bearer is a JSON request header set, with the token when there is one.
func bearer(token string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return h
}

// wantErr checks the status, that every error carries code, that no data came back and that the
// answer does not quote the request.
func wantErr(t testing.TB, r hresp, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %d, want %d (%.400s)", r.Status, status, r.Body)
	}
	if len(r.Errors) == 0 {
		t.Errorf("no errors, want %s (%.400s)", code, r.Body)
	}
	for _, e := range r.Errors {
		if e.Code() != code || e.Message == "" {
			t.Errorf("error %+v, want code %s with a message", e, code)
		}
		if len(e.Message) > 1000 {
			t.Errorf("error message of %d bytes", len(e.Message))
		}
	}
	if r.hasData() && !bytes.Contains(r.Data, []byte("null")) {
		t.Errorf("data = %s, want none", r.Data)
	}
	wantNoEcho(t, r)
}

func wantNoEcho(t testing.TB, r hresp) {
	t.Helper()
	if bytes.Contains(r.Body, []byte(hostileCanary)) {
		t.Errorf("the answer quotes the request: %.400s", r.Body)
	}
}

// rowCounts is the number of rows of the tables a hostile request must not write.
func rowCounts(t testing.TB, env *testsupport.Env) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"tasks", "users", "sessions"} {
		out[table] = env.CountRows(t, table)
	}
	return out
}

func wantRowsUnchanged(t testing.TB, env *testsupport.Env, before map[string]int) {
	t.Helper()
	after := rowCounts(t, env)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s rows: %d → %d, want no write", table, n, after[table])
		}
	}
}

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// jwtPayload decodes the (unverified) claims of a JWT.
func jwtPayload(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

const hostileCreateTask = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id title } } }`

func createVars(title string) map[string]any {
	return map[string]any{"input": map[string]any{"title": title}}
}

func TestHostileAuthTampering(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Victim")
	claims := jwtPayload(t, u.Token)
	sid, err := uuid.Parse(fmt.Sprint(claims["sid"]))
	if err != nil {
		t.Fatalf("token has no session id: %v", claims)
	}
	parts := strings.Split(u.Token, ".")
	issuer := func(secret string, now time.Time) *auth.TokenIssuer {
		iss, err := auth.NewTokenIssuer([]byte(secret), 15*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return iss.WithClock(func() time.Time { return now })
	}
	issue := func(iss *auth.TokenIssuer, role policy.Role) string {
		tok, _, err := iss.Issue(u.ID, role, sid)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	// Control: a token minted with the server's secret for the same session works, so each forgery
	// below fails for its one defect only.
	genuine := issue(issuer(env.Config.JWTSecret, time.Now()), policy.RoleUser)
	if r := gqlPost(t, env, genuine, `{ me { id } }`, nil); r.Status != http.StatusOK || len(r.Errors) != 0 {
		t.Fatalf("control token: %d %s", r.Status, r.Body)
	}

	adminClaims := jwtPayload(t, u.Token)
	adminClaims["role"] = "ADMIN"
	header := func(v ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for _, s := range v {
			h.Add("Authorization", s)
		}
		return h
	}
	tests := []struct {
		name   string
		header http.Header
	}{
		{"payload changed to role ADMIN", header("Bearer " + parts[0] + "." + b64json(t, adminClaims) + "." + parts[2])},
		{"signed with another secret", header("Bearer " + issue(issuer("another-secret-another-secret-0123456789", time.Now()), policy.RoleUser))},
		{"alg none", header("Bearer " + b64json(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".")},
		{"alg none with ADMIN", header("Bearer " + b64json(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64json(t, adminClaims) + ".")},
		{"alg HS512 header on an HS256 signature", header("Bearer " + b64json(t, map[string]any{"alg": "HS512", "typ": "JWT"}) + "." + parts[1] + "." + parts[2])},
		{"expired", header("Bearer " + issue(issuer(env.Config.JWTSecret, time.Now().Add(-2*time.Hour)), policy.RoleUser))},
		{"refresh token as access token", header("Bearer " + u.RefreshToken)},
		// An empty header and "Bearer" with no token are anonymous (TestSignedOutAuthLinkIsAnonymous).
		{"Basic scheme", header("Basic " + base64.StdEncoding.EncodeToString([]byte(u.Email+":"+u.Password)))},
		{"two Authorization headers", header("Bearer "+u.Token, "Bearer "+u.Token)},
		{"token with a canary appended", header("Bearer " + u.Token + hostileCanary)},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := hdo(t, env, http.MethodPost, "/graphql", tc.header, gqlBody(t, hostileCreateTask, createVars(hostileCanary), nil))
			wantErr(t, r, http.StatusUnauthorized, "UNAUTHENTICATED")
			if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
			}
			// A query is refused the same way: a bad token never falls back to anonymous.
			q := hdo(t, env, http.MethodPost, "/graphql", tc.header, gqlBody(t, `{ __typename }`, nil, nil))
			wantErr(t, q, http.StatusUnauthorized, "UNAUTHENTICATED")
		})
	}
	wantRowsUnchanged(t, env, before)
	if logs := env.Logs.String(); strings.Contains(logs, hostileCanary) || strings.Contains(logs, parts[2]) {
		t.Errorf("a presented token reached the logs")
	}
	// The victim's own token still works.
	if r := gqlPost(t, env, u.Token, `{ me { id role } }`, nil); r.Status != http.StatusOK || len(r.Errors) != 0 ||
		!strings.Contains(string(r.Data), `"USER"`) {
		t.Fatalf("victim after the attack: %d %s", r.Status, r.Body)
	}
}

func TestHostileOtherUsersIDs(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	victim := env.Register(t, "Victim")
	attacker := env.Register(t, "Mallory")
	desc := "private"
	task := env.CreateTask(t, victim.ID, db.NewTask{Title: "victim's secret", Description: &desc})
	taskID := globalid.Encode(globalid.KindTask, task.ID)
	missingID := globalid.Encode(globalid.KindTask, uuid.New())

	tests := []struct {
		name  string
		query string
	}{
		{"updateTask", `mutation($id: ID!) { updateTask(id: $id, input: {title: "pwned", status: DONE}) { task { id title } } }`},
		{"updateTask with expectedVersion", `mutation($id: ID!) { updateTask(id: $id, input: {title: "pwned", expectedVersion: 1}) { task { id } } }`},
		{"deleteTask", `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`},
		{"deleteTask with expectedVersion", `mutation($id: ID!) { deleteTask(id: $id, input: {expectedVersion: 1}) { deletedTaskId } }`},
		{"task", `query($id: ID!) { task(id: $id) { id title description } }`},
		{"node", `query($id: ID!) { node(id: $id) { id ... on Task { title description } } }`},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			foreign := gqlPost(t, env, attacker.Token, tc.query, map[string]any{"id": taskID})
			wantErr(t, foreign, http.StatusOK, "NOT_FOUND")
			if bytes.Contains(foreign.Body, []byte("secret")) || bytes.Contains(foreign.Body, []byte("private")) {
				t.Errorf("the answer discloses the task: %s", foreign.Body)
			}
			// Exactly like a task that does not exist.
			missing := gqlPost(t, env, attacker.Token, tc.query, map[string]any{"id": missingID})
			if missing.Status != foreign.Status || missing.code() != foreign.code() ||
				len(missing.Errors) != 1 || len(foreign.Errors) != 1 || missing.Errors[0].Message != foreign.Errors[0].Message {
				t.Errorf("another user's task answers %d %s, a missing one %d %s", foreign.Status, foreign.Body, missing.Status, missing.Body)
			}
		})
	}
	// nodes answers null with NOT_FOUND for the foreign id, like a missing one.
	r := gqlPost(t, env, attacker.Token, `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": []string{taskID, missingID}})
	if r.Status != http.StatusOK || len(r.Errors) != 2 || r.Errors[0].Code() != "NOT_FOUND" || r.Errors[1].Code() != "NOT_FOUND" ||
		!strings.Contains(string(r.Data), `[null,null]`) {
		t.Errorf("nodes with a foreign id: %d %s", r.Status, r.Body)
	}
	wantRowsUnchanged(t, env, before)

	var got struct {
		Task struct {
			Title, Status string
			Version       int
		}
	}
	res := victim.Do(t, `query($id: ID!) { task(id: $id) { title status version } }`, map[string]any{"id": taskID})
	res.Decode(t, &got)
	if got.Task.Title != "victim's secret" || got.Task.Status != "TODO" || got.Task.Version != 1 {
		t.Fatalf("victim's task after the attack: %+v", got.Task)
	}
}

func TestHostileForgedCursors(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	other := env.Register(t, "Bob")
	for i := range 3 {
		env.CreateTask(t, u.ID, db.NewTask{Title: fmt.Sprintf("mine %d", i)})
		env.CreateTask(t, other.ID, db.NewTask{Title: fmt.Sprintf("bobs-task-%d", i)})
	}
	const page = `query($after: String, $before: String, $first: Int, $last: Int, $order: TaskOrder) {
		tasks(first: $first, after: $after, last: $last, before: $before, orderBy: $order) {
			edges { cursor node { title } } } }`
	cursorOf := func(user *testsupport.User) string {
		var data struct {
			Tasks struct{ Edges []struct{ Cursor string } }
		}
		user.Do(t, page, map[string]any{"first": 1}).Decode(t, &data)
		if len(data.Tasks.Edges) != 1 {
			t.Fatalf("setup: %+v", data)
		}
		return data.Tasks.Edges[0].Cursor
	}
	mine, his := cursorOf(u), cursorOf(other)

	// Control: the genuine cursor pages.
	if r := gqlPost(t, env, u.Token, page, map[string]any{"first": 1, "after": mine}); r.Status != http.StatusOK || len(r.Errors) != 0 {
		t.Fatalf("genuine cursor: %d %s", r.Status, r.Body)
	}

	raw, err := base64.RawURLEncoding.DecodeString(mine)
	if err != nil {
		t.Fatalf("cursor is not base64url: %v", err)
	}
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/3] ^= 0x01
	// A re-signed-looking cursor: the payload with another id, the old signature.
	body, sig := raw[:len(raw)-16], raw[len(raw)-16:]
	var payload map[string]any
	if json.Unmarshal(body, &payload) == nil {
		payload["i"] = uuid.NewString()
	}
	swapped, _ := json.Marshal(payload)
	random := make([]byte, 64)
	_, _ = rand.Read(random)

	tests := []struct {
		name string
		vars map[string]any
	}{
		{"tampered byte", map[string]any{"first": 1, "after": base64.RawURLEncoding.EncodeToString(flipped)}},
		{"payload changed, signature kept", map[string]any{"first": 1, "after": base64.RawURLEncoding.EncodeToString(append(swapped, sig...))}},
		{"truncated", map[string]any{"first": 1, "after": mine[:len(mine)-4]}},
		{"another user's cursor", map[string]any{"first": 1, "after": his}},
		{"another user's cursor, backward", map[string]any{"last": 1, "before": his}},
		{"cursor of another order", map[string]any{"first": 1, "after": mine, "order": map[string]any{"field": "PRIORITY", "direction": "ASC"}}},
		{"random base64", map[string]any{"first": 1, "after": base64.RawURLEncoding.EncodeToString(random)}},
		{"random std base64", map[string]any{"first": 1, "after": base64.StdEncoding.EncodeToString(random)}},
		{"not base64", map[string]any{"first": 1, "after": "!!" + hostileCanary + "!!"}},
		{"huge", map[string]any{"first": 1, "after": strings.Repeat("A", 100_000)}},
		{"empty", map[string]any{"first": 1, "after": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := gqlPost(t, env, u.Token, page, tc.vars)
			wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
			if bytes.Contains(r.Body, []byte("bobs-task")) {
				t.Errorf("a forged cursor disclosed another user's tasks: %s", r.Body)
			}
		})
	}
}

// deepQuery nests connections under me until the document has the given depth ({ me { id } } has 2).
func deepQuery(depth int) string {
	chain := []string{"tasks(first: 1)", "edges", "node", "owner"}
	var b strings.Builder
	b.WriteString("{ me { ")
	for i := range depth - 2 {
		b.WriteString(chain[i%len(chain)] + " { ")
	}
	b.WriteString("__typename")
	b.WriteString(strings.Repeat(" }", depth-2))
	b.WriteString(" } }")
	return b.String()
}

func aliasQuery(n int) string {
	var b strings.Builder
	b.WriteString("{ me { ")
	for i := range n {
		fmt.Fprintf(&b, "a%d: id ", i)
	}
	b.WriteString("} }")
	return b.String()
}

func rootFieldsQuery(n int) string {
	var b strings.Builder
	b.WriteString("{ ")
	for i := range n {
		fmt.Fprintf(&b, "r%d: __typename ", i)
	}
	b.WriteString("}")
	return b.String()
}

func TestHostileLimits(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	env.CreateTask(t, u.ID, db.NewTask{Title: "one"})

	// Controls: each limit itself is allowed.
	for name, q := range map[string]string{
		"depth 12":       deepQuery(12),
		"30 aliases":     aliasQuery(30),
		"20 root fields": rootFieldsQuery(20),
		"first: 100":     `{ tasks(first: 100) { totalCount } }`,
	} {
		if r := gqlPost(t, env, u.Token, q, nil); r.Status != http.StatusOK || len(r.Errors) != 0 {
			t.Errorf("control %s: %d %.300s", name, r.Status, r.Body)
		}
	}

	hugeTitle := strings.Repeat("x", int(env.Config.MaxBodyBytes)+10)
	tests := []struct {
		name   string
		query  string
		vars   map[string]any
		status int
		code   string
		// message must appear in the error message (what limit was hit).
		message string
	}{
		{"first: 101", `{ tasks(first: 101) { edges { node { id } } } }`, nil, http.StatusOK, "BAD_USER_INPUT", "first"},
		{"last: 101 by variable", `query($n: Int) { tasks(last: $n) { edges { node { id } } } }`, map[string]any{"n": 101}, http.StatusOK, "BAD_USER_INPUT", "last"},
		{"first: 0", `{ tasks(first: 0) { totalCount } }`, nil, http.StatusOK, "BAD_USER_INPUT", "first"},
		{"first: -1 on a nested connection", `{ me { tasks(first: -1) { totalCount } } }`, nil, http.StatusOK, "BAD_USER_INPUT", "first"},
		{"31 aliases", aliasQuery(31), nil, http.StatusOK, "QUERY_TOO_COMPLEX", "aliases"},
		{"depth 13", deepQuery(13), nil, http.StatusOK, "QUERY_TOO_COMPLEX", "depth"},
		{"21 root fields", rootFieldsQuery(21), nil, http.StatusOK, "QUERY_TOO_COMPLEX", "root fields"},
		{"token bomb", "{ me { " + strings.Repeat("id ", 10_001) + "} }", nil, http.StatusOK, "QUERY_TOO_COMPLEX", "tokens"},
		{"token bomb of directives", "{ me" + strings.Repeat(" @include(if: true)", 2000) + " { id } } # " + hostileCanary, nil, http.StatusOK, "QUERY_TOO_COMPLEX", "tokens"},
		{"nested connections over QUERY_MAX_NODES", `{ tasks(first: 100) { edges { node { owner { tasks(first: 100) { edges { node { id } } } } } } } }`,
			nil, http.StatusOK, "QUERY_TOO_COMPLEX", "nodes"},
		{"nested connections by variables", `query($n: Int, $m: Int) { me { tasks(first: $n) { edges { node { owner { tasks(last: $m) { totalCount edges { node { title owner { name } } } } } } } } } }`,
			map[string]any{"n": 100, "m": 100}, http.StatusOK, "QUERY_TOO_COMPLEX", "nodes"},
		{"nodes with many ids and nested connections", `query($ids: [ID!]!) { nodes(ids: $ids) { ... on User { tasks(first: 100) { edges { node { id title } } } } } }`,
			map[string]any{"ids": repeatIDs(u.GlobalID, 100)}, http.StatusOK, "QUERY_TOO_COMPLEX", "nodes"},
		{"string literal over MAX_BODY_BYTES", `mutation { createTask(input: {title: "` + hugeTitle + `"}) { task { id } } }`, nil,
			http.StatusRequestEntityTooLarge, "BAD_USER_INPUT", "larger than"},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The session lookup is the only SQL a refused document may cost: measure it on a request
			// that runs no resolver, then compare.
			// Counted per request: background work on the same pool does not count.
			lookup := env.DB.Counter.CountFor(gqlPost(t, env, u.Token, `{ __typename }`, nil).Header.Get("X-Request-ID"))
			// (assignedToMe: an answer the response cache never keeps, so it always reads tasks.)
			if env.DB.Counter.CountFor(gqlPost(t, env, u.Token, `{ tasks(first: 1, filter: {assignedToMe: true}) { totalCount } }`, nil).Header.Get("X-Request-ID")) == 0 {
				t.Fatalf("no statement counted for a query that reads tasks: the per-request count sees nothing")
			}

			r := gqlPost(t, env, u.Token, tc.query, tc.vars)
			spent := env.DB.Counter.CountFor(r.Header.Get("X-Request-ID"))
			wantErr(t, r, tc.status, tc.code)
			if len(r.Errors) > 0 && !strings.Contains(r.Errors[0].Message, tc.message) {
				t.Errorf("message %q does not say what was exceeded (%q)", r.Errors[0].Message, tc.message)
			}
			if tc.code == "QUERY_TOO_COMPLEX" && spent > lookup {
				t.Errorf("refused document ran %d SQL statements, the session lookup alone takes %d", spent, lookup)
			}
			if r.Elapsed > time.Second {
				t.Errorf("refusal took %s", r.Elapsed)
			}
		})
	}
	wantRowsUnchanged(t, env, before)
	if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
		t.Errorf("refused documents were logged as server errors")
	}
}

func repeatIDs(id string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = id
	}
	return out
}

func TestHostileBadInputs(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	input := func(kv ...any) map[string]any {
		in := map[string]any{"title": "ok"}
		for i := 0; i < len(kv); i += 2 {
			in[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"input": in}
	}
	tests := []struct {
		name   string
		query  string
		vars   map[string]any
		opName string
		status int
		field  string // extensions.field, when the error names one
	}{
		{"NUL in title", hostileCreateTask, input("title", "a\x00b"+hostileCanary), "", http.StatusOK, "input.title"},
		{"control character in title", hostileCreateTask, input("title", "bell\a"), "", http.StatusOK, "input.title"},
		{"NUL in a literal title", `mutation { createTask(input: {title: "a\u0000b"}) { task { id } } }`, nil, "", http.StatusOK, "input.title"},
		{"NUL in description", hostileCreateTask, input("description", "x\x00"), "", http.StatusOK, "input.description"},
		{"NUL in a tag", hostileCreateTask, input("tags", []string{"ok", "b\x00d"}), "", http.StatusOK, "input.tags[1]"},
		{"10001-character description", hostileCreateTask, input("description", strings.Repeat("é", 10_001)), "", http.StatusOK, "input.description"},
		{"201-character title", hostileCreateTask, input("title", strings.Repeat("t", 201)), "", http.StatusOK, "input.title"},
		{"blank title", hostileCreateTask, input("title", " \t "), "", http.StatusOK, "input.title"},
		{"dueAt garbage", hostileCreateTask, input("dueAt", "next tuesday "+hostileCanary), "", http.StatusOK, "input.dueAt"},
		{"dueAt without a zone", hostileCreateTask, input("dueAt", "2026-11-29T09:00:00"), "", http.StatusOK, "input.dueAt"},
		{"dueAt out of range", hostileCreateTask, input("dueAt", "9999-12-31T23:59:59Z"), "", http.StatusOK, "input.dueAt"},
		{"dueAt a number", hostileCreateTask, input("dueAt", 1700000000), "", http.StatusOK, ""},
		{"unknown enum by variable", hostileCreateTask, input("status", "BLOCKED"), "", http.StatusOK, ""},
		{"unknown enum literal", `mutation { createTask(input: {title: "x", priority: CRITICAL}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"enum as a string literal", `mutation { createTask(input: {title: "x", status: "DONE"}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"title a number", hostileCreateTask, input("title", 5), "", http.StatusOK, ""},
		{"title a boolean", hostileCreateTask, input("title", true), "", http.StatusOK, ""},
		{"tag a number", hostileCreateTask, input("tags", []any{"ok", 7}), "", http.StatusOK, ""},
		{"enum in lower case", hostileCreateTask, input("priority", "urgent"), "", http.StatusOK, ""},
		{"enum in mixed case", hostileCreateTask, input("status", "Done"), "", http.StatusOK, ""},
		{"enum literal in lower case", `mutation { createTask(input: {title: "x", priority: urgent}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"enum in lower case in a filter", `query($f: TaskFilter) { tasks(filter: $f) { totalCount } }`, map[string]any{"f": map[string]any{"status": []string{"done"}}}, "", http.StatusOK, ""},
		{"enum in lower case in an order", `query($o: TaskOrder) { tasks(orderBy: $o) { totalCount } }`, map[string]any{"o": map[string]any{"field": "due_at", "direction": "ASC"}}, "", http.StatusOK, ""},
		{"enum value with markup", hostileCreateTask, input("status", "<b>"+hostileCanary+"</b>"), "", http.StatusOK, ""},
		{"unknown input field with markup", hostileCreateTask, input("<i>"+hostileCanary, 1), "", http.StatusOK, ""},
		{"string literal for an enum", `mutation { createTask(input: {title: "x", status: "` + hostileCanary + `"}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"list literal for a String", `mutation { createTask(input: {title: ["` + hostileCanary + `"]}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"huge number literal for a String", `mutation { createTask(input: {title: ` + strings.Repeat("9", 5000) + `}) { task { id } } }`, nil, "", http.StatusOK, ""},
		{"input of the wrong type", hostileCreateTask, map[string]any{"input": "title=" + hostileCanary}, "", http.StatusOK, ""},
		{"input a list", hostileCreateTask, map[string]any{"input": []any{map[string]any{"title": "x"}}}, "", http.StatusOK, ""},
		{"unknown input field", hostileCreateTask, input("ownerId", u.GlobalID), "", http.StatusOK, ""},
		{"tags not a list of strings", hostileCreateTask, input("tags", []any{1, true}), "", http.StatusOK, ""},
		{"missing input", hostileCreateTask, nil, "", http.StatusOK, ""},
		{"operationName that does not exist", `mutation A { createTask(input: {title: "a"}) { task { id } } } mutation B { createTask(input: {title: "b"}) { task { id } } }`,
			nil, "C" + hostileCanary, http.StatusOK, ""},
		{"operationName missing with two operations", `mutation A { createTask(input: {title: "a"}) { task { id } } } mutation B { createTask(input: {title: "b"}) { task { id } } }`,
			nil, "", http.StatusOK, ""},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]any{"query": tc.query}
			if tc.vars != nil {
				m["variables"] = tc.vars
			}
			if tc.opName != "" {
				m["operationName"] = tc.opName
			}
			body, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			r := hdo(t, env, http.MethodPost, "/graphql", bearer(u.Token), body)
			wantErr(t, r, tc.status, "BAD_USER_INPUT")
			if tc.field != "" && len(r.Errors) > 0 && r.Errors[0].Field() != tc.field {
				t.Errorf("extensions.field = %q, want %q (%s)", r.Errors[0].Field(), tc.field, r.Body)
			}
		})
	}
	// Variables that are not an object never reach gqlgen (whose own error would quote the body).
	for name, body := range map[string]string{
		"variables a list":   `{"query": "mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }", "variables": [{"input": {"title": "` + hostileCanary + `"}}]}`,
		"variables a string": `{"query": "mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }", "variables": "{\"input\": {\"title\": \"` + hostileCanary + `\"}}"}`,
		"variables a number": `{"query": "{ me { id } }", "variables": 1, "operationName": "` + hostileCanary + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantErr(t, hdo(t, env, http.MethodPost, "/graphql", bearer(u.Token), []byte(body)), http.StatusBadRequest, "BAD_USER_INPUT")
		})
	}
	wantRowsUnchanged(t, env, before)
	if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
		t.Errorf("bad inputs were logged as server errors:\n%s", env.Logs.String())
	}
}

func TestHostileTransport(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	valid := gqlBody(t, hostileCreateTask, createVars(hostileCanary), nil)

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	_ = mw.WriteField("operations", string(valid))
	_ = mw.WriteField("map", `{}`)
	_ = mw.Close()

	deepJSON := []byte(`{"query": "{ me { id } }", "variables": {"a": ` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}}`)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		status      int
	}{
		{"batched array", http.MethodPost, "application/json", []byte("[" + string(valid) + "," + string(valid) + "]"), http.StatusBadRequest},
		{"batched array after whitespace", http.MethodPost, "application/json", []byte("\n\t [" + string(valid) + "]"), http.StatusBadRequest},
		{"invalid UTF-8 in a variable", http.MethodPost, "application/json", bytes.Replace(valid, []byte(hostileCanary), []byte(hostileCanary+"\xc0\xaf"), 1), http.StatusBadRequest},
		{"UTF-8 byte order mark", http.MethodPost, "application/json", append([]byte("\xef\xbb\xbf"), valid...), http.StatusBadRequest},
		{"malformed JSON", http.MethodPost, "application/json", valid[:len(valid)-2], http.StatusBadRequest},
		{"JSON nested 100000 deep", http.MethodPost, "application/json", deepJSON, http.StatusBadRequest},
		{"text/plain", http.MethodPost, "text/plain;charset=UTF-8", valid, http.StatusUnsupportedMediaType},
		{"multipart/form-data", http.MethodPost, mw.FormDataContentType(), form.Bytes(), http.StatusUnsupportedMediaType},
		{"PUT", http.MethodPut, "application/json", valid, http.StatusMethodNotAllowed},
	}
	before := rowCounts(t, env)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + u.Token}, "Content-Type": {tc.contentType}}
			r := hdo(t, env, tc.method, "/graphql", h, tc.body)
			wantErr(t, r, tc.status, "BAD_USER_INPUT")
			if len(r.Errors) != 1 {
				t.Errorf("%d errors, want 1", len(r.Errors))
			}
			if r.Elapsed > time.Second {
				t.Errorf("refusal took %s", r.Elapsed)
			}
		})
	}
	wantRowsUnchanged(t, env, before)
	if strings.Contains(env.Logs.String(), hostileCanary) {
		t.Errorf("a refused request body reached the logs")
	}
}

func TestHostileFragments(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	var fanout strings.Builder
	fanout.WriteString("query { me { ...F0 } }\n")
	for i := range 25 {
		fmt.Fprintf(&fanout, "fragment F%d on User { ...F%d ...F%d }\n", i, i+1, i+1)
	}
	fanout.WriteString("fragment F25 on User { id name }\n")

	var fanoutFields strings.Builder
	fanoutFields.WriteString("query { me { ...G0 } }\n")
	for i := range 25 {
		fmt.Fprintf(&fanoutFields, "fragment G%d on User { a%d: id ...G%d b%d: name ...G%d }\n", i, i, i+1, i, i+1)
	}
	fanoutFields.WriteString("fragment G25 on User { id }\n")

	var chain strings.Builder
	chain.WriteString("query { me { ...C0 } }\n")
	for i := range 500 {
		fmt.Fprintf(&chain, "fragment C%d on User { tasks(first: 1) { edges { node { owner { ...C%d } } } } }\n", i, i+1)
	}
	chain.WriteString("fragment C500 on User { id }\n")

	var flat strings.Builder
	flat.WriteString("query { me { ...D0 } }\n")
	for i := range 2000 {
		fmt.Fprintf(&flat, "fragment D%d on User { ...D%d }\n", i, i+1)
	}
	flat.WriteString("fragment D2000 on User { id }\n")

	nested := "{ me { " + strings.Repeat("tasks { edges { node { owner { ", 125) + "id" + strings.Repeat(" } } } }", 125) + " } }"
	braces := "{ me " + strings.Repeat("{ ", 5000) + strings.Repeat("} ", 5000) + "}"

	tests := []struct {
		name  string
		query string
		codes []string // accepted codes
	}{
		{"fragment spreads itself", `query { tasks { edges { node { ...A } } } } fragment A on Task { id ...A }`, []string{"QUERY_TOO_COMPLEX"}},
		{"unused self-spreading fragment", `query { me { id } } fragment A on Task { ...A }`, []string{"QUERY_TOO_COMPLEX"}},
		{"A → B → A", `query { tasks { edges { node { ...A } } } } fragment A on Task { id ...B } fragment B on Task { title ...A }`, []string{"QUERY_TOO_COMPLEX"}},
		{"cycle through fields", `query { me { ...U } } fragment U on User { tasks { edges { node { owner { ...U } } } } }`, []string{"QUERY_TOO_COMPLEX"}},
		{"cycle through an inline fragment", `query { me { ...U } } fragment U on User { ... on User { ...V } } fragment V on User { ...U }`, []string{"QUERY_TOO_COMPLEX"}},
		{"cycle in a duplicate definition", `query { me { ...U } } fragment U on User { id } fragment U on User { ...U }`, []string{"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}},
		{"500-deep nested selection", nested, []string{"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}},
		{"5000 nested braces", braces, []string{"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}},
		{"exponential fan-out, 25 levels", fanout.String(), []string{"QUERY_TOO_COMPLEX"}},
		{"exponential fan-out with aliases, 25 levels", fanoutFields.String(), []string{"QUERY_TOO_COMPLEX"}},
		{"chain of 500 nesting fragments", chain.String(), []string{"QUERY_TOO_COMPLEX"}},
		{"chain of 2000 fragments", flat.String(), []string{"QUERY_TOO_COMPLEX", "BAD_USER_INPUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := gqlPost(t, env, u.Token, tc.query, nil)
			if r.Elapsed > time.Second {
				t.Errorf("refusal took %s, want < 1s", r.Elapsed)
			}
			ok := len(r.Errors) > 0
			for _, e := range r.Errors {
				found := false
				for _, c := range tc.codes {
					found = found || e.Code() == c
				}
				ok = ok && found
			}
			if !ok {
				t.Errorf("errors %.400s, want one of %v", r.Body, tc.codes)
			}
			// GraphQL over HTTP: request errors of a well-formed request answer 200 as application/json.
			if r.Status != http.StatusOK {
				t.Errorf("status = %d, want %d", r.Status, http.StatusOK)
			}
			if r.hasData() {
				t.Errorf("data = %s, want none", r.Data)
			}
			// The same process still serves.
			var me struct{ Me struct{ ID string } }
			u.Do(t, `{ me { id } }`, nil).Decode(t, &me)
			if me.Me.ID != u.GlobalID {
				t.Fatalf("me after %s = %+v", tc.name, me)
			}
		})
	}
	if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
		t.Errorf("fragment bombs were logged as server errors")
	}
}

// TestHostileSlowClient dribbles request headers one byte at a time. testsupport serves through
// httptest, which applies none of the configured timeouts, so this runs the real server.Run.
func TestHostileSlowClient(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: trickles bodies past timeouts")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	tests := []struct {
		name        string
		readTimeout string
		// the server must close the connection within [min, max] of the first byte.
		min, max time.Duration
	}{
		{"default read timeout: ReadHeaderTimeout applies", "10s", 4500 * time.Millisecond, 6500 * time.Millisecond},
		{"read timeout below ReadHeaderTimeout", "2s", 1500 * time.Millisecond, 3500 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(func(k string) string {
				return map[string]string{
					"HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": env.Config.JWTSecret, "SHUTDOWN_TIMEOUT": "2s",
					"HTTP_READ_TIMEOUT": tc.readTimeout,
				}[k]
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan net.Addr, 1)
			done := make(chan error, 1)
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			go func() { done <- server.Run(ctx, cfg, env.App.Handler, logger, ready) }()
			defer func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("Run: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Errorf("Run did not return after cancel")
				}
			}()
			var addr net.Addr
			select {
			case addr = <-ready:
			case err := <-done:
				t.Fatalf("Run: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("server did not start")
			}

			conn, err := net.DialTimeout("tcp", addr.String(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			closed := make(chan time.Duration, 1)
			var got bytes.Buffer
			start := time.Now()
			go func() {
				_, _ = io.Copy(&got, conn) // returns when the server closes the connection
				closed <- time.Since(start)
			}()
			request := "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: " +
				strings.Repeat("p", 200) + "\r\n\r\n"
			stop := make(chan struct{})
			go func() {
				for i := 0; i < len(request); i++ {
					if _, err := conn.Write([]byte{request[i]}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
				}
			}()
			defer close(stop)
			select {
			case d := <-closed:
				if d < tc.min || d > tc.max {
					t.Errorf("server closed the slow connection after %s, want between %s and %s", d, tc.min, tc.max)
				}
			case <-time.After(tc.max + time.Second):
				t.Fatalf("server kept a slow client's connection for over %s", tc.max+time.Second)
			}
			if bytes.Contains(got.Bytes(), []byte("200 OK")) {
				t.Errorf("a request whose headers never finished was served: %q", got.String())
			}

			// The server still serves others.
			client := &http.Client{Timeout: 5 * time.Second}
			res, err := client.Get("http://" + addr.String() + "/healthz")
			if err != nil {
				t.Fatalf("healthz after the slow client: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("healthz after the slow client = %d", res.StatusCode)
			}
		})
	}
}
