package resolvers_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const rcPage = `query Page($first: Int) { tasks(first: $first) { totalCount edges { cursor node { id title status
	owner { id name taskCounts { total done } } } } pageInfo { hasNextPage endCursor } } }`

// rcRun sends query as u and returns the raw data and how many SQL statements it took.
func rcRun(t *testing.T, env *testsupport.Env, u *testsupport.User, query string, vars map[string]any) (string, int64) {
	t.Helper()
	res := u.Do(t, query, vars)
	if len(res.Errors) > 0 {
		t.Fatalf("errors: %+v", res.Errors)
	}
	if res.Status != 200 {
		t.Fatalf("status %d", res.Status)
	}
	// Counted per request, so background work on the same pool does not count.
	return string(res.Data), env.DB.Counter.CountFor(res.Header.Get("X-Request-ID"))
}

// rcEachSetup runs check, in parallel, on each of the two caches the response cache stands on:
// Redis (shared by every instance) and the default in-process one.
func rcEachSetup(t *testing.T, check func(t *testing.T, env *testsupport.Env)) {
	t.Parallel()
	for name, setup := range map[string]map[string]string{
		"redis":      {"REDIS_URL": testenv.RedisURL(0)},
		"in-process": nil,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check(t, testsupport.NewEnv(t, setup))
		})
	}
}

func TestResponseCacheServesRepeatsUntilTheViewersDataChanges(t *testing.T) {
	rcEachSetup(t, rcServesRepeatsUntilTheViewersDataChanges)
}

