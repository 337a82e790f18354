package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/schemaversion"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// canary is put in request bodies to prove that error answers never quote the request.
const canary = "ECHO-CANARY-7f3a"

type result struct {
	Status int
	Header http.Header
	Body   []byte
	Data   json.RawMessage
	Errors []testsupport.Error
}

// send makes one request with arbitrary headers and keeps the raw body.
func send(t *testing.T, env *testsupport.Env, method, path string, header map[string]string, body []byte) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, env.Server.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := result{Status: res.StatusCode, Header: res.Header, Body: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(raw) > 0 {
		var doc struct {
			Data   json.RawMessage     `json:"data"`
			Errors []testsupport.Error `json:"errors"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("response is not JSON (%d): %s", res.StatusCode, raw)
		}
		out.Data, out.Errors = doc.Data, doc.Errors
	}
	return out
}

// wantRefused checks a request refused with status and one BAD_USER_INPUT error.
func wantRefused(t *testing.T, got result, status int) {
	t.Helper()
	if got.Status != status {
		t.Errorf("status = %d, want %d (%s)", got.Status, status, got.Body)
	}
	if len(got.Errors) != 1 || got.Errors[0].Code() != "BAD_USER_INPUT" || got.Errors[0].Message == "" {
		t.Errorf("errors = %+v, want one BAD_USER_INPUT with a message (%s)", got.Errors, got.Body)
	}
	if !strings.HasPrefix(got.Header.Get("Content-Type"), "application/json") {
		t.Errorf("Content-Type = %q, want application/json", got.Header.Get("Content-Type"))
	}
	if bytes.Contains(got.Body, []byte(canary)) {
		t.Errorf("response echoes the request: %s", got.Body)
	}
}

func gqlGET(query string, extra url.Values) string {
	v := url.Values{"query": {query}}
	for k, vs := range extra {
		v[k] = vs
	}
	return "/graphql?" + v.Encode()
}

const createTaskDoc = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id } } }`

func TestGETRunsQueries(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	res := u.Raw(t, http.MethodGet, gqlGET(`{ me { id name } }`, nil), "", nil)
	var data struct{ Me struct{ ID, Name string } }
	res.Decode(t, &data)
	if res.Status != http.StatusOK || data.Me.ID != u.GlobalID || data.Me.Name != "Ada" {
		t.Fatalf("GET query = %d %+v, want 200 and the viewer", res.Status, data)
	}

	// Variables and an operationName selecting a query in a multi-operation document work too.
	doc := `query Q($first: Int) { tasks(first: $first) { totalCount } } mutation M { logout { ok } }`
	res = u.Raw(t, http.MethodGet, gqlGET(doc, url.Values{"operationName": {"Q"}, "variables": {`{"first": 5}`}}), "", nil)
	var tasks struct{ Tasks struct{ TotalCount int } }
	res.Decode(t, &tasks)
	if res.Status != http.StatusOK {
		t.Fatalf("GET of query Q = %d", res.Status)
	}
	// The mutation in that document did not run: the token still works.
	u.Do(t, `{ me { id } }`, nil).Decode(t, &data)
}

func TestGETRefusesMutations(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	vars := `{"input": {"title": "` + canary + `"}}`

	tests := []struct {
		name  string
		query string
		extra url.Values
	}{
		{"mutation with variables", createTaskDoc, url.Values{"variables": {vars}}},
		{"anonymous mutation", `mutation { createTask(input: {title: "` + canary + `"}) { task { id } } }`, nil},
		{"mutation after a comment", "# hello\n  mutation { createTask(input: {title: \"x\"}) { task { id } } }", nil},
		{"operationName selects the mutation", `query Q { me { id } } mutation M { createTask(input: {title: "x"}) { task { id } } }`,
			url.Values{"operationName": {"M"}}},
		{"operationName selects the mutation listed first", `mutation M { createTask(input: {title: "x"}) { task { id } } } query Q { me { id } }`,
			url.Values{"operationName": {"M"}}},
		{"no operationName with a mutation in the document", `query Q { me { id } } mutation M { createTask(input: {title: "x"}) { task { id } } }`, nil},
		{"logout", `mutation { logout { ok } }`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Raw(t, http.MethodGet, gqlGET(tc.query, tc.extra), "", nil)
			if res.Status != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405 (%+v)", res.Status, res.Errors)
			}
			if len(res.Errors) != 1 || res.Errors[0].Code() != "BAD_USER_INPUT" {
				t.Fatalf("errors = %+v, want one BAD_USER_INPUT", res.Errors)
			}
			if strings.Contains(res.Errors[0].Message, canary) {
				t.Errorf("message echoes the request: %q", res.Errors[0].Message)
			}
			if allow := res.Header.Get("Allow"); !strings.Contains(allow, "POST") {
				t.Errorf("Allow = %q, want POST", allow)
			}
		})
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Fatalf("tasks rows = %d: a mutation sent with GET ran", n)
	}
	// The session survived the refused GET logout.
	var data struct{ Me struct{ ID string } }
	u.Do(t, `{ me { id } }`, nil).Decode(t, &data)

	// The same mutation over POST works (the refusal is about the method only).
	u.Do(t, createTaskDoc, map[string]any{"input": map[string]any{"title": "posted"}}).Decode(t, &struct{}{})
	if n := env.CountRows(t, "tasks"); n != 1 {
		t.Fatalf("tasks rows after POST = %d, want 1", n)
	}
}

func TestGETMalformedParameters(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	for name, path := range map[string]string{
		"variables not JSON":      gqlGET(`{ __typename }`, url.Values{"variables": {"not-json-" + canary}}),
		"variables not an object": gqlGET(`{ __typename }`, url.Values{"variables": {`["` + canary + `"]`}}),
		"extensions not JSON":     gqlGET(`{ __typename }`, url.Values{"extensions": {"{" + canary}}),
		"bad URL escape":          "/graphql?query=%7B__typename%7D&x=%zz" + canary,
	} {
		t.Run(name, func(t *testing.T) {
			wantRefused(t, send(t, env, http.MethodGet, path, nil, nil), http.StatusBadRequest)
		})
	}
	// null and {} variables are fine.
	for _, v := range []string{"null", "{}"} {
		res := send(t, env, http.MethodGet, gqlGET(`{ __typename }`, url.Values{"variables": {v}}), nil, nil)
		if res.Status != http.StatusOK || len(res.Errors) != 0 {
			t.Errorf("variables=%s: %d %s", v, res.Status, res.Body)
		}
	}
}

func TestPOSTGuards(t *testing.T) {
	t.Parallel()
	const maxBody = 2048
	env := testsupport.NewEnv(t, map[string]string{"MAX_BODY_BYTES": "2048"})
	u := env.Register(t, "Ada")
	auth := "Bearer " + u.Token

	// padded returns a valid createTask request body of exactly n bytes.
	padded := func(n int) []byte {
		build := func(pad int) []byte {
			b, _ := json.Marshal(map[string]any{
				"query":     createTaskDoc,
				"variables": map[string]any{"input": map[string]any{"title": "padded", "description": canary + strings.Repeat("x", pad)}},
			})
			return b
		}
		base := len(build(0))
		if n < base {
			t.Fatalf("setup: %d < %d", n, base)
		}
		b := build(n - base)
		if len(b) != n {
			t.Fatalf("setup: body is %d bytes, want %d", len(b), n)
		}
		return b
	}
	valid, _ := json.Marshal(map[string]any{"query": createTaskDoc, "variables": map[string]any{"input": map[string]any{"title": canary}}})

	tests := []struct {
		name        string
		method      string
		contentType string
		body        []byte
		status      int
	}{
		{"text/plain", http.MethodPost, "text/plain", valid, http.StatusUnsupportedMediaType},
		{"no content type", http.MethodPost, "", valid, http.StatusUnsupportedMediaType},
		{"form", http.MethodPost, "application/x-www-form-urlencoded", []byte("query=" + canary), http.StatusUnsupportedMediaType},
		{"application/graphql", http.MethodPost, "application/graphql", []byte(`mutation { logout { ok } } # ` + canary), http.StatusUnsupportedMediaType},
		{"malformed content type", http.MethodPost, "application/json; =", valid, http.StatusUnsupportedMediaType},
		{"invalid JSON", http.MethodPost, "application/json", []byte(`{"query": "{ me { id } }", "` + canary), http.StatusBadRequest},
		{"trailing garbage", http.MethodPost, "application/json", append(append([]byte{}, valid...), []byte(" "+canary)...), http.StatusBadRequest},
		{"empty body", http.MethodPost, "application/json", nil, http.StatusBadRequest},
		{"non-UTF-8 bytes", http.MethodPost, "application/json", []byte("{\"query\": \"{ me { id } } # " + canary + " \xff\xfe\"}"), http.StatusBadRequest},
		{"Latin-1 body", http.MethodPost, "application/json; charset=iso-8859-1", []byte("{\"query\": \"# caf\xe9 " + canary + "\"}"), http.StatusBadRequest},
		{"batched array", http.MethodPost, "application/json", []byte(`[` + string(valid) + `,` + string(valid) + `]`), http.StatusBadRequest},
		{"JSON string", http.MethodPost, "application/json", []byte(`"` + canary + `"`), http.StatusBadRequest},
		{"query is a number", http.MethodPost, "application/json", []byte(`{"query": 5, "operationName": "` + canary + `"}`), http.StatusBadRequest},
		{"variables not an object", http.MethodPost, "application/json", []byte(`{"query": "{ __typename }", "variables": "` + canary + `"}`), http.StatusBadRequest},
		{"extensions not an object", http.MethodPost, "application/json", []byte(`{"query": "{ __typename }", "extensions": ["` + canary + `"]}`), http.StatusBadRequest},
		{"one byte over the limit", http.MethodPost, "application/json", padded(maxBody + 1), http.StatusRequestEntityTooLarge},
		{"far over the limit", http.MethodPost, "application/json", padded(10 * maxBody), http.StatusRequestEntityTooLarge},
		{"PUT", http.MethodPut, "application/json", valid, http.StatusMethodNotAllowed},
		{"DELETE", http.MethodDelete, "application/json", valid, http.StatusMethodNotAllowed},
		{"PATCH", http.MethodPatch, "application/json", valid, http.StatusMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			header := map[string]string{"Authorization": auth}
			if tc.contentType != "" {
				header["Content-Type"] = tc.contentType
			}
			got := send(t, env, tc.method, "/graphql", header, tc.body)
			wantRefused(t, got, tc.status)
			if tc.status == http.StatusMethodNotAllowed && got.Header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Errorf("tasks rows = %d after refused requests, want 0", n)
	}
	if logs := env.Logs.String(); strings.Contains(logs, canary) {
		t.Errorf("a refused request body reached the logs")
	}
	if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
		t.Errorf("refused requests were logged as server errors:\n%s", env.Logs.String())
	}

	// Control: a body of exactly the limit, and a JSON content type with parameters, are accepted.
	for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
		got := send(t, env, http.MethodPost, "/graphql", map[string]string{"Authorization": auth, "Content-Type": ct}, padded(maxBody))
		if got.Status != http.StatusOK || len(got.Errors) != 0 {
			t.Fatalf("%s body of exactly %d bytes: %d %s", ct, maxBody, got.Status, got.Body)
		}
	}
	if n := env.CountRows(t, "tasks"); n != 2 {
		t.Errorf("tasks rows = %d, want 2", n)
	}
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func TestRequestID(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	query := []byte(`{"query": "{ __typename }"}`)
	jsonCT := map[string]string{"Content-Type": "application/json"}

	sane := []string{"abc-123", "req_1.2:3", "A", strings.Repeat("a", 64), "5f0c2f4e-8a4b-4c55-9d8e-6a4f4c1f9b2a"}
	for _, id := range sane {
		got := send(t, env, http.MethodPost, "/graphql", map[string]string{"Content-Type": "application/json", "X-Request-ID": id}, query)
		if got.Header.Get("X-Request-ID") != id {
			t.Errorf("sane id %q came back as %q", id, got.Header.Get("X-Request-ID"))
		}
	}
	insane := []string{"has space", strings.Repeat("a", 65), strings.Repeat("b", 200), "semi;colon", "new\tline", "ünï", "<script>", "a/b"}
	for _, id := range insane {
		got := send(t, env, http.MethodPost, "/graphql", map[string]string{"Content-Type": "application/json", "X-Request-ID": id}, query)
		if echoed := got.Header.Get("X-Request-ID"); echoed == id || !uuidPattern.MatchString(echoed) {
			t.Errorf("insane id %q answered with %q, want a generated UUID", id, echoed)
		}
	}

	// Every response has one, whatever the path, method or outcome; generated ids differ.
	seen := map[string]bool{}
	for _, r := range []struct {
		method, path string
		header       map[string]string
		body         []byte
	}{
		{http.MethodPost, "/graphql", jsonCT, query},
		{http.MethodPost, "/graphql", jsonCT, query},
		{http.MethodPost, "/graphql", jsonCT, []byte("{")},
		{http.MethodPost, "/graphql", nil, query},
		{http.MethodPut, "/graphql", jsonCT, query},
		{http.MethodGet, "/graphql?query=%7B__typename%7D", nil, nil},
		{http.MethodGet, "/healthz", nil, nil},
		{http.MethodGet, "/readyz", nil, nil},
		{http.MethodGet, "/", nil, nil},
		{http.MethodGet, "/no-such-page", nil, nil},
		{http.MethodOptions, "/graphql", map[string]string{"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"}, nil},
	} {
		got := send(t, env, r.method, r.path, r.header, r.body)
		id := got.Header.Get("X-Request-ID")
		if !uuidPattern.MatchString(id) {
			t.Errorf("%s %s (%d): X-Request-ID = %q, want a generated UUID", r.method, r.path, got.Status, id)
		}
		if seen[id] {
			t.Errorf("%s %s: request id %q reused", r.method, r.path, id)
		}
		seen[id] = true
	}

	// The id is the one in the server's log lines.
	send(t, env, http.MethodPost, "/graphql", map[string]string{"Content-Type": "application/json", "X-Request-ID": "trace-me-42"}, query)
	if !strings.Contains(env.Logs.String(), `"request_id":"trace-me-42"`) {
		t.Errorf("access log does not carry the request id")
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	preflight := func(env *testsupport.Env, origin string) result {
		return send(t, env, http.MethodOptions, "/graphql", map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization, content-type",
		}, nil)
	}
	post := func(env *testsupport.Env, origin string) result {
		return send(t, env, http.MethodPost, "/graphql", map[string]string{"Origin": origin, "Content-Type": "application/json"},
			[]byte(`{"query": "{ __typename }"}`))
	}
	allowed := func(t *testing.T, env *testsupport.Env, origin string) {
		t.Helper()
		p := preflight(env, origin)
		if p.Status >= 300 {
			t.Errorf("preflight from %s: status %d", origin, p.Status)
		}
		if got := p.Header.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("preflight from %s: Allow-Origin = %q", origin, got)
		}
		if h := strings.ToLower(p.Header.Get("Access-Control-Allow-Headers")); !strings.Contains(h, "authorization") || !strings.Contains(h, "content-type") {
			t.Errorf("preflight from %s: Allow-Headers = %q, want Authorization and Content-Type", origin, h)
		}
		if m := p.Header.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") {
			t.Errorf("preflight from %s: Allow-Methods = %q", origin, m)
		}
		r := post(env, origin)
		if got := r.Header.Get("Access-Control-Allow-Origin"); got != origin || r.Status != http.StatusOK {
			t.Errorf("POST from %s: %d Allow-Origin = %q", origin, r.Status, got)
		}
		if exp := strings.ToLower(r.Header.Get("Access-Control-Expose-Headers")); !strings.Contains(exp, "x-request-id") {
			t.Errorf("POST from %s: Expose-Headers = %q, want X-Request-ID", origin, exp)
		}
	}
	refused := func(t *testing.T, env *testsupport.Env, origin string) {
		t.Helper()
		for name, r := range map[string]result{"preflight": preflight(env, origin), "POST": post(env, origin)} {
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s from %s: Allow-Origin = %q, want none", name, origin, got)
			}
			if got := r.Header.Get("Access-Control-Allow-Headers"); got != "" {
				t.Errorf("%s from %s: Allow-Headers = %q, want none", name, origin, got)
			}
		}
	}

	t.Run("development defaults", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, nil)
		allowed(t, env, "http://localhost:5173")
		allowed(t, env, "http://localhost:3000")
		refused(t, env, "http://evil.example")
		refused(t, env, "http://localhost:5174")
		refused(t, env, "null")
	})
	t.Run("configured origin", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"CORS_ALLOWED_ORIGINS": "https://app.example"})
		allowed(t, env, "https://app.example")
		refused(t, env, "http://localhost:5173")
		refused(t, env, "http://app.example")
		refused(t, env, "https://app.example.evil.example")
		refused(t, env, "http://evil.example")
	})
}

