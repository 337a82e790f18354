package resolvers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// Lists marshalled on one goroutine (graph.marshalSlice, when nothing the elements select can wait
// on another element, or the resolvers vouch for what can) must answer byte for byte what gqlgen's
// goroutine-per-element marshalling answers; and the fast path must be taken where it is meant to
// be, and only there.
func TestSequentialListsAnswerAsConcurrentOnes(t *testing.T) {
	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{"default", map[string]string{"RATE_LIMIT_ENABLED": "false"}},
		{"cache-off", map[string]string{"CACHE_ENABLED": "false", "RATE_LIMIT_ENABLED": "false"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := testsupport.NewEnv(t, mode.env)
			u := e.Register(t, "Ada")
			for i := range 23 {
				e.CreateTask(t, u.ID, db.NewTask{Title: fmt.Sprintf("task %d <b>&\u2028", i), Tags: []string{"a", "\"b\""}})
			}
			var serveAccept func(query, accept string) []byte
			serve := func(query string) []byte {
				return serveAccept(query, "")
			}
			serveAccept = func(query, accept string) []byte {
				t.Helper()
				body, _ := json.Marshal(map[string]any{"query": query})
				req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+u.Token)
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				rec := httptest.NewRecorder()
				e.App.Handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: %d %s", query, rec.Code, rec.Body)
				}
				return rec.Body.Bytes()
			}
			for _, c := range []struct {
				query      string
				sequential bool
			}{
				{peerPageQuery, true},
				{benchPageQuery, true},
				{`{ tasks(first: 20) { edges { cursor node { id title status priority dueAt tags createdAt version } } } }`, true},
				{`{ tasks(first: 3) { totalCount edges { __typename c: cursor node { __typename i: id owner { __typename id n: name } } } pageInfo { endCursor } } }`, true},
				{`query { tasks(first: 20) { edges { node { ...F } } } } fragment F on Task { id ... on Task { owner { name } } }`, true},
				{`{ tasks(first: 20) { edges { node { id assignee { id name } } } } }`, false},
				{`{ tasks(first: 20) { edges { node { id owner { id email } } } } }`, false},
				{`{ tasks(first: 20) { edges { node { id ... @defer { title } } } } }`, true}, // @defer dropped: a JSON answer
				{`{ tasks(first: 1) { edges { node { id owner { name } } } } }`, false},       // one element: gqlgen's own inline path
				{`{ tasks(first: 2, after: "bad") { edges { node { id } } } }`, false},        // an error, no list
			} {
				graph.SetSequentialLists(true)
				before := graph.SequentialListCount()
				fast := serve(c.query)
				took := graph.SequentialListCount() > before
				graph.SetSequentialLists(false)
				slow := serve(c.query)
				graph.SetSequentialLists(true)
				if !bytes.Equal(fast, slow) {
					t.Errorf("%s\none goroutine answered\n%s\ngoroutine per element\n%s", c.query, fast, slow)
				}
				if bytes.Contains(slow, []byte(`"errors"`)) != bytes.Contains([]byte(c.query), []byte(`"bad"`)) {
					t.Errorf("%s: %s", c.query, slow)
				}
				if took != c.sequential {
					t.Errorf("%s: marshalled on one goroutine %v, want %v", c.query, took, c.sequential)
				}
			}
			// Deferred fragments delivered incrementally keep a goroutine per element.
			deferred := `{ tasks(first: 20) { edges { node { id ... @defer { owner { name } } } } } }`
			before := graph.SequentialListCount()
			answer := serveAccept(deferred, "multipart/mixed;deferSpec=20220824, application/json")
			if graph.SequentialListCount() != before {
				t.Errorf("%s was marshalled on one goroutine", deferred)
			}
			if !bytes.Contains(answer, []byte(`"hasNext":true`)) {
				t.Errorf("%s: not an incremental answer: %s", deferred, answer)
			}
		})
	}
}
