package server_test

// @defer end to end: incremental delivery over multipart/mixed (as Apollo Client and urql read it),
// over SSE and over graphql-transport-ws, the whole answer at once for a client that cannot take
// later payloads, and the same cost with or without @defer.

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// deferredMe defers a resolver field (taskCounts, resolved concurrently, which gqlgen really
// defers) next to a plain one (name, which gqlgen sends at once).
const deferredMe = `query Deferred { me { id ... @defer(label: "counts") { name taskCounts { total } } } }`

// deferredTasks defers a fragment inside every item of a list.
const deferredTasks = `query DeferredTasks { tasks(first: 2, orderBy: {field: CREATED_AT, direction: ASC}) { edges { node { id ...Owner @defer(label: "owner") } } } }
fragment Owner on Task { owner { name taskCounts { total } } }`

// payload is one result of an incrementally delivered answer.
type payload struct {
	Data        map[string]any   `json:"data"`
	Errors      []map[string]any `json:"errors"`
	HasNext     *bool            `json:"hasNext"`
	Incremental []struct {
		Data   map[string]any `json:"data"`
		Path   []any          `json:"path"`
		Label  string         `json:"label"`
		Errors []any          `json:"errors"`
	} `json:"incremental"`
}

// merged applies every later payload to the initial data, as a client does, and checks the
// hasNext sequence: true until the last payload, false on it.
func merged(t *testing.T, payloads []payload) map[string]any {
	t.Helper()
	if len(payloads) < 2 {
		t.Fatalf("%d payloads, want an initial one and later ones: %+v", len(payloads), payloads)
	}
	data := payloads[0].Data
	if data == nil || payloads[0].HasNext == nil || !*payloads[0].HasNext {
		t.Fatalf("initial payload %+v, want data and hasNext: true", payloads[0])
	}
	// No field of a deferred fragment is in the initial payload: gqlgen sent null in place of the
	// fields it resolves concurrently (taskCounts, owner), which clients take for the value, and
	// the others (name) at once.
	initial, _ := json.Marshal(data)
	for _, deferred := range []string{`"taskCounts"`, `"owner"`, `"name"`} {
		if bytes.Contains(initial, []byte(deferred)) {
			t.Fatalf("the initial payload carries the deferred field %s: %s", deferred, initial)
		}
	}
	for i, p := range payloads[1:] {
		last := i == len(payloads)-2
		if p.HasNext == nil || *p.HasNext != !last || len(p.Incremental) == 0 {
			t.Fatalf("payload %d = %+v, want incremental results with hasNext %v", i+1, p, !last)
		}
		for _, inc := range p.Incremental {
			if len(inc.Errors) > 0 {
				t.Fatalf("deferred fragment failed: %+v", inc)
			}
			var at any = data
			for _, el := range inc.Path {
				switch k := el.(type) {
				case string:
					at = at.(map[string]any)[k]
				case float64:
					at = at.([]any)[int(k)]
				}
			}
			obj, ok := at.(map[string]any)
			if !ok {
				t.Fatalf("path %v does not lead to an object in %v", inc.Path, data)
			}
			for k, v := range inc.Data {
				obj[k] = v
			}
		}
	}
	return data
}

// multipartPayloads reads a multipart/mixed answer.
func multipartPayloads(t *testing.T, res *http.Response) []payload {
	t.Helper()
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] == "" {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("Content-Type %q (%v), want multipart/mixed with a boundary: %.300s", res.Header.Get("Content-Type"), err, b)
	}
	mr := multipart.NewReader(res.Body, params["boundary"])
	var out []payload
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("multipart: %v (after %d parts)", err, len(out))
		}
		if ct := part.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("part Content-Type %q", ct)
		}
		var p payload
		if err := json.NewDecoder(part).Decode(&p); err != nil {
			t.Fatalf("part %d: %v", len(out), err)
		}
		out = append(out, p)
	}
}

func postDefer(t *testing.T, env *testsupport.Env, token, accept, query string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(gqlBody(t, query, nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaJSON)
	req.Header.Set("Accept", accept)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("status %d: %.300s", res.StatusCode, b)
	}
	return res
}