func TestHealthEndpoints(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	check := func(path string, status int, want map[string]string) {
		t.Helper()
		got := send(t, env, http.MethodGet, path, nil, nil)
		var raw struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal(got.Body, &raw); err != nil {
			t.Fatalf("%s: not JSON: %s", path, got.Body)
		}
		body := map[string]string{"status": raw.Status}
		for k, v := range raw.Checks {
			body[k] = v
		}
		if got.Status != status {
			t.Errorf("%s: status = %d, want %d", path, got.Status, status)
		}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("%s: %s = %q, want %q (%s)", path, k, body[k], v, got.Body)
			}
		}
	}
	check("/healthz", http.StatusOK, map[string]string{"status": "ok"})
	check("/readyz", http.StatusOK, map[string]string{"status": "ready", "database": "ok"})
	if got := send(t, env, http.MethodPost, "/healthz", nil, nil); got.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", got.Status)
	}

	// With the database gone, the process is alive but not ready.
	env.DB.Pool.Close()
	check("/healthz", http.StatusOK, map[string]string{"status": "ok"})
	check("/readyz", http.StatusServiceUnavailable, map[string]string{"database": "unreachable"})
}

func TestGraphiQL(t *testing.T) {
	t.Parallel()
	t.Run("development", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, nil)
		got := send(t, env, http.MethodGet, "/", nil, nil)
		if got.Status != http.StatusOK || !strings.HasPrefix(got.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(strings.ToLower(string(got.Body)), "graphiql") {
			t.Errorf("GET / = %d %q, want the GraphiQL page", got.Status, got.Header.Get("Content-Type"))
		}
		if got := send(t, env, http.MethodGet, "/elsewhere", nil, nil); got.Status != http.StatusNotFound {
			t.Errorf("GET /elsewhere = %d, want 404", got.Status)
		}
	})
	t.Run("production", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, productionOverrides())
		if got := send(t, env, http.MethodGet, "/", nil, nil); got.Status != http.StatusNotFound {
			t.Errorf("GET / in production = %d, want 404", got.Status)
		}
	})
}

