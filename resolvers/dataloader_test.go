package resolvers_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const ownersQuery = `query($first: Int!) {
  tasks(first: $first) {
    edges { node { id title owner { id name taskCounts { total todo done } } } }
  }
}`

// TestListingTasksWithOwnersUsesConstantStatements checks the dataloaders: a page of tasks with each
// task's owner and the owner's counts costs the same few statements for 10 rows as for 100.
func TestListingTasksWithOwnersUsesConstantStatements(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: pages through thousands of rows counting statements")
	}
	// Without the cache, so every request reaches PostgreSQL and the batching itself is measured.
	env := testsupport.NewEnv(t, map[string]string{"CACHE_ENABLED": "false"})
	u := env.Register(t, "Batcher")
	seedTasks(t, env, u.ID, 120)

	// Counted per request: the session cache is off too, and background work on the pool (River's
	// polling, listeners) must not count.
	count := func(first int) int64 {
		var data struct {
			Tasks struct {
				Edges []struct {
					Node struct {
						Owner struct {
							ID         string
							TaskCounts struct{ Total int }
						}
					}
				}
			}
		}
		res := u.Do(t, ownersQuery, map[string]any{"first": first})
		res.Decode(t, &data)
		if len(data.Tasks.Edges) != first {
			t.Fatalf("got %d edges, want %d", len(data.Tasks.Edges), first)
		}
		for _, e := range data.Tasks.Edges {
			if e.Node.Owner.ID != u.GlobalID || e.Node.Owner.TaskCounts.Total != 120 {
				t.Fatalf("owner = %+v, want %s with 120 tasks", e.Node.Owner, u.GlobalID)
			}
		}
		return env.DB.Counter.CountFor(res.Header.Get("X-Request-ID"))
	}

	small, large := count(10), count(100)
	t.Logf("statements: %d for 10 tasks, %d for 100 tasks", small, large)
	if large < 3 {
		t.Fatalf("only %d statements counted for the request: the per-request count does not see its statements", large)
	}
	if small != large {
		t.Fatalf("statements grow with page size: %d for 10, %d for 100", small, large)
	}
	// session lookup + page with its owners joined + task counts (read right after the page, in one
	// batch, without waiting out a loader's batch window).
	if large > 3 {
		t.Fatalf("%d statements for one page with owners and counts, want at most 3", large)
	}
}

// TestCachedOwnersAndCountsSkipTheDatabase checks the cache from the outside: once owners and counts
// are cached (and the session check too), a repeated page costs only the page query itself.
func TestCachedOwnersAndCountsSkipTheDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: several instances over Redis, with faults")
	}
	// In-process cache (no REDIS_URL), without the response cache, which would answer the repeat
	// whole: this measures the row caches under an executed page.
	env := testsupport.NewEnv(t, map[string]string{"RESPONSE_CACHE_TTL": "0"})
	u := env.Register(t, "Cached")
	seedTasks(t, env, u.ID, 50)
	run := func() int64 {
		res := u.Do(t, ownersQuery, map[string]any{"first": 50})
		res.Decode(t, &struct{}{})
		return env.DB.Counter.CountFor(res.Header.Get("X-Request-ID"))
	}
	cold, warm := run(), run()
	t.Logf("statements: %d cold, %d warm", cold, warm)
	if warm != 1 || cold <= warm {
		t.Fatalf("statements cold %d, warm %d; want warm = 1 (the page: session, owners and counts cached) and cold > warm; last: %q",
			cold, warm, env.DB.Counter.Recent(int(warm)))
	}
}

// Without a row cache, task(id) with its owner reads both in one statement after the session
// lookup, and answers exactly as an instance with the cache does: the owner of one's own task and
// of a task assigned to one, NOT_FOUND for another user's task.
func TestTaskByIDWithOwnerIsOneStatementWithoutACache(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances counting statements")
	}
	uncached := testsupport.NewEnv(t, map[string]string{"CACHE_ENABLED": "false"})
	cached := testsupport.NewEnvOn(t, uncached.DB, map[string]string{"RESPONSE_CACHE_TTL": "0"})
	ada, grace := uncached.Register(t, "Ada"), uncached.Register(t, "Grace")
	own := uncached.CreateTask(t, ada.ID, db.NewTask{Title: "own"})
	assigned := uncached.CreateTask(t, grace.ID, db.NewTask{Title: "assigned", AssigneeID: &ada.ID})
	hidden := uncached.CreateTask(t, grace.ID, db.NewTask{Title: "hidden"})
	const query = `query($id: ID!) { task(id: $id) { id title owner { id name } } }`
	for _, task := range []*db.Task{own, assigned, hidden} {
		vars := map[string]any{"id": globalid.Encode(globalid.KindTask, task.ID)}
		res := (&testsupport.Client{Env: uncached, Token: ada.Token}).Do(t, query, vars)
		want := (&testsupport.Client{Env: cached, Token: ada.Token}).Do(t, query, vars)
		got, _ := json.Marshal(map[string]any{"data": res.Data, "errors": res.Errors})
		wanted, _ := json.Marshal(map[string]any{"data": want.Data, "errors": want.Errors})
		if string(got) != string(wanted) {
			t.Errorf("%s: without a cache %s, with one %s", task.Title, got, wanted)
		}
		if task == hidden {
			if len(res.Errors) != 1 || res.Errors[0].Code() != "NOT_FOUND" {
				t.Errorf("another user's task: %s, want NOT_FOUND", got)
			}
			continue
		}
		if !strings.Contains(string(got), `"name":"`+map[*db.Task]string{own: "Ada", assigned: "Grace"}[task]+`"`) {
			t.Errorf("%s: %s does not name its owner", task.Title, got)
		}
		if n := uncached.DB.Counter.CountFor(res.Header.Get("X-Request-ID")); n != 2 {
			t.Errorf("%s: %d statements, want 2 (session lookup, task with its owner)", task.Title, n)
		}
	}
}
