package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/graphiql"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestGraphiQLIsServedFromTheBinary: GET / is a page whose script and styles come from this server
// (gqlgen's page loaded React and GraphiQL from a CDN: offline it stayed on "Loading…").
func TestGraphiQLIsServedFromTheBinary(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	page := hdo(t, env, http.MethodGet, "/", nil, nil)
	if page.Status != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", page.Status, page.Header.Get("Content-Type"))
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(page.Body), -1)
	if len(refs) == 0 {
		t.Fatalf("the page loads nothing: %.500s", page.Body)
	}
	for _, ref := range refs {
		if !strings.HasPrefix(ref[1], "/") || strings.HasPrefix(ref[1], "//") {
			t.Errorf("the page loads %q from another origin", ref[1])
			continue
		}
		if r := hdo(t, env, http.MethodGet, ref[1], nil, nil); r.Status != http.StatusOK || len(r.Body) < 1000 {
			t.Errorf("GET %s: %d, %d bytes", ref[1], r.Status, len(r.Body))
		}
	}
	if r := hdo(t, env, http.MethodGet, graphiql.AssetPrefix+"THIRD_PARTY_LICENSES.txt", nil, nil); r.Status != http.StatusOK {
		t.Errorf("licenses: %d", r.Status)
	}
	// Off in production by default: nothing is served at /.
	prod := testsupport.NewEnv(t, map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40)})
	if r := hdo(t, prod, http.MethodGet, "/", nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("GET / in production: %d", r.Status)
	}
}

// TestGraphiQLExamplesRun runs the operations GraphiQL opens on, in the order its comment gives,
// with the headers and variables a person would type: each one works on a fresh server.
func TestGraphiQLExamplesRun(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	waitForReady(t, env)
	run := func(token, op string, vars map[string]any) hresp {
		t.Helper()
		h := headers("Content-Type", mediaJSON, "Accept", "application/json, multipart/mixed", "Authorization", "")
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		b, _ := json.Marshal(map[string]any{"query": graphiql.Examples, "operationName": op, "variables": vars})
		r := hdo(t, env, http.MethodPost, "/graphql", h, b)
		if r.Status != http.StatusOK || len(r.Errors) > 0 || !r.hasData() {
			t.Fatalf("%s: %d %s", op, r.Status, r.Body)
		}
		return r
	}
	var signUp struct{ Register struct{ AccessToken string } }
	run("", "SignUp", map[string]any{"email": "ada@example.com", "after": nil}).decode(t, &signUp)
	token := signUp.Register.AccessToken
	run("", "SignIn", nil)

	var ids []string
	for range 3 {
		var created struct {
			CreateTask struct{ Task struct{ ID string } }
		}
		run(token, "CreateTask", nil).decode(t, &created)
		ids = append(ids, created.CreateTask.Task.ID)
	}
	type page struct {
		Tasks struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID string } }
			PageInfo   struct {
				HasNextPage, HasPreviousPage bool
				StartCursor, EndCursor       string
			}
		}
	}
	var first, next, back page
	run(token, "MyTasks", map[string]any{"first": 2}).decode(t, &first)
	run(token, "MyTasks", map[string]any{"first": 2, "after": first.Tasks.PageInfo.EndCursor}).decode(t, &next)
	run(token, "MyTasks", map[string]any{"first": nil, "last": 2, "before": next.Tasks.PageInfo.StartCursor}).decode(t, &back)
	if first.Tasks.TotalCount != 3 || len(first.Tasks.Edges) != 2 || !first.Tasks.PageInfo.HasNextPage ||
		len(next.Tasks.Edges) != 1 || next.Tasks.Edges[0].Node.ID != ids[0] ||
		len(back.Tasks.Edges) != 2 || back.Tasks.Edges[0].Node.ID != first.Tasks.Edges[0].Node.ID {
		t.Fatalf("paging: first %+v, next %+v, back %+v", first, next, back)
	}
	var done struct {
		UpdateTask struct{ Task struct{ Status string } }
	}
	run(token, "FinishTask", map[string]any{"id": ids[1]}).decode(t, &done)
	if done.UpdateTask.Task.Status != "DONE" {
		t.Fatalf("FinishTask: %+v", done)
	}
	// TaskChanged shows the changes made while it is open: CreateTask (another tab) until one
	// arrives, as the server starts listening a moment after the subscribe message.
	ws := dialWS(t, env, map[string]any{"Authorization": "Bearer " + token})
	ws.mustAck()
	b, _ := json.Marshal(map[string]any{"query": graphiql.Examples, "operationName": "TaskChanged"})
	ws.send(wsMsg{ID: "1", Type: "subscribe", Payload: b})
	deadline := time.Now().Add(10 * time.Second)
	for {
		run(token, "CreateTask", nil)
		m, ok := ws.next(300 * time.Millisecond)
		if !ok {
			if time.Now().After(deadline) || ws.closed() {
				t.Fatalf("TaskChanged saw nothing (socket: %v)", ws.err)
			}
			continue
		}
		var p struct {
			Data struct{ TaskChanged struct{ Kind string } }
		}
		if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil {
			t.Fatalf("TaskChanged: %s %s", m.Type, m.Payload)
		}
		if p.Data.TaskChanged.Kind == "CREATED" { // (FinishTask's change may come first)
			return
		}
	}
}
