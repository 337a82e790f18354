package server_test

// What real clients see over HTTP: anonymous requests from signed-out auth links, error answers in
// the media type the client negotiated (GraphQL over HTTP), SSE clients that get their refusals as
// events, and oversized bodies that get a readable 413 instead of a reset connection.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// Accept headers as real clients send them.
const (
	acceptApollo       = "application/graphql-response+json,application/json;q=0.9"
	acceptApolloDefer  = "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json;q=0.9"
	acceptURQL         = "application/graphql-response+json, application/graphql+json, application/json, text/event-stream, multipart/mixed"
	acceptGraphQLSSE   = "text/event-stream"
	mediaGraphQLJSON   = "application/graphql-response+json"
	mediaJSON          = "application/json"
	mediaEventStream   = "text/event-stream"
	registerByVariable = `mutation($input: RegisterInput!) { register(input: $input) { accessToken user { name } } }`
)

func headers(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func registerVars(name string) map[string]any {
	return map[string]any{"input": map[string]any{
		"name": name, "email": strings.ToLower(name) + fmt.Sprintf("-%d@example.com", time.Now().UnixNano()),
		"password": "correct horse battery"}}
}

// TestSignedOutAuthLinkIsAnonymous: Apollo's documented auth link sends `authorization: ""` while
// signed out, others send "Bearer " with nothing after it; sign-up must work with either.
func TestSignedOutAuthLinkIsAnonymous(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	for _, authz := range []string{"", "Bearer", "Bearer "} {
		t.Run(fmt.Sprintf("%q", authz), func(t *testing.T) {
			r := hdo(t, env, http.MethodPost, "/graphql",
				headers("Content-Type", mediaJSON, "Accept", acceptApollo, "Authorization", authz),
				gqlBody(t, registerByVariable, registerVars("Ada"), nil))
			if r.Status != http.StatusOK || len(r.Errors) != 0 || !strings.Contains(string(r.Data), `"name":"Ada"`) {
				t.Fatalf("register with Authorization %q: %d %s", authz, r.Status, r.Body)
			}
		})
	}
}

// hasKey reports whether the JSON object body has a top-level member name.
func hasKey(t testing.TB, body []byte, name string) bool {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON object: %.300s", body)
	}
	_, ok := m[name]
	return ok
}

// wantRequestError checks an answer to a request that failed before execution: the status, the
// negotiated media type, a coded error and no data member (GraphQL spec: "If an error was raised
// before execution begins, the data entry should not be present").
func wantRequestError(t testing.TB, r hresp, status int, mediaType, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status = %d, want %d (%.300s)", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, mediaType) {
		t.Errorf("Content-Type = %q, want %s", ct, mediaType)
	}
	if len(r.Errors) == 0 || r.Errors[0].Code() != code {
		t.Errorf("errors = %+v, want code %s (%.300s)", r.Errors, code, r.Body)
	}
	if len(r.Body) > 0 && hasKey(t, r.Body, "data") {
		t.Errorf("a request error carries a data member: %.300s", r.Body)
	}
}