func deferFixture(t *testing.T, overrides map[string]string) (*testsupport.Env, *testsupport.User, map[string]any, map[string]any) {
	t.Helper()
	env := testsupport.NewEnv(t, overrides)
	u := env.Register(t, "Ada")
	env.CreateTask(t, u.ID, db.NewTask{Title: "one"})
	env.CreateTask(t, u.ID, db.NewTask{Title: "two"})
	// The same documents without @defer give the answers to expect.
	var wantMe, wantTasks map[string]any
	gqlPost(t, env, u.Token, strings.Replace(deferredMe, `@defer(label: "counts") `, "", 1), nil).decode(t, &wantMe)
	gqlPost(t, env, u.Token, strings.Replace(deferredTasks, ` @defer(label: "owner")`, "", 1), nil).decode(t, &wantTasks)
	if wantMe["me"].(map[string]any)["taskCounts"].(map[string]any)["total"] != 2.0 {
		t.Fatalf("fixture: %v", wantMe)
	}
	return env, u, wantMe, wantTasks
}

func (r hresp) decode(t *testing.T, v any) {
	t.Helper()
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatal(err)
	}
}

func wantSame(t *testing.T, got, want map[string]any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		t.Fatalf("merged answer\n  %s\nwant\n  %s", g, w)
	}
}

// TestDeferOverMultipart: Apollo Client (multipart/mixed first in its Accept) and urql (JSON first,
// streams accepted) get an initial payload and then one incremental payload per deferred
// fragment, ending with hasNext: false and the closing boundary.
func TestDeferOverMultipart(t *testing.T) {
	t.Parallel()
	env, u, wantMe, wantTasks := deferFixture(t, nil)
	for _, tc := range []struct{ name, accept, query string }{
		{"Apollo, one fragment", acceptApolloDefer, deferredMe},
		{"Apollo, a fragment per list item", acceptApolloDefer, deferredTasks},
		{"multipart only", "multipart/mixed", deferredMe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := merged(t, multipartPayloads(t, postDefer(t, env, u.Token, tc.accept, tc.query)))
			if tc.query == deferredMe {
				wantSame(t, got, wantMe)
			} else {
				wantSame(t, got, wantTasks)
			}
		})
	}
	// A fragment of fields gqlgen does not defer (resolved with their object) still comes later, and
	// a fragment under an interface too.
	syncOnly := `query { me { id ... @defer { name } } }`
	var wantSync map[string]any
	gqlPost(t, env, u.Token, `query { me { id name } }`, nil).decode(t, &wantSync)
	wantSame(t, merged(t, multipartPayloads(t, postDefer(t, env, u.Token, acceptApolloDefer, syncOnly))), wantSync)
	var me struct{ Me struct{ ID string } }
	gqlPost(t, env, u.Token, `{ me { id } }`, nil).decode(t, &me)
	abstract := `query($id: ID!) { node(id: $id) { __typename id ... on User { ... @defer { name taskCounts { total } } } } }`
	var wantNode map[string]any
	gqlPost(t, env, u.Token, `query($id: ID!) { node(id: $id) { __typename id ... on User { name taskCounts { total } } } }`,
		map[string]any{"id": me.Me.ID}).decode(t, &wantNode)
	req, _ := http.NewRequest(http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(gqlBody(t, abstract, map[string]any{"id": me.Me.ID}, nil)))
	req.Header = headers("Content-Type", mediaJSON, "Accept", acceptApolloDefer, "Authorization", "Bearer "+u.Token)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	wantSame(t, merged(t, multipartPayloads(t, res)), wantNode)

	// urql lists text/event-stream before multipart/mixed: its deferred query gets an event stream.
	res = postDefer(t, env, u.Token, acceptURQL, deferredMe)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, mediaEventStream) {
		t.Fatalf("urql @defer: Content-Type %q", ct)
	}
	wantSame(t, merged(t, ssePayloads(t, res)), wantMe)
}

