package server_test

// Visible cost: every GraphQL answer carries the client's budget as the IETF RateLimit and
// RateLimit-Policy fields (429s and refusals before execution too); a dry run answers cost, budget and
// admission without executing or spending; a real deprecation (TaskChangedEvent.deletedTaskId) is
// counted by the deprecated-field metric.

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

var rateLimitField = regexp.MustCompile(`^"cost";r=(\d+);t=(\d+)$`)

// remainingOf parses the RateLimit field's r (failing when the field is missing or malformed).
func remainingOf(t *testing.T, r hresp) int {
	t.Helper()
	if p := r.Header.Get("RateLimit-Policy"); p != `"cost";q=5;w=3600` {
		t.Fatalf("RateLimit-Policy = %q (status %d)", p, r.Status)
	}
	m := rateLimitField.FindStringSubmatch(r.Header.Get("RateLimit"))
	if m == nil {
		t.Fatalf("RateLimit = %q (status %d)", r.Header.Get("RateLimit"), r.Status)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func costPost(t *testing.T, env *testsupport.Env, token, query string, ext map[string]any) hresp {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "extensions": ext})
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return hdo(t, env, http.MethodPost, "/graphql", h, body)
}

func TestRateLimitHeadersOnEveryAnswer(t *testing.T) {
	env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_POINTS_PER_HOUR": "5"})
	u := env.Register(t, "Headers")
	first := costPost(t, env, u.Token, `{ me { id } }`, nil)
	if r := remainingOf(t, first); r != 4 {
		t.Fatalf("after one point: r=%d, want 4", r)
	}
	// Refused before execution (a syntax error): the budget as it stands, nothing spent.
	if r := remainingOf(t, costPost(t, env, u.Token, `{ me { id `, nil)); r != 4 {
		t.Fatalf("after a parse error: r=%d, want 4", r)
	}
	for range 4 {
		costPost(t, env, u.Token, `{ me { id } }`, nil)
	}
	refused := costPost(t, env, u.Token, `{ me { id } }`, nil)
	if refused.Status != http.StatusTooManyRequests || remainingOf(t, refused) != 0 {
		t.Fatalf("spent budget: %d, RateLimit %q", refused.Status, refused.Header.Get("RateLimit"))
	}
}

func TestCostDryRunNeitherRunsNorSpends(t *testing.T) {
	env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_POINTS_PER_HOUR": "5"})
	u := env.Register(t, "Dry")
	dry := map[string]any{"cost": map[string]any{"dryRun": true}}
	mutation := `mutation { createTask(input: {title: "dry"}) { task { id } } }`
	for range 3 {
		r := costPost(t, env, u.Token, mutation, dry)
		c, _ := r.Extensions["cost"].(map[string]any)
		if r.Status != http.StatusOK || len(r.Errors) > 0 || r.hasData() || c["dryRun"] != true ||
			c["points"] != float64(1) || c["remaining"] != float64(5) || c["limit"] != float64(5) || c["wouldBeAdmitted"] != true {
			t.Fatalf("dry run: %d %s", r.Status, r.Body)
		}
		if remainingOf(t, r) != 5 {
			t.Fatal("a dry run spent budget")
		}
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Fatalf("a dry run executed: %d tasks", n)
	}
	// A page of 100 tasks costs more than the whole budget: not admitted, and still not refused.
	big := costPost(t, env, u.Token, `{ tasks(first: 100) { edges { node { id owner { id } } } } }`, dry)
	c, _ := big.Extensions["cost"].(map[string]any)
	if big.Status != http.StatusOK || c["wouldBeAdmitted"] != false || c["points"].(float64) <= 5 {
		t.Fatalf("costly dry run: %d %s", big.Status, big.Body)
	}
	// The real run is charged as usual.
	charged := costPost(t, env, u.Token, mutation, nil)
	if len(charged.Errors) > 0 || remainingOf(t, charged) != 4 || env.CountRows(t, "tasks") != 1 {
		t.Fatalf("real run: %s", charged.Body)
	}
}

// Without rate limits a dry run still never executes; it reports the cost alone.
func TestCostDryRunWithoutRateLimits(t *testing.T) {
	env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_ENABLED": "false"})
	u := env.Register(t, "NoLimits")
	r := costPost(t, env, u.Token, `mutation { createTask(input: {title: "dry"}) { task { id } } }`,
		map[string]any{"cost": map[string]any{"dryRun": true}})
	c, _ := r.Extensions["cost"].(map[string]any)
	if r.hasData() || c["dryRun"] != true || c["wouldBeAdmitted"] != true || c["remaining"] != nil {
		t.Fatalf("dry run without limits: %d %s", r.Status, r.Body)
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Fatalf("a dry run executed: %d tasks", n)
	}
	if r.Header.Get("RateLimit") != "" {
		t.Fatalf("RateLimit without limits: %q", r.Header.Get("RateLimit"))
	}
}

// TaskChangedEvent.deletedTaskId is deprecated for taskId: subscribers selecting it are counted, and
// taskId carries the id for every kind.
func TestDeprecatedDeletedTaskIDIsCounted(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	env.WaitEventsReady(t)
	u := env.Register(t, "Dep")
	ws := testsupport.DialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
	ws.MustAck()
	ws.Subscribe("s", `subscription { taskChanged { kind taskId deletedTaskId } }`, nil)
	testenv.WaitFor(t, 10*time.Second, "the subscription to be counted", func() bool {
		return deprecatedCount(t, env, "TaskChangedEvent.deletedTaskId") >= 1
	})
	var created struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	testenv.WaitFor(t, 10*time.Second, "the watcher", func() bool { return env.App.Feed.Watchers() == 1 })
	u.Do(t, `mutation { createTask(input: {title: "x"}) { task { id } } }`, nil).Decode(t, &created)
	u.Do(t, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": created.CreateTask.Task.ID}).Decode(t, &struct{}{})
	var kinds []string
	for len(kinds) < 2 {
		m, ok := ws.Next(10 * time.Second)
		if !ok {
			t.Fatalf("events so far: %v", kinds)
		}
		if m.ID != "s" || m.Type != "next" {
			continue
		}
		var ev struct {
			Data struct {
				TaskChanged struct{ Kind, TaskID string }
			}
		}
		if err := json.Unmarshal(m.Payload, &ev); err != nil || ev.Data.TaskChanged.TaskID != created.CreateTask.Task.ID {
			t.Fatalf("event %s", m.Payload)
		}
		kinds = append(kinds, ev.Data.TaskChanged.Kind)
	}
	if strings.Join(kinds, ",") != "CREATED,DELETED" {
		t.Fatalf("kinds %v", kinds)
	}
}

// deprecatedCount sums the deprecated-field counter of field over clients, from /metrics.
func deprecatedCount(t *testing.T, env *testsupport.Env, field string) float64 {
	t.Helper()
	var sum float64
	for _, line := range env.MetricLines(t) {
		if strings.HasPrefix(line, "taskgraph_graphql_deprecated_field_usage_total{") && strings.Contains(line, `field="`+field+`"`) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}