// TestRefusalsHonourNegotiatedMediaType: every refusal, whoever makes it (the auth middleware, the
// request guard, the rate limiter, the trusted-documents allow-list), answers in the media type the
// client negotiated, so Apollo Client 4 reads the GraphQL error (and its code) instead of reporting a
// bare ServerError.
func TestRefusalsHonourNegotiatedMediaType(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"MAX_BODY_BYTES": "4096"})
	limited := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_ANON_POINTS_PER_HOUR": "1"})
	const meDoc = `query Me { __typename }`
	trusted := testsupport.NewEnv(t, map[string]string{"TRUSTED_DOCUMENTS": writeManifest(t, map[string]string{sha256Hex(meDoc): meDoc})})

	big := gqlBody(t, `{ __typename }`, map[string]any{"pad": strings.Repeat("x", 8192)}, nil)
	type refusal struct {
		name string
		env  *testsupport.Env
		// status per negotiated media type
		jsonStatus, gqlStatus int
		code                  string
		send                  func(env *testsupport.Env, h http.Header) hresp
	}
	post := func(body []byte) func(*testsupport.Env, http.Header) hresp {
		return func(env *testsupport.Env, h http.Header) hresp {
			h.Set("Content-Type", mediaJSON)
			return hdo(t, env, http.MethodPost, "/graphql", h, body)
		}
	}
	cases := []refusal{
		{"bad token", env, 401, 401, "UNAUTHENTICATED", func(env *testsupport.Env, h http.Header) hresp {
			h.Set("Authorization", "Bearer not-a-token")
			return post(gqlBody(t, `{ __typename }`, nil, nil))(env, h)
		}},
		{"PUT", env, 405, 405, "BAD_USER_INPUT", func(env *testsupport.Env, h http.Header) hresp {
			h.Set("Content-Type", mediaJSON)
			return hdo(t, env, http.MethodPut, "/graphql", h, gqlBody(t, `{ __typename }`, nil, nil))
		}},
		{"mutation over GET", env, 405, 405, "BAD_USER_INPUT", func(env *testsupport.Env, h http.Header) hresp {
			return hdo(t, env, http.MethodGet, "/graphql?query="+url.QueryEscape(`mutation { logout { ok } }`), h, nil)
		}},
		{"body over MAX_BODY_BYTES", env, 413, 413, "BAD_USER_INPUT", post(big)},
		{"not JSON", env, 400, 400, "BAD_USER_INPUT", post([]byte(`{"query": `))},
		{"wrong Content-Type", env, 415, 415, "BAD_USER_INPUT", func(env *testsupport.Env, h http.Header) hresp {
			h.Set("Content-Type", "text/plain")
			return hdo(t, env, http.MethodPost, "/graphql", h, gqlBody(t, `{ __typename }`, nil, nil))
		}},
		{"budget spent", limited, 429, 429, "RATE_LIMITED", post(gqlBody(t, `{ __typename }`, nil, nil))},
		// Request errors of a well-formed request answer 200 as application/json (the spec's SHOULD)
		// and a 4xx as application/graphql-response+json (its MUST: no data, no 2xx).
		{"not a trusted document", trusted, 200, 403, "FORBIDDEN", post(gqlBody(t, `{ apiVersion }`, nil, nil))},
	}
	// Spend the anonymous budget of 1 point.
	hdo(t, limited, http.MethodPost, "/graphql", headers("Content-Type", mediaJSON), gqlBody(t, `{ __typename }`, nil, nil))

	for _, tc := range cases {
		for _, accept := range []struct{ header, media string }{
			{"", mediaJSON}, {mediaJSON, mediaJSON}, {"*/*", mediaJSON},
			{acceptApollo, mediaGraphQLJSON}, {acceptURQL, mediaGraphQLJSON}, {mediaGraphQLJSON, mediaGraphQLJSON},
			{"application/json, application/graphql-response+json;q=0.5", mediaJSON},
		} {
			t.Run(tc.name+"/"+accept.header, func(t *testing.T) {
				h := http.Header{}
				if accept.header != "" {
					h.Set("Accept", accept.header)
				}
				r := tc.send(tc.env, h)
				status := tc.jsonStatus
				if accept.media == mediaGraphQLJSON {
					status = tc.gqlStatus
				}
				wantRequestError(t, r, status, accept.media, tc.code)
			})
		}
	}
}

