package server_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// readmeOperations returns the named operations of the ```graphql blocks in the section of a
// document of the repository (README.md, docs/...) that starts with heading, in the order they
// appear, each with the text of its block.
func readmeOperations(t *testing.T, file, heading string) ([]*ast.OperationDefinition, map[string]string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	start := strings.Index("\n"+text, "\n"+heading+"\n")
	if start < 0 {
		t.Fatalf("%s has no section %q", file, heading)
	}
	section := text[start+len(heading)+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var ops []*ast.OperationDefinition
	docs := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)```graphql\n(.*?)```").FindAllStringSubmatch(section, -1) {
		doc, err := parser.ParseQuery(&ast.Source{Input: m[1]})
		if err != nil {
			t.Fatalf("a README block does not parse: %v\n%s", err, m[1])
		}
		for _, op := range doc.Operations {
			ops = append(ops, op)
			docs[op.Name] = m[1]
		}
	}
	return ops, docs
}

// TestReadmeExamplesRunInOrder runs the README's "Try it in GraphiQL" operations in the order
// given, on a fresh server, as a reader would (the access token of Register in the header, ids
// from earlier answers in the variables), and checks that each one shows something: Finish used to
// mark the only task DONE, after which the Export of TODO tasks and CloseAllTagged found nothing.
func TestReadmeExamplesRunInOrder(t *testing.T) {
	t.Parallel()
	// The export and the bulk update run as jobs: this test needs the workers.
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "true"})
	ops, docs := readmeOperations(t, "README.md", "## Try it in GraphiQL")
	if len(ops) < 6 {
		t.Fatalf("found %d operations in the README", len(ops))
	}
	var token, taskID, jobID string
	run := func(name string, vars map[string]any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"query": docs[name], "operationName": name, "variables": vars})
		h := headers("Content-Type", mediaJSON)
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		r := hdo(t, env, http.MethodPost, "/graphql", h, b)
		var data map[string]any
		if r.Status != http.StatusOK || len(r.Errors) > 0 || json.Unmarshal(r.Data, &data) != nil {
			t.Fatalf("README operation %s: %d %s", name, r.Status, r.Body)
		}
		return data
	}
	get := func(v any, path ...string) any {
		for _, k := range path {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		return v
	}
	// follow polls the job until it is done, as the README's Follow does.
	follow := func(id string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			job := run("Follow", map[string]any{"id": id})["node"]
			switch get(job, "status") {
			case "SUCCEEDED":
				return job.(map[string]any)
			case "FAILED", "CANCELLED":
				t.Fatalf("job %s: %v", id, job)
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s not done after 20s: %v", id, job)
			}
			time.Sleep(100 * time.Millisecond) // the README's reader polls too
		}
	}
	for _, op := range ops {
		switch op.Name {
		case "Register":
			token, _ = get(run(op.Name, nil), "register", "accessToken").(string)
		case "Create":
			taskID, _ = get(run(op.Name, nil), "createTask", "task", "id").(string)
		case "MyTasks":
			if n, _ := get(run(op.Name, nil), "tasks", "totalCount").(float64); n < 1 {
				t.Errorf("MyTasks shows no task")
			}
		case "Finish":
			if s := get(run(op.Name, map[string]any{"id": taskID}), "updateTask", "task", "status"); s != "DONE" {
				t.Errorf("Finish: status %v", s)
			}
		case "Follow":
			// Run below, for each job the examples start.
		default:
			data := run(op.Name, nil)
			for _, v := range data {
				jobID, _ = get(v, "id").(string)
			}
			if jobID == "" {
				t.Fatalf("%s started no job: %v", op.Name, data)
			}
			result := get(follow(jobID), "result").(map[string]any)
			shows := false
			for _, k := range []string{"taskCount", "totalCount", "affectedCount"} {
				if n, _ := result[k].(float64); n > 0 {
					shows = true
				}
			}
			if !shows {
				t.Errorf("%s, run after the operations before it, shows nothing: %v", op.Name, result)
			}
		}
	}
}

// TestReadmeSubscriptionRuns: the live-updates example (docs/live-updates.md) is a document a reader
// can run as it is (the README once showed the field's signature instead).
func TestReadmeSubscriptionRuns(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	waitForReady(t, env)
	ops, docs := readmeOperations(t, "docs/live-updates.md", "# Live updates (subscriptions)")
	var sub *ast.OperationDefinition
	for _, op := range ops {
		if sub == nil && op.Operation == ast.Subscription && len(op.VariableDefinitions) == 0 &&
			strings.Contains(docs[op.Name], "taskChanged") {
			sub = op
		}
	}
	if sub == nil {
		t.Fatal("the live-updates section has no taskChanged subscription to run")
	}
	u := env.Register(t, "Ada")
	ws := dialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
	ws.mustAck()
	b, _ := json.Marshal(map[string]any{"query": docs[sub.Name], "operationName": sub.Name})
	ws.send(wsMsg{ID: "1", Type: "subscribe", Payload: b})
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		gqlPost(t, env, u.Token, hostileCreateTask, createVars("live"))
		m, ok := ws.next(300 * time.Millisecond)
		if ok {
			if m.Type != "next" || !strings.Contains(string(m.Payload), `"CREATED"`) {
				t.Fatalf("the README's subscription answered %s %s", m.Type, m.Payload)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event (socket: %v)", ws.err)
		}
	}
}