func ssePayloads(t *testing.T, res *http.Response) []payload {
	t.Helper()
	events := readEvents(t, res.Body)
	if len(events) == 0 || events[len(events)-1].event != "complete" {
		t.Fatalf("events %+v, want next events then complete", events)
	}
	var out []payload
	for _, e := range events[:len(events)-1] {
		if e.event != "next" {
			t.Fatalf("event %+v", e)
		}
		var p payload
		if err := json.Unmarshal([]byte(e.data), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestDeferOverSSE: graphql-sse clients get every payload as a next event.
func TestDeferOverSSE(t *testing.T) {
	t.Parallel()
	env, u, wantMe, wantTasks := deferFixture(t, nil)
	wantSame(t, merged(t, ssePayloads(t, postDefer(t, env, u.Token, acceptGraphQLSSE, deferredMe))), wantMe)
	wantSame(t, merged(t, ssePayloads(t, postDefer(t, env, u.Token, acceptGraphQLSSE, deferredTasks))), wantTasks)
}

// TestDeferOverWebsocket: graphql-transport-ws clients get every payload as a next message.
func TestDeferOverWebsocket(t *testing.T) {
	t.Parallel()
	env, u, wantMe, wantTasks := deferFixture(t, nil)
	c := dialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
	c.mustAck()
	for id, tc := range map[string]struct {
		query string
		want  map[string]any
	}{"me": {deferredMe, wantMe}, "tasks": {deferredTasks, wantTasks}} {
		c.subscribe(id, tc.query, nil)
		var payloads []payload
		for {
			m, ok := c.next(10 * time.Second)
			if !ok {
				t.Fatalf("%s: socket ended (%v) after %d payloads", id, c.err, len(payloads))
			}
			if m.ID != id {
				t.Fatalf("message for %q while reading %q: %+v", m.ID, id, m)
			}
			if m.Type == "complete" {
				break
			}
			if m.Type != "next" {
				t.Fatalf("%s: %s %s", id, m.Type, m.Payload)
			}
			var p payload
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, p)
		}
		wantSame(t, merged(t, payloads), tc.want)
	}
}

// TestDeferWholeAnswer: a client that cannot take later payloads (plain JSON, over POST or GET)
// gets the whole answer at once, without hasNext. gqlgen sent the initial payload alone, with
// hasNext: true and null for the deferred non-null fields, and nothing after it.
func TestDeferWholeAnswer(t *testing.T) {
	t.Parallel()
	env, u, wantMe, wantTasks := deferFixture(t, nil)
	for _, accept := range []string{"", mediaJSON, acceptApollo, mediaGraphQLJSON} {
		for query, want := range map[string]map[string]any{deferredMe: wantMe, deferredTasks: wantTasks} {
			h := bearer(u.Token)
			if accept != "" {
				h.Set("Accept", accept)
			}
			r := hdo(t, env, http.MethodPost, "/graphql", h, gqlBody(t, query, nil, nil))
			if hasKey(t, r.Body, "hasNext") {
				t.Errorf("Accept %q: hasNext in a whole answer: %s", accept, r.Body)
			}
			var got map[string]any
			r.decode(t, &got)
			wantSame(t, got, want)
			g := hdo(t, env, http.MethodGet, "/graphql?query="+url.QueryEscape(query), h, nil)
			g.decode(t, &got)
			wantSame(t, got, want)
		}
	}
}

// TestDeferCostsTheSame: deferred fragments are charged like any other selection.
func TestDeferCostsTheSame(t *testing.T) {
	t.Parallel()
	env, u, _, _ := deferFixture(t, nil)
	for _, query := range []string{deferredMe, deferredTasks} {
		plain := strings.NewReplacer(`@defer(label: "counts") `, "", ` @defer(label: "owner")`, "").Replace(query)
		with := costOf(t, gqlPost(t, env, u.Token, query, nil))
		without := costOf(t, gqlPost(t, env, u.Token, plain, nil))
		if with.RequestedNodes != without.RequestedNodes || with.Points != without.Points || with.RequestedNodes < 3 {
			t.Errorf("cost with @defer %+v, without %+v", with, without)
		}
	}
}

// TestDeferWithResponseCache: with the whole-answer cache on, deferred queries still stream to the
// end (a stored answer must never stand in for a payload of a stream) and plain ones are cached.
func TestDeferWithResponseCache(t *testing.T) {
	t.Parallel()
	env, u, wantMe, _ := deferFixture(t, map[string]string{"REDIS_URL": redisDB(t, 10)})
	for range 3 {
		wantSame(t, merged(t, multipartPayloads(t, postDefer(t, env, u.Token, acceptApolloDefer, deferredMe))), wantMe)
		var got map[string]any
		gqlPost(t, env, u.Token, deferredMe, nil).decode(t, &got)
		wantSame(t, got, wantMe)
	}
}
