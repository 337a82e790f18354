package server_test

// Events say what happened: the write records its kind, and subscribers receive exactly the
// committed sequence per task, however fast the writes come; one change costs an instance at most
// one read, shared by all its subscribers, and a change that concerns none of them costs nothing.

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func TestTaskChangedDeliversTheCommittedSequence(t *testing.T) {
	a, b := liveSetup(t, nil)
	u := a.Register(t, "Ada")
	ws := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token})
	ws.MustAck()
	ws.Subscribe("s", `subscription { taskChanged { kind deletedTaskId task { id title } } }`, nil)
	testenv.WaitFor(t, 5*time.Second, "the subscription to be registered", func() bool { return a.App.Feed.Watchers() == 1 })

	// Writes go through instance B, back to back, each answered before the next is sent.
	const rounds = 100
	on := &testsupport.Client{Env: b, Token: u.Token}
	want := make([]string, 0, 3*rounds)
	for i := range rounds {
		var created struct {
			CreateTask struct{ Task struct{ ID string } }
		}
		on.Do(t, `mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }`,
			map[string]any{"t": fmt.Sprintf("round %d", i)}).Decode(t, &created)
		id := created.CreateTask.Task.ID
		on.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {status: DONE}) { task { id } } }`,
			map[string]any{"id": id}).Decode(t, &struct{}{})
		on.Do(t, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": id}).Decode(t, &struct{}{})
		want = append(want, "CREATED "+id, "UPDATED "+id, "DELETED "+id)
	}

	got := make([]string, 0, len(want))
	for len(got) < len(want) {
		m, ok := ws.Next(10 * time.Second)
		if !ok {
			t.Fatalf("after %d of %d events, nothing more within 10s", len(got), len(want))
		}
		var p struct {
			Data struct {
				TaskChanged struct {
					Kind          string
					DeletedTaskID *string
					Task          *struct{ ID string }
				}
			}
		}
		if m.Type != "next" || json.Unmarshal(m.Payload, &p) != nil {
			t.Fatalf("unexpected %s %s", m.Type, m.Payload)
		}
		ev := p.Data.TaskChanged
		switch {
		case ev.Kind == "DELETED" && ev.DeletedTaskID != nil:
			got = append(got, "DELETED "+*ev.DeletedTaskID)
		case ev.Task != nil:
			got = append(got, ev.Kind+" "+ev.Task.ID)
		default:
			t.Fatalf("event %d is %s with no task: the sequence was lost", len(got), ev.Kind)
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d is %q, want %q (CREATED, UPDATED, DELETED per round, in order)", i, got[i], want[i])
		}
	}
}

func TestUnrelatedWriteCostsSubscribersNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: 30 websockets on a whole server")
	}
	a := testsupport.NewEnv(t, map[string]string{"LIVE_CONNECTIONS_PER_USER": "30", "SUBSCRIPTIONS_PER_CONNECTION": "10"})
	a.WaitEventsReady(t)
	watcher, writer := a.Register(t, "Watcher"), a.Register(t, "Writer")
	for c := range 30 {
		ws := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + watcher.Token})
		ws.MustAck()
		for s := range 10 {
			ws.Subscribe(fmt.Sprintf("%d-%d", c, s), `subscription { taskChanged { kind task { id } } }`, nil)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "300 subscriptions", func() bool { return a.App.Feed.Watchers() == 300 })
	// The writer's session is in the cache now, as it is for any active user.
	writer.Do(t, `{ me { id } }`, nil).Decode(t, &struct{}{})

	events, loads := a.App.Feed.Events(), a.App.Feed.Loads()
	before := a.DB.Counter.Count()
	writer.Do(t, `mutation { createTask(input: {title: "mine"}) { task { id } } }`, nil).Decode(t, &struct{}{})
	testenv.WaitFor(t, 5*time.Second, "the instance's feed to handle the write's event", func() bool {
		return a.App.Feed.Events() > events
	})
	statements := a.DB.Counter.Count() - before
	if statements > 3 || a.App.Feed.Loads() != loads {
		t.Fatalf("one unrelated write with 300 subscriptions open cost %d statements and %d change loads; want at most 3 and none:\n%v",
			statements, a.App.Feed.Loads()-loads, a.DB.Counter.Recent(int(statements)))
	}
	t.Logf("one unrelated write, 300 subscriptions: %d statements, %d change loads", statements, a.App.Feed.Loads()-loads)

	// The same write by the watcher themself costs one shared load for all 300.
	loads = a.App.Feed.Loads()
	watcher.Do(t, `mutation { createTask(input: {title: "watched"}) { task { id } } }`, nil).Decode(t, &struct{}{})
	testenv.WaitFor(t, 5*time.Second, "the feed to load the change", func() bool { return a.App.Feed.Loads() > loads })
	testenv.WaitFor(t, 5*time.Second, "the feed to settle", func() bool { return a.App.Feed.Events() >= events+2 })
	if n := a.App.Feed.Loads() - loads; n != 1 {
		t.Fatalf("a related write cost %d change loads, want 1 for all 300 subscriptions", n)
	}
}
