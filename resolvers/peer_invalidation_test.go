package resolvers_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// Two instances without Redis each cache in their own memory. A write on one must reach the other's
// cache at once (not after the 5-minute TTL): task rows, and sessions, so that a logout on one
// instance ends the token on every instance. When the bus may have lost events, the whole cache is
// emptied.
func TestInProcessCachesHearOtherInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	a := testsupport.NewEnv(t, nil)
	b := testsupport.NewEnvOn(t, a.DB, nil)
	for _, e := range []*testsupport.Env{a, b} {
		if !e.App.Cache.Local() {
			t.Fatal("the test needs in-process caches (no REDIS_URL)")
		}
		e.WaitEventsReady(t)
	}
	st := newSharedTask(t, a, b)
	onA, onB, gid, title := st.OnA, st.OnB, st.GlobalID, st.Title
	eventually := func(what string, ok func() bool) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, what, ok)
	}

	// B caches the task; A renames it.
	if got := title(onB); got != "first" {
		t.Fatalf("B reads %q", got)
	}
	onA.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {title: "second"}) { task { id } } }`, map[string]any{"id": gid})
	eventually("B sees A's rename", func() bool { return title(onB) == "second" })

	// A change that no invalidation announced (as if its event were lost), then B's listener
	// reconnects: B cannot know what it missed, so it empties its cache. First B caches the row
	// again: the rename's tombstone keeps fills out for its 2 s.
	time.Sleep(2500 * time.Millisecond)
	title(onB)
	if _, err := a.DB.Pool.Exec(context.Background(), `UPDATE tasks SET title = 'third' WHERE id = $1`, st.ID); err != nil {
		t.Fatal(err)
	}
	if got := title(onB); got != "second" {
		t.Fatalf("B reads %q before the gap, want its cached second (is the task cached at all?)", got)
	}
	a.DB.CutEventListeners(t, 2)
	eventually("B reads the database again after the gap", func() bool { return title(onB) == "third" })

	// Logout through A: B stops accepting the token (its session was cached).
	if got := title(onB); got != "third" {
		t.Fatalf("B reads %q", got)
	}
	if res := onA.Do(t, `mutation { logout { ok } }`, nil); len(res.Errors) > 0 {
		t.Fatalf("logout: %+v", res.Errors)
	}
	eventually("B refuses the signed-out token", func() bool {
		res := onB.Do(t, `query($id: ID!) { task(id: $id) { title } }`, map[string]any{"id": gid})
		return slices.Contains(res.Codes(), "UNAUTHENTICATED")
	})
}