func productionOverrides() map[string]string {
	return map[string]string{"APP_ENV": "production", "JWT_SECRET": "production-secret-0123456789-abcdefghij"}
}

func TestSchemaDisclosure(t *testing.T) {
	t.Parallel()
	introspection := []string{
		`{ __schema { types { name } } }`,
		`{ __type(name: "Task") { name fields { name } } }`,
		`query { ...F } fragment F on Query { __schema { queryType { name } } }`,
		`{ ... on Query { __type(name: "User") { name } } }`,
		`{ __typename s: __schema { types { name } } }`,
	}
	const misspelled = `{ mee { id } }`

	t.Run("production", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, productionOverrides())
		u := env.Register(t, "Ada")
		for _, q := range introspection {
			res := u.Do(t, q, nil)
			if len(res.Errors) != 1 || res.Errors[0].Code() != "BAD_USER_INPUT" {
				t.Errorf("%s: errors = %+v, want one BAD_USER_INPUT", q, res.Errors)
			}
			if d := string(res.Data); d != "" && d != "null" {
				t.Errorf("%s: data = %s, want none", q, d)
			}
		}
		// __typename is not introspection of the schema and keeps working.
		var data struct {
			Typename string `json:"__typename"`
		}
		u.Do(t, `{ __typename }`, nil).Decode(t, &data)
		if data.Typename != "Query" {
			t.Errorf("__typename = %q", data.Typename)
		}
		res := u.Do(t, misspelled, nil)
		if len(res.Errors) != 1 || res.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Fatalf("misspelled field: %+v", res.Errors)
		}
		if msg := res.Errors[0].Message; strings.Contains(strings.ToLower(msg), "did you mean") || strings.Contains(msg, `"me"`) {
			t.Errorf("production error suggests a field: %q", msg)
		}
		if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
			t.Errorf("refused introspection was logged as a server error:\n%s", env.Logs.String())
		}
	})
	t.Run("development", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, nil)
		var data struct {
			Schema struct{ Types []struct{ Name string } } `json:"__schema"`
		}
		env.Anonymous().Do(t, introspection[0], nil).Decode(t, &data)
		names := map[string]bool{}
		for _, ty := range data.Schema.Types {
			names[ty.Name] = true
		}
		if !names["Task"] || !names["ErrorCode"] {
			t.Errorf("introspection types = %v, want Task and ErrorCode among them", names)
		}
		res := env.Anonymous().Do(t, misspelled, nil)
		if len(res.Errors) != 1 || res.Errors[0].Code() != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, `Did you mean "me"`) {
			t.Errorf("misspelled field in development: %+v, want a suggestion of \"me\"", res.Errors)
		}
	})
}