func rcServesRepeatsUntilTheViewersDataChanges(t *testing.T, env *testsupport.Env) {
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	ctx := context.Background()
	var taskIDs []string
	for i := range 3 {
		task := env.CreateTask(t, alice.ID, db.NewTask{Title: fmt.Sprintf("a%d", i)})
		taskIDs = append(taskIDs, globalid.Encode(globalid.KindTask, task.ID))
	}
	vars := map[string]any{"first": 10}

	first, _ := rcRun(t, env, alice, rcPage, vars)
	again, stmts := rcRun(t, env, alice, rcPage, vars)
	if again != first || stmts != 0 {
		t.Fatalf("repeat: %d statements (want 0: served whole from the cache), same answer %v", stmts, again == first)
	}
	// The cost budget and the API version still come with a cached answer.
	res := alice.Do(t, rcPage, vars)
	if _, ok := res.Extensions["apiVersion"]; !ok || res.Extensions["cost"] == nil {
		t.Fatalf("cached answer's extensions = %v, want apiVersion and cost", res.Extensions)
	}
	// Other variables, another answer.
	two, _ := rcRun(t, env, alice, rcPage, map[string]any{"first": 2})
	if two == first || strings.Count(two, `"cursor"`) != 2 {
		t.Fatalf("first: 2 answered %s", two)
	}
	// Another user asking the same document gets their own (empty) list.
	if b, _ := rcRun(t, env, bob, rcPage, vars); strings.Contains(b, "a0") || !strings.Contains(b, `"totalCount":0`) {
		t.Fatalf("Bob's answer: %s", b)
	}

	// Every kind of write that changes what Alice's page shows is seen on the next request.
	writes := []struct {
		name  string
		write func()
		want  string
	}{
		{"the owner renames a task", func() {
			alice.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {title: "renamed"}) { task { id } } }`,
				map[string]any{"id": taskIDs[0]}).Decode(t, &struct{}{})
		}, `"title":"renamed"`},
		{"the assignee changes the status", func() {
			alice.Do(t, `mutation($id: ID!, $a: ID) { updateTask(id: $id, input: {assigneeId: $a}) { task { id } } }`,
				map[string]any{"id": taskIDs[1], "a": bob.GlobalID}).Decode(t, &struct{}{})
			rcRun(t, env, alice, rcPage, vars) // cache the answer after the assignment
			bob.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {status: DONE}) { task { id } } }`,
				map[string]any{"id": taskIDs[1]}).Decode(t, &struct{}{})
		}, `"done":1`},
		{"the owner renames themself", func() {
			alice.Do(t, `mutation { updateMe(input: {name: "Alicia"}) { user { id } } }`, nil).Decode(t, &struct{}{})
		}, `"name":"Alicia"`},
		{"a task is created", func() {
			alice.Do(t, `mutation { createTask(input: {title: "brand new"}) { task { id } } }`, nil).Decode(t, &struct{}{})
		}, `"title":"brand new"`},
		{"a task is changed behind the API's back, then through it", func() {
			if _, err := env.DB.Pool.Exec(ctx, `UPDATE tasks SET title = 'sneaky' WHERE title = 'a2'`); err != nil {
				t.Fatal(err)
			}
			alice.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {description: "x"}) { task { id } } }`,
				map[string]any{"id": taskIDs[0]}).Decode(t, &struct{}{})
		}, `"title":"sneaky"`},
	}
	for _, w := range writes {
		rcRun(t, env, alice, rcPage, vars) // make sure an answer is cached
		w.write()
		got, stmts := rcRun(t, env, alice, rcPage, vars)
		if !strings.Contains(got, w.want) || stmts == 0 {
			t.Fatalf("after %s: %d statements, answer %s; want it recomputed with %s", w.name, stmts, got, w.want)
		}
	}
}

func TestResponseCacheLeavesOtherUsersDataAlone(t *testing.T) {
	rcEachSetup(t, rcLeavesOtherUsersDataAlone)
}

func rcLeavesOtherUsersDataAlone(t *testing.T, env *testsupport.Env) {
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	task := env.CreateTask(t, bob.ID, db.NewTask{Title: "for alice", AssigneeID: &alice.ID})
	env.CreateTask(t, alice.ID, db.NewTask{Title: "mine", AssigneeID: &bob.ID})
	queries := map[string]string{
		"assignee's row":   `{ tasks(first: 5) { edges { node { id assignee { name } } } } }`,
		"assigned to me":   `{ tasks(first: 5, filter: {assignedToMe: true}) { edges { node { id owner { name } } } } }`,
		"notifications":    `{ me { unreadNotificationCount } }`,
		"a task by id":     `query($id: ID!) { task(id: $id) { id title } }`,
		"a fragment on an": `{ tasks(first: 5) { edges { node { ...T } } } } fragment T on Task { id assignee { id } }`,
	}
	vars := map[string]any{"id": globalid.Encode(globalid.KindTask, task.ID)}
	for name, q := range queries {
		rcRun(t, env, alice, q, vars)
		if _, stmts := rcRun(t, env, alice, q, vars); stmts == 0 {
			t.Errorf("%s: the repeat ran no SQL: served from the response cache, but it reads other users' data", name)
		}
	}
	// A rename of the assignee shows at once in the owner's list.
	q := queries["assignee's row"]
	rcRun(t, env, alice, q, nil)
	bob.Do(t, `mutation { updateMe(input: {name: "Robert"}) { user { id } } }`, nil).Decode(t, &struct{}{})
	if got, _ := rcRun(t, env, alice, q, nil); !strings.Contains(got, "Robert") {
		t.Fatalf("after Bob's rename Alice sees %s", got)
	}
}

// A cached answer is stored escaped and copied as it is: it must be byte for byte the answer the
// executed query gave, markup and line separators in the data included.
func TestResponseCacheAnswersAreTheExecutedBytes(t *testing.T) {
	rcEachSetup(t, func(t *testing.T, env *testsupport.Env) {
		u := env.Register(t, "Ada")
		env.CreateTask(t, u.ID, db.NewTask{Title: "a<b>&c \u2028 \u2029 \\ \"q\"", Tags: []string{"<t>"}})
		executed, stmts := rcRun(t, env, u, rcPage, map[string]any{"first": 5})
		if stmts == 0 {
			t.Fatal("first run sent no statement: it was not executed")
		}
		cached, stmts := rcRun(t, env, u, rcPage, map[string]any{"first": 5})
		if stmts != 0 {
			t.Fatalf("repeat sent %d statements, want it served from the cache", stmts)
		}
		if cached != executed {
			t.Fatalf("cached answer\n%s\nexecuted answer\n%s", cached, executed)
		}
		if !strings.Contains(executed, `a\u003cb\u003e\u0026c \u2028 \u2029`) {
			t.Fatalf("answer not escaped as json.Marshal escapes: %s", executed)
		}
	})
}

const rcTask = `query Task($id: ID!) { task(id: $id) { id title status owner { id name } } }`

// A task asked for by id is answered from the response cache until the task, its owner's profile or
// who may see it changes; the viewer who may not see it is never answered from it.
func TestResponseCacheServesTaskByIDUntilItChanges(t *testing.T) {
	rcEachSetup(t, func(t *testing.T, env *testsupport.Env) {
		alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
		task := env.CreateTask(t, alice.ID, db.NewTask{Title: "first"})
		vars := map[string]any{"id": globalid.Encode(globalid.KindTask, task.ID)}
		ask := func(u *testsupport.User) (data string, fromCache bool, code string) {
			t.Helper()
			before := responseCacheHits(t, env)
			res := u.Do(t, rcTask, vars)
			if len(res.Errors) > 0 {
				code, _ = res.Errors[0].Extensions["code"].(string)
			}
			return string(res.Data), responseCacheHits(t, env) > before, code
		}
		mutate := func(u *testsupport.User, query string, vars map[string]any) {
			t.Helper()
			if res := u.Do(t, query, vars); len(res.Errors) > 0 {
				t.Fatalf("%s: %+v", query, res.Errors)
			}
		}

		first, cached, _ := ask(alice)
		again, cachedAgain, _ := ask(alice)
		if cached || !cachedAgain || again != first || !strings.Contains(first, `"title":"first"`) {
			t.Fatalf("first from cache %v, repeat from cache %v, same %v: %s", cached, cachedAgain, again == first, first)
		}
		mutate(alice, `mutation($id: ID!) { updateTask(id: $id, input: {title: "second"}) { task { id } } }`, vars)
		if data, cached, _ := ask(alice); cached || !strings.Contains(data, `"title":"second"`) {
			t.Fatalf("after the title changed (from cache %v): %s", cached, data)
		}
		mutate(alice, `mutation { updateMe(input: {name: "Alicia"}) { user { id } } }`, nil)
		if data, cached, _ := ask(alice); cached || !strings.Contains(data, `"name":"Alicia"`) {
			t.Fatalf("after the owner's name changed (from cache %v): %s", cached, data)
		}
		// Bob may not see it: NOT_FOUND, every time, never stored.
		for range 2 {
			if _, cached, code := ask(bob); cached || code != "NOT_FOUND" {
				t.Fatalf("Bob: from cache %v, code %q; want NOT_FOUND, executed", cached, code)
			}
		}
		// Assigned to Bob, he sees it (and then from the cache); unassigned, he no longer does.
		mutate(alice, `mutation($id: ID!, $bob: ID!) { updateTask(id: $id, input: {assigneeId: $bob}) { task { id } } }`,
			map[string]any{"id": vars["id"], "bob": globalid.Encode(globalid.KindUser, bob.ID)})
		ask(bob)
		if data, cached, _ := ask(bob); !cached || !strings.Contains(data, `"title":"second"`) {
			t.Fatalf("Bob as assignee, repeated (from cache %v): %s", cached, data)
		}
		// The owner renames herself: Bob's stored answer names her old name.
		mutate(alice, `mutation { updateMe(input: {name: "Ali"}) { user { id } } }`, nil)
		if data, cached, _ := ask(bob); cached || !strings.Contains(data, `"name":"Ali"`) {
			t.Fatalf("Bob after the owner's name changed (from cache %v): %s", cached, data)
		}
		mutate(alice, `mutation($id: ID!) { updateTask(id: $id, input: {assigneeId: null}) { task { id } } }`, vars)
		if _, cached, code := ask(bob); cached || code != "NOT_FOUND" {
			t.Fatalf("Bob after unassignment: from cache %v, code %q; want NOT_FOUND", cached, code)
		}
		// The assignee's row is not one the answer is stored under: asking for it executes.
		for range 2 {
			before := responseCacheHits(t, env)
			if res := alice.Do(t, `query($id: ID!) { task(id: $id) { id assignee { name } } }`, vars); len(res.Errors) > 0 {
				t.Fatalf("assignee: %+v", res.Errors)
			}
			if responseCacheHits(t, env) > before {
				t.Fatal("a task with its assignee was answered from the response cache")
			}
		}
		mutate(alice, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, vars)
		if _, cached, code := ask(alice); cached || code != "NOT_FOUND" {
			t.Fatalf("after deletion: from cache %v, code %q; want NOT_FOUND", cached, code)
		}
	})
}

// responseCacheHits is the response cache's hit counter, from /metrics.
func responseCacheHits(t *testing.T, env *testsupport.Env) float64 {
	t.Helper()
	const prefix = `taskgraph_response_cache_requests_total{result="hit"} `
	for _, line := range env.MetricLines(t) {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return n
		}
	}
	t.Fatal("no response cache hit counter in /metrics")
	return 0
}
