package resolvers_test

// Tests of the read cache through the real HTTP handler: several instances sharing Redis, Redis
// failing (refusing or hanging), Redis coming back after lost invalidations, and users never seeing
// each other's cached rows.
//
// Isolation: Build always uses the key prefix "taskgraph:cache:", so each test that uses Redis gets
// its own logical database (caRedisDB), flushed when the test starts and ends. Numbers in use here:
// 8..14 (internal/bench flushes 15, internal/ratelimit uses 0 with its own prefixes).

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// caRedisDB empties Redis logical database n for this test (now and when it ends) and returns its URL.
func caRedisDB(t *testing.T, n int) string { return testenv.FlushedRedisDB(t, n) }

const (
	caReadQuery = `query($id: ID!) {
  task(id: $id) { id title status version }
  me { id name taskCounts { total todo inProgress done } }
}`
	caTaskQuery   = `query($id: ID!) { task(id: $id) { id title status version } }`
	caMeQuery     = `{ me { id name taskCounts { total todo inProgress done } } }`
	caCreateTask  = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id title version } } }`
	caUpdateTask  = `mutation($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { task { id title version } } }`
	caDeleteTask  = `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`
	caUpdateMe    = `mutation($name: String!) { updateMe(input: {name: $name}) { user { id name } } }`
	caLogin       = `mutation($input: LoginInput!) { login(input: $input) { accessToken } }`
	caLogout      = `mutation { logout { ok } }`
	caNodeQuery   = `query($id: ID!) { node(id: $id) { id ... on Task { title } } }`
	caNodesQuery  = `query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Task { title } } }`
	caForeignUser = `query($id: ID!) { node(id: $id) { id ... on User { name email } } }`
)

type caCounts struct{ Total, Todo, InProgress, Done int }

type caTask struct {
	ID, Title, Status string
	Version           int
}

type caMe struct {
	ID, Name   string
	TaskCounts caCounts
}

type caView struct {
	Task caTask
	Me   caMe
}

// caOn is u signed in with the same token but talking to another instance.
func caOn(env *testsupport.Env, u *testsupport.User) *testsupport.User {
	c := *u
	c.Client = &testsupport.Client{Env: env, Token: u.Token}
	return &c
}

func caRead(t *testing.T, u *testsupport.User, taskID string) caView {
	t.Helper()
	var v caView
	u.Do(t, caReadQuery, map[string]any{"id": taskID}).Decode(t, &v)
	return v
}

func caCreate(t *testing.T, u *testsupport.User, title string) caTask {
	t.Helper()
	var data struct{ CreateTask struct{ Task caTask } }
	u.Do(t, caCreateTask, map[string]any{"input": map[string]any{"title": title}}).Decode(t, &data)
	return data.CreateTask.Task
}

func caUpdate(t *testing.T, u *testsupport.User, id string, input map[string]any) caTask {
	t.Helper()
	var data struct{ UpdateTask struct{ Task caTask } }
	u.Do(t, caUpdateTask, map[string]any{"id": id, "input": input}).Decode(t, &data)
	return data.UpdateTask.Task
}

// caSeed inserts a task for u with SQL, behind the cache's back: unlike a write through the API it
// leaves no tombstones, so the user's counts can be cached right away (an invalidated entry is not
// refilled for the tombstone's lifetime, 2 s). The user is new, so nothing stale is cached for it.
func caSeed(t *testing.T, env *testsupport.Env, u *testsupport.User, title string) caTask {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	env.Exec(t, `INSERT INTO tasks (id, owner_id, title, status, priority, tags) VALUES ($1, $2, $3, 'TODO', 1, '{}')`, id, u.ID, title)
	return caTask{ID: globalid.Encode(globalid.KindTask, id), Title: title, Status: "TODO", Version: 1}
}

// caEntitySQL runs fn and returns the statements it sent that read users, tasks or sessions: what the
// cache exists to save. None means the request was answered from the cache (plus, possibly, SQL
// that the cache does not cover). Statements of every instance on env's database are counted, so
// only one instance may be serving while fn runs.
func caEntitySQL(env *testsupport.Env, fn func()) []string {
	before := env.DB.Counter.Count()
	fn()
	var out []string
	for _, s := range env.DB.Counter.Recent(int(env.DB.Counter.Count() - before)) {
		if strings.Contains(s, "FROM tasks") || strings.Contains(s, "FROM users") || strings.Contains(s, "FROM sessions") {
			out = append(out, s)
		}
	}
	return out
}

// caWarm reads taskID and me through u twice and checks that the second read came from the cache,
// so a later fresh answer proves an invalidation rather than an empty cache.
func caWarm(t *testing.T, env *testsupport.Env, u *testsupport.User, taskID string) caView {
	t.Helper()
	first := caRead(t, u, taskID)
	var second caView
	if sql := caEntitySQL(env, func() { second = caRead(t, u, taskID) }); len(sql) > 0 {
		t.Fatalf("warm read still queried PostgreSQL: %q", sql)
	}
	if second != first {
		t.Fatalf("cached read %+v differs from the first read %+v", second, first)
	}
	return second
}

// caOneError checks that res failed with exactly one error, of code.
func caOneError(t *testing.T, res testsupport.Response, code string) {
	t.Helper()
	if len(res.Errors) != 1 || res.Errors[0].Code() != code {
		t.Fatalf("errors = %+v, want one %s", res.Errors, code)
	}
}

// TestCacheInstancesSeeEachOthersWrites: two instances on one database and one Redis. Whatever
// instance B writes, instance A (warm) answers with the new values next. Each write gets its own
// user and task, warmed on A just before, because an invalidated entry is not refilled for the
// tombstone's lifetime.
func TestCacheInstancesSeeEachOthersWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: several instances over Redis, with faults")
	}
	t.Parallel()
	url := caRedisDB(t, 9)
	a := testsupport.NewEnv(t, map[string]string{"REDIS_URL": url})
	b := testsupport.NewEnvOn(t, a.DB, map[string]string{"REDIS_URL": url})

	setup := func(t *testing.T, name string) (onA, onB *testsupport.User, task caTask, warm caView) {
		onA = a.Register(t, name)
		onB = caOn(b, onA)
		task = caSeed(t, a, onA, name+"'s task")
		warm = caWarm(t, a, onA, task.ID)
		if warm.Task.Title != name+"'s task" || warm.Task.Version != 1 || warm.Me.TaskCounts != (caCounts{Total: 1, Todo: 1}) {
			t.Fatalf("warm read = %+v", warm)
		}
		return onA, onB, task, warm
	}

	t.Run("updateTask", func(t *testing.T) {
		onA, onB, task, _ := setup(t, "Ada")
		caUpdate(t, onB, task.ID, map[string]any{"title": "renamed on B", "status": "DONE"})
		got := caRead(t, onA, task.ID)
		want := caTask{ID: task.ID, Title: "renamed on B", Status: "DONE", Version: 2}
		if got.Task != want || got.Me.TaskCounts != (caCounts{Total: 1, Done: 1}) {
			t.Fatalf("A read %+v / %+v after B's update, want %+v with counts {1 0 0 1}", got.Task, got.Me.TaskCounts, want)
		}
	})
	t.Run("createTask", func(t *testing.T) {
		onA, onB, task, warm := setup(t, "Bea")
		caCreate(t, onB, "created on B")
		got := caRead(t, onA, task.ID)
		if got.Task != warm.Task || got.Me.TaskCounts != (caCounts{Total: 2, Todo: 2}) {
			t.Fatalf("A read %+v / %+v after B's create, want the same task and counts {2 2 0 0}", got.Task, got.Me.TaskCounts)
		}
	})
	t.Run("updateMe", func(t *testing.T) {
		onA, onB, task, _ := setup(t, "Cid")
		var data struct {
			UpdateMe struct{ User struct{ Name string } }
		}
		onB.Do(t, caUpdateMe, map[string]any{"name": "Cid Renamed"}).Decode(t, &data)
		if got := caRead(t, onA, task.ID); got.Me.Name != "Cid Renamed" {
			t.Fatalf("A read name %q after B's updateMe, want Cid Renamed", got.Me.Name)
		}
	})
	t.Run("deleteTask", func(t *testing.T) {
		onA, onB, task, _ := setup(t, "Dov")
		onB.Do(t, caDeleteTask, map[string]any{"id": task.ID}).Decode(t, &struct{}{})
		caOneError(t, onA.Do(t, caTaskQuery, map[string]any{"id": task.ID}), "NOT_FOUND")
		var me struct{ Me caMe }
		onA.Do(t, caMeQuery, nil).Decode(t, &me)
		if me.Me.TaskCounts != (caCounts{}) {
			t.Fatalf("A read counts %+v after B deleted the only task, want zeros", me.Me.TaskCounts)
		}
	})
}

// caMaxRequest bounds one request while Redis is failing. Each Redis call is capped at 150 ms (the
// cache's callBudget, the rate limiter's primaryBudget) and each breaker opens after 3 consecutive
// failures, so the first request of an outage pays a few capped calls (0.4-0.65 s observed, also
// under -race) and later ones ~1 ms. 1 s leaves room for a loaded machine, and still fails if a call
// escapes its cap (go-redis' own retries make one call 0.4-1.1 s, several in a request > 1 s).
const caMaxRequest = time.Second

// caTimed runs one request and fails if it took longer than caMaxRequest.
func caTimed(t *testing.T, what string, fn func()) time.Duration {
	t.Helper()
	start := time.Now()
	fn()
	d := time.Since(start)
	if d > caMaxRequest {
		t.Errorf("%s took %v with Redis failing, want < %v", what, d, caMaxRequest)
	}
	return d
}

// TestCacheRedisFailingAnswersFromPostgres: with Redis refusing connections or hanging, from the
// start or after the cache was warm, every request still answers correctly (from PostgreSQL), the
// cache counts the faults, and no request waits long.
func TestCacheRedisFailingAnswersFromPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: several instances over Redis, with faults")
	}
	t.Parallel()
	for i, tc := range []struct {
		name      string
		mode      testsupport.ProxyMode
		fromStart bool
	}{
		{"refused from start", testsupport.Refuse, true},
		{"refused after warm-up", testsupport.Refuse, false},
		{"hanging from start", testsupport.Blackhole, true},
		{"hanging after warm-up", testsupport.Blackhole, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := 10 + i
			caRedisDB(t, n)
			proxy := testsupport.NewProxy(t, testenv.RedisAddr())
			if tc.fromStart {
				proxy.Set(tc.mode)
			}
			env := testsupport.NewEnv(t, map[string]string{"REDIS_URL": fmt.Sprintf("redis://%s/%d", proxy.Addr(), n)})
			u := env.Register(t, "Ada")
			task := caSeed(t, env, u, "v0")
			if !tc.fromStart {
				caWarm(t, env, u, task.ID)
				proxy.Set(tc.mode)
			}
			faults := env.App.Cache.Stats().Faults

			var slowest time.Duration
			for step := 1; step <= 4; step++ {
				title := fmt.Sprintf("v%d", step)
				slowest = max(slowest, caTimed(t, "updateTask", func() {
					if got := caUpdate(t, u, task.ID, map[string]any{"title": title}); got.Title != title || got.Version != step+1 {
						t.Fatalf("update answered %+v, want %s at version %d", got, title, step+1)
					}
				}))
				if step == 2 {
					slowest = max(slowest, caTimed(t, "createTask", func() { caCreate(t, u, "another") }))
				}
				for range 2 {
					slowest = max(slowest, caTimed(t, "read", func() {
						got := caRead(t, u, task.ID)
						wantCounts := caCounts{Total: 1, Todo: 1}
						if step >= 2 {
							wantCounts = caCounts{Total: 2, Todo: 2}
						}
						if got.Task.Title != title || got.Task.Version != step+1 || got.Me.TaskCounts != wantCounts || got.Me.Name != "Ada" {
							t.Fatalf("read %+v, want %s at version %d and counts %+v", got, title, step+1, wantCounts)
						}
					}))
				}
			}
			after := env.App.Cache.Stats().Faults
			t.Logf("slowest request %v; cache faults %d -> %d", slowest, faults, after)
			if t.Failed() {
				t.Log(env.Logs.String())
			}
			if after <= faults {
				t.Fatalf("cache faults %d -> %d while Redis was failing, want them to grow", faults, after)
			}
		})
	}
}

// TestCacheNoStaleValueAfterRedisReturns: an update (and a logout) whose invalidation could not reach
// Redis must never be undone by the old cached rows once Redis is back: not on the instance that lost
// the invalidation, and not on another instance once the first has retired the cache.
//
// The second instance is checked only after the first has shown that it trusts Redis again (it
// retires the cache before doing so). Before that, the second instance can still serve the old rows:
// only the first knows an invalidation was lost, and it retires the cache only on its own next request
// once its breaker lets a call through (after a 2 s cool-down if the outage opened it). If the first
// instance gets no traffic, or dies, the second serves the old rows until their TTL (up to 5 min).
func TestCacheNoStaleValueAfterRedisReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: several instances over Redis, with faults")
	}
	t.Parallel()
	const n = 14
	caRedisDB(t, n)
	proxy := testsupport.NewProxy(t, testenv.RedisAddr())
	url := fmt.Sprintf("redis://%s/%d", proxy.Addr(), n) // Redis as both instances see it
	a := testsupport.NewEnv(t, map[string]string{"REDIS_URL": url})
	b := testsupport.NewEnvOn(t, a.DB, map[string]string{"REDIS_URL": url})

	onA := a.Register(t, "Ada")
	onB := caOn(b, onA)
	task := caSeed(t, a, onA, "before the outage")
	var login struct{ Login struct{ AccessToken string } }
	a.Anonymous().Do(t, caLogin, map[string]any{"input": map[string]any{"email": onA.Email, "password": onA.Password}}).Decode(t, &login)
	second := &testsupport.Client{Env: a, Token: login.Login.AccessToken} // a second session, to log out
	secondOnB := &testsupport.Client{Env: b, Token: login.Login.AccessToken}

	caWarm(t, a, onA, task.ID)
	caWarm(t, b, onB, task.ID)
	for _, c := range []*testsupport.Client{second, secondOnB, second, secondOnB} { // cache the second session
		c.Do(t, caMeQuery, nil).Decode(t, &struct{}{})
	}

	proxy.Set(testsupport.Refuse)
	faults := a.App.Cache.Stats().Faults
	if got := caUpdate(t, onA, task.ID, map[string]any{"title": "during the outage"}); got.Version != 2 {
		t.Fatalf("update during the outage = %+v", got)
	}
	second.Do(t, caLogout, nil).Decode(t, &struct{}{})
	if a.App.Cache.Stats().Faults <= faults {
		t.Fatal("no cache fault on A: the invalidations were not lost, so this test proves nothing")
	}
	if got := caRead(t, onA, task.ID); got.Task.Title != "during the outage" {
		t.Fatalf("A read %q during the outage, want the new title", got.Task.Title)
	}

	proxy.Set(testsupport.Forward)
	// A, which lost the invalidations, never serves the old rows: it reads around Redis until it has
	// retired the cache. Read through A until it answers from the cache again (after its breaker's
	// cool-down, 2 s, if the outage opened it); every answer must be the new one.
	deadline := time.Now().Add(10 * time.Second)
	for reads := 1; ; reads++ {
		var got caView
		sql := caEntitySQL(a, func() { got = caRead(t, onA, task.ID) })
		if got.Task.Title != "during the outage" || got.Task.Version != 2 {
			t.Fatalf("A read %+v after Redis returned (read %d), want the new title at version 2", got.Task, reads)
		}
		if len(sql) == 0 {
			t.Logf("A trusts Redis again after %d reads", reads)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A still reads around Redis after %d reads", reads)
		}
		time.Sleep(50 * time.Millisecond) // polling for the breaker to let a call through; not asserted
	}
	caOneError(t, second.Do(t, caMeQuery, nil), "UNAUTHENTICATED")

	// B lost nothing and was warm with the old rows; A's retire hides them from B too.
	if got := caRead(t, onB, task.ID); got.Task.Title != "during the outage" || got.Task.Version != 2 {
		t.Fatalf("B read %+v after A recovered, want the new title at version 2 (old cached row served)", got.Task)
	}
	caOneError(t, secondOnB.Do(t, caMeQuery, nil), "UNAUTHENTICATED")

	// And after the retire, writes through B reach what A reads (A is warm again in the new epoch).
	caWarm(t, a, onA, task.ID)
	caUpdate(t, onB, task.ID, map[string]any{"title": "after the outage"})
	if got := caRead(t, onA, task.ID); got.Task.Title != "after the outage" || got.Task.Version != 3 {
		t.Fatalf("A read %+v after B's update, want the newest title at version 3", got.Task)
	}
}

// TestCacheDoesNotLeakAcrossUsers: the cache holds rows, not permissions. Another user asking for a
// cached task by id gets NOT_FOUND exactly as for a task that does not exist, through every entry
// point, and cannot write it; with the in-process cache and with Redis.
func TestCacheDoesNotLeakAcrossUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: several instances over Redis, with faults")
	}
	t.Parallel()
	for _, backend := range []struct {
		name string
		env  func(t *testing.T) map[string]string
	}{
		{"local", func(*testing.T) map[string]string { return nil }},
		{"redis", func(t *testing.T) map[string]string { return map[string]string{"REDIS_URL": caRedisDB(t, 8)} }},
	} {
		t.Run(backend.name, func(t *testing.T) {
			t.Parallel()
			env := testsupport.NewEnv(t, backend.env(t))
			alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
			task := caSeed(t, env, alice, "alice's secret")
			caWarm(t, env, alice, task.ID) // alice's task, user and counts are now cached
			missing := caCreate(t, bob, "soon gone")
			bob.Do(t, caDeleteTask, map[string]any{"id": missing.ID}).Decode(t, &struct{}{})

			same := func(what string, query string, vars func(id string) map[string]any) {
				t.Helper()
				foreign, gone := bob.Do(t, query, vars(task.ID)), bob.Do(t, query, vars(missing.ID))
				if len(foreign.Errors) != 1 || foreign.Errors[0].Code() != "NOT_FOUND" {
					t.Fatalf("%s of alice's cached task as bob: errors %+v data %s, want NOT_FOUND", what, foreign.Errors, foreign.Data)
				}
				if strings.Contains(string(foreign.Data), "secret") {
					t.Fatalf("%s leaked alice's task: %s", what, foreign.Data)
				}
				if foreign.Errors[0].Message != gone.Errors[0].Message || string(foreign.Data) != string(gone.Data) {
					t.Fatalf("%s: alice's task answers %q / %s, a missing one %q / %s; want the same",
						what, foreign.Errors[0].Message, foreign.Data, gone.Errors[0].Message, gone.Data)
				}
			}
			byID := func(id string) map[string]any { return map[string]any{"id": id} }
			same("task", caTaskQuery, byID)
			same("node", caNodeQuery, byID)
			same("nodes", caNodesQuery, func(id string) map[string]any { return map[string]any{"ids": []string{id}} })
			same("updateTask", caUpdateTask, func(id string) map[string]any {
				return map[string]any{"id": id, "input": map[string]any{"title": "bob was here"}}
			})
			same("deleteTask", caDeleteTask, byID)

			// Alice's cached user is public only in part.
			var user struct{ Node struct{ Name, Email *string } }
			bob.Do(t, caForeignUser, map[string]any{"id": alice.GlobalID}).Decode(t, &user)
			if user.Node.Email != nil {
				t.Fatalf("bob sees alice's email %q", *user.Node.Email)
			}

			// Bob's attempts changed nothing, and alice still reads her task (from the cache).
			got := caRead(t, alice, task.ID)
			if got.Task.Title != "alice's secret" || got.Task.Version != 1 || got.Me.TaskCounts != (caCounts{Total: 1, Todo: 1}) {
				t.Fatalf("alice reads %+v after bob's attempts", got)
			}
			var me struct{ Me caMe }
			bob.Do(t, caMeQuery, nil).Decode(t, &me)
			if me.Me.Name != "Bob" || me.Me.TaskCounts != (caCounts{}) {
				t.Fatalf("bob's me = %+v, want Bob with no tasks", me.Me)
			}
		})
	}
}