func TestDocumentErrorsAreBadUserInput(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	tests := []struct {
		name, query string
		vars        map[string]any
	}{
		{"syntax error", `{ me { id }`, nil},
		{"stray token", `{ me { id } } }`, nil},
		{"unknown field", `{ me { id nope } }`, nil},
		{"unknown argument", `{ me(id: 1) { id } }`, nil},
		{"missing selection", `{ me }`, nil},
		{"empty document", ``, nil},
		{"unknown type in variable", `query($x: Nope) { me { id } }`, map[string]any{"x": 1}},
		{"wrong variable type", `query($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": "ten"}},
		{"missing required variable", `query($id: ID!) { task(id: $id) { id } }`, nil},
		{"subscription", `subscription { me { id } }`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Do(t, tc.query, tc.vars)
			if len(res.Errors) == 0 {
				t.Fatalf("no errors (status %d, data %s)", res.Status, res.Data)
			}
			for _, e := range res.Errors {
				if e.Code() != "BAD_USER_INPUT" || e.Message == "" {
					t.Errorf("error %+v, want BAD_USER_INPUT with a message", e)
				}
			}
			if res.Status >= 500 {
				t.Errorf("status = %d for a client mistake", res.Status)
			}
		})
	}
	if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
		t.Errorf("document errors were logged as server errors:\n%s", env.Logs.String())
	}
}

func TestAPIVersionAndVersionedPath(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	c := env.Anonymous()
	for _, path := range []string{"/graphql", "/api/v1/graphql"} {
		res := c.Raw(t, http.MethodPost, path, "application/json", []byte(`{"query":"{ apiVersion }"}`))
		var data struct{ APIVersion string }
		res.Decode(t, &data)
		if res.Status != http.StatusOK || data.APIVersion != schemaversion.Version {
			t.Fatalf("%s: status %d, apiVersion %q; want 200 and %q", path, res.Status, data.APIVersion, schemaversion.Version)
		}
	}
	// Errors carry the version too, so a client can report which API refused it.
	raw := rawPost(t, env, `{"query":"{ nope }"}`)
	if !strings.Contains(raw, `"apiVersion":"`+schemaversion.Version+`"`) {
		t.Fatalf("error response lacks extensions.apiVersion: %s", raw)
	}
}

func rawPost(t *testing.T, env *testsupport.Env, body string) string {
	t.Helper()
	res, err := env.Server.Client().Post(env.Server.URL+"/graphql", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}
