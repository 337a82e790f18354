package resolvers_test

import (
	"slices"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// nearWindow is how long another instance may still answer from its near cache after a write: the
// time the write's invalidate event takes to arrive (milliseconds), bounded well below the near
// cache's entry life (30 s) so that a missing invalidation fails the test rather than expiring.
const nearWindow = 2500 * time.Millisecond

// Two instances sharing Redis each keep a near cache in front of it. The writer's own near cache
// drops what a write changed before the write answers; the other instance's drops it when the
// write's invalidate event arrives; a gap in the events empties it.
func TestNearCachesFollowWritesOnOtherInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances and Redis")
	}
	env := map[string]string{"REDIS_URL": testenv.RedisURL(0), "CACHE_NEAR_MAX_ENTRIES": "1000"}
	a := testsupport.NewEnv(t, env)
	b := testsupport.NewEnvOn(t, a.DB, env)
	for _, e := range []*testsupport.Env{a, b} {
		if e.App.Cache == nil || e.App.Cache.Local() {
			t.Fatal("the test needs Redis-backed caches")
		}
		e.WaitEventsReady(t)
		// A near cache answers only under its lease, which starts with its first ping's round trip.
		testenv.WaitFor(t, 10*time.Second, "the near cache serves", e.App.Cache.NearServing)
	}
	st := newSharedTask(t, a, b)
	onA, onB, gid, title := st.OnA, st.OnB, st.GlobalID, st.Title
	rename := func(c *testsupport.Client, to string) {
		t.Helper()
		if res := c.Do(t, `mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { task { id } } }`,
			map[string]any{"id": gid, "t": to}); len(res.Errors) > 0 {
			t.Fatalf("rename: %+v", res.Errors)
		}
	}
	nearHits := func(e *testsupport.Env) int64 { return e.App.Cache.Stats().NearHits }

	// B reads the task twice: the second read is answered by B's near cache.
	if got := title(onB); got != "first" {
		t.Fatalf("B reads %q", got)
	}
	before := nearHits(b)
	if got := title(onB); got != "first" {
		t.Fatalf("B reads %q", got)
	}
	if nearHits(b) == before {
		t.Fatal("B's second read did not come from its near cache: the test would prove nothing")
	}

	// A renames it: B's near cache drops the row when A's event arrives.
	rename(onA, "second")
	start := time.Now()
	testenv.WaitFor(t, nearWindow, "B sees A's rename", func() bool { return title(onB) == "second" })
	t.Logf("B saw A's rename after %v", time.Since(start))

	// The writer's own near cache: A caches the row, renames it, and its very next read sees it.
	title(onA)
	title(onA)
	rename(onA, "third")
	if got := title(onA); got != "third" {
		t.Fatalf("A reads %q right after its own rename", got)
	}
	testenv.WaitFor(t, nearWindow, "B sees A's second rename", func() bool { return title(onB) == "third" })

	// B's listener reconnects (events may have been lost): B empties its near cache, so its next
	// read goes to Redis.
	title(onB)
	b.DB.CutEventListeners(t, 2)
	testenv.WaitFor(t, 10*time.Second, "B's near cache emptied after the gap", func() bool {
		before := nearHits(b)
		title(onB)
		return nearHits(b) == before
	})

	// Logout through A: B stops accepting the token (its session was in B's near cache).
	title(onB)
	title(onB)
	if res := onA.Do(t, `mutation { logout { ok } }`, nil); len(res.Errors) > 0 {
		t.Fatalf("logout: %+v", res.Errors)
	}
	testenv.WaitFor(t, nearWindow, "B refuses the signed-out token", func() bool {
		res := onB.Do(t, `query($id: ID!) { task(id: $id) { title } }`, map[string]any{"id": gid})
		return slices.Contains(res.Codes(), "UNAUTHENTICATED")
	})
}

// With the near cache on (the default with Redis), a write answers only once no other instance can
// answer from its near cache what the write changed: every instance acknowledges the invalidation,
// or its lease runs out. An instance that stops processing its subscription (hung, cut off) stops
// serving its near cache, so the write, after waiting out its lease, is still seen at once.
func TestNearCacheWritesAreSeenAtOnceByEveryInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances and Redis")
	}
	env := map[string]string{"REDIS_URL": testenv.RedisURL(0)} // the default near cache
	a := testsupport.NewEnv(t, env)
	b := testsupport.NewEnvOn(t, a.DB, env)
	for _, e := range []*testsupport.Env{a, b} {
		testenv.WaitFor(t, 10*time.Second, "the near cache serves", e.App.Cache.NearServing)
	}
	st := newSharedTask(t, a, b)
	onA, onB, gid, title := st.OnA, st.OnB, st.GlobalID, st.Title
	rename := func(c *testsupport.Client, to string) time.Duration {
		t.Helper()
		start := time.Now()
		if res := c.Do(t, `mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { task { id } } }`,
			map[string]any{"id": gid, "t": to}); len(res.Errors) > 0 {
			t.Fatalf("rename: %+v", res.Errors)
		}
		return time.Since(start)
	}
	nearHits := func(e *testsupport.Env) int64 { return e.App.Cache.Stats().NearHits }
	warm := func(want string) {
		t.Helper()
		// Past the tombstones of the last write (2 s), B's reads fill its near cache again.
		testenv.WaitFor(t, 10*time.Second, "B answers from its near cache", func() bool {
			before := nearHits(b)
			if got := title(onB); got != want {
				t.Fatalf("B reads %q, want %q", got, want)
			}
			return nearHits(b) > before
		})
	}

	warm("first")
	took := rename(onA, "second")
	if got := title(onB); got != "second" {
		t.Fatalf("B reads %q right after A's rename answered", got)
	}
	t.Logf("rename with B acknowledging: %v", took)

	// B hangs: it stops processing its subscription. Its lease runs out; A's write waits for that.
	warm("second")
	b.App.Cache.PauseNearSync(true)
	took = rename(onA, "third")
	if got := title(onB); got != "third" {
		t.Fatalf("B (hung subscription) reads %q right after A's rename answered", got)
	}
	if b.App.Cache.NearServing() {
		t.Fatal("B's near cache still serves with its subscription hung")
	}
	t.Logf("rename with B hung: %v", took)
	before := nearHits(b)
	title(onB)
	if nearHits(b) != before {
		t.Fatal("B answered from its near cache with its subscription hung")
	}

	// B recovers: its near cache serves again (emptied meanwhile? it missed nothing, but may have).
	b.App.Cache.PauseNearSync(false)
	testenv.WaitFor(t, 10*time.Second, "B's near cache serves again", b.App.Cache.NearServing)
	warm("third")
	rename(onA, "fourth")
	if got := title(onB); got != "fourth" {
		t.Fatalf("B reads %q right after A's rename answered, after recovering", got)
	}
}