// TestRequestErrorStatuses pins GraphQL over HTTP: a document that does not parse or validate, or
// variables that cannot be coerced, answer 200 as application/json and 400 as
// application/graphql-response+json, in both cases without a data member.
func TestRequestErrorStatuses(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	cases := []struct {
		name, query string
		vars        map[string]any
	}{
		{"parse error", `{ me { id `, nil},
		{"unknown field", `{ nope }`, nil},
		{"missing variable", `query($id: ID!) { task(id: $id) { id } }`, nil},
		{"variable of the wrong type", `query($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": "ten"}},
		{"enum variable in the wrong case", hostileCreateTask, map[string]any{"input": map[string]any{"title": "x", "priority": "urgent"}}},
		{"operationName names no operation", `query A { __typename }`, nil},
	}
	for _, tc := range cases {
		for _, accept := range []struct {
			header, media string
			status        int
		}{{mediaJSON, mediaJSON, 200}, {"", mediaJSON, 200}, {acceptApollo, mediaGraphQLJSON, 400}} {
			t.Run(tc.name+"/"+accept.header, func(t *testing.T) {
				body := map[string]any{"query": tc.query}
				if tc.vars != nil {
					body["variables"] = tc.vars
				}
				if tc.name == "operationName names no operation" {
					body["operationName"] = "B"
				}
				b, _ := json.Marshal(body)
				h := headers("Content-Type", mediaJSON)
				if accept.header != "" {
					h.Set("Accept", accept.header)
				}
				wantRequestError(t, hdo(t, env, http.MethodPost, "/graphql", h, b), accept.status, accept.media, "BAD_USER_INPUT")
				// The same over GET.
				if tc.vars == nil {
					q := url.Values{"query": {tc.query}}
					if n, ok := body["operationName"].(string); ok {
						q.Set("operationName", n)
					}
					wantRequestError(t, hdo(t, env, http.MethodGet, "/graphql?"+q.Encode(), h, nil), accept.status, accept.media, "BAD_USER_INPUT")
				}
			})
		}
	}
	// Field errors are not request errors: data stays, and the status is 200 for either media type.
	u := env.Register(t, "Ada")
	for _, accept := range []string{mediaJSON, acceptApollo} {
		r := hdo(t, env, http.MethodPost, "/graphql", headers("Content-Type", mediaJSON, "Accept", accept, "Authorization", "Bearer "+u.Token),
			gqlBody(t, `{ me { id } node(id: "VGFzazowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA") { id } }`, nil, nil))
		if r.Status != http.StatusOK || r.code() != "NOT_FOUND" || !r.hasData() {
			t.Errorf("field error with Accept %q: %d %s", accept, r.Status, r.Body)
		}
	}
}

// TestURQLQueriesAreAnsweredAsJSON: urql lists text/event-stream and multipart/mixed after the JSON
// types in every Accept header; a plain query must still get one JSON answer (compressed, under the
// request deadline), not an event stream.
func TestURQLQueriesAreAnsweredAsJSON(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	r := hdo(t, env, http.MethodPost, "/graphql", headers("Content-Type", mediaJSON, "Accept", acceptURQL), gqlBody(t, `{ apiVersion }`, nil, nil))
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), mediaGraphQLJSON) || !r.hasData() {
		t.Fatalf("urql query: %d %q %.300s", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct{ event, data string }

// readEvents reads server-sent events until the stream ends.
func readEvents(t testing.TB, body io.Reader) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" || cur.data != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event:"):
			cur.event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			cur.data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the event stream: %v", err)
	}
	return out
}

// TestSSERefusalsAreEvents: the GraphQL over SSE protocol has every error before execution reported
// through an accepted stream as a next event (a 4xx makes EventSource and graphql-sse drop the body
// and, for graphql-sse, retry). Refusals made before GraphQL runs follow it too.
func TestSSERefusalsAreEvents(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"MAX_BODY_BYTES": "4096"})
	sub := `subscription { notificationReceived { id } }`
	cases := []struct {
		name, code string
		header     http.Header
		body       []byte
	}{
		{"bad token", "UNAUTHENTICATED", headers("Authorization", "Bearer not-a-token"), gqlBody(t, sub, nil, nil)},
		{"body over MAX_BODY_BYTES", "BAD_USER_INPUT", nil, gqlBody(t, sub, map[string]any{"pad": strings.Repeat("x", 8192)}, nil)},
		{"not JSON", "BAD_USER_INPUT", nil, []byte(`{"query": `)},
		{"not signed in", "UNAUTHENTICATED", nil, gqlBody(t, sub, nil, nil)},
		{"does not validate", "BAD_USER_INPUT", nil, gqlBody(t, `subscription { nope }`, nil, nil)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := headers("Content-Type", mediaJSON, "Accept", acceptGraphQLSSE)
			for k, v := range tc.header {
				h[k] = v
			}
			req, err := http.NewRequest(http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = h
			res, err := env.Server.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), mediaEventStream) {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("status %d, Content-Type %q: %.300s", res.StatusCode, res.Header.Get("Content-Type"), b)
			}
			events := readEvents(t, res.Body)
			if len(events) != 2 || events[0].event != "next" || events[1].event != "complete" {
				t.Fatalf("events = %+v, want next then complete", events)
			}
			var payload struct {
				Errors []testsupport.Error `json:"errors"`
			}
			if err := json.Unmarshal([]byte(events[0].data), &payload); err != nil || len(payload.Errors) == 0 || payload.Errors[0].Code() != tc.code {
				t.Fatalf("next event %s, want an error with code %s", events[0].data, tc.code)
			}
		})
	}
}

// postRaw sends a POST of n bytes over its own TCP connection the way curl does (the body is
// written while the answer is read) and returns the answer and whether the whole body went out.
func postRaw(t testing.TB, addr string, n int, expectContinue bool) (*http.Response, []byte, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := fmt.Sprintf("POST /graphql HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n", addr, n)
	if expectContinue {
		head += "Expect: 100-continue\r\n"
	}
	head += "\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		if expectContinue {
			written <- nil // the body is sent only after a 100 Continue, which must not come
			return
		}
		prefix := `{"query":"{ __typename }","variables":{"pad":"`
		body := io.MultiReader(strings.NewReader(prefix), io.LimitReader(repeatReader('x'), int64(n-len(prefix)-3)), strings.NewReader(`"}}`))
		_, err := io.Copy(conn, body)
		written <- err
	}()
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode == http.StatusContinue {
		return nil, nil, fmt.Errorf("the server asked for the oversized body (100 Continue)")
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the answer's body: %w", err)
	}
	if err := <-written; err != nil {
		return nil, nil, fmt.Errorf("sending the body: %w", err)
	}
	return res, b, nil
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestOversizedBodyIsA413 sends 16 MiB POSTs, several times, as curl does: each must get a readable
// 413 with a GraphQL error, never a connection reset while the client is still sending. With
// "Expect: 100-continue" the server refuses from the Content-Length alone, before the body is sent.
func TestOversizedBodyIsA413(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	addr := strings.TrimPrefix(env.Server.URL, "http://")
	for i := range 5 {
		for _, expect := range []bool{false, true} {
			res, body, err := postRaw(t, addr, 16<<20, expect)
			if err != nil {
				t.Fatalf("try %d (Expect: 100-continue %v): %v", i+1, expect, err)
			}
			if res.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(body, []byte(`"BAD_USER_INPUT"`)) {
				t.Fatalf("try %d (Expect: 100-continue %v): %d %.300s", i+1, expect, res.StatusCode, body)
			}
		}
	}
	// The server still serves.
	if r := gqlPost(t, env, "", `{ __typename }`, nil); r.Status != http.StatusOK {
		t.Fatalf("after the oversized bodies: %d %s", r.Status, r.Body)
	}
}

// TestCompressionPrefersGzip: a client that offers gzip and zstd alike gets gzip. GraphQL Code
// Generator's loader (@whatwg-node/node-fetch) offers zstd on Node.js 20, which cannot decode it,
// and crashed on the zstd answer; gzip is what every client decodes. zstd goes to clients that
// ask for it alone or rank it higher.
func TestCompressionPrefersGzip(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	// An introspection answer is far above the 1 KiB threshold.
	body := gqlBody(t, `{ __schema { types { name description fields { name description } } } }`, nil, nil)
	for _, tc := range []struct{ accept, want string }{
		{"gzip, deflate, br, zstd", "gzip"},
		{"zstd, gzip", "gzip"},
		{"gzip", "gzip"},
		{"zstd", "zstd"},
		{"gzip;q=0.5, zstd", "zstd"},
		{"identity", ""},
	} {
		req, err := http.NewRequest(http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", mediaJSON)
		req.Header.Set("Accept-Encoding", tc.accept)
		res, err := env.Server.Client().Transport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Content-Encoding"); got != tc.want {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.want)
		}
	}
}
