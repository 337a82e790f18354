package events_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.ReleaseDatabases()
	os.Exit(code)
}

// runBus starts a bus with its listener on a fresh database and waits until it listens.
func runBus(t *testing.T) (*events.Bus, *testsupport.Database) {
	t.Helper()
	database := testsupport.NewDatabase(t)
	bus := events.New(database.Pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bus.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-bus.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("listener never became ready")
	}
	return bus, database
}

func waitGap(t *testing.T, sub *events.Subscription, within time.Duration) bool {
	t.Helper()
	select {
	case <-sub.Gaps:
		return true
	case <-time.After(within):
		return false
	}
}

func TestFullBufferIsAGap(t *testing.T) {
	bus, _ := runBus(t)
	user := uuid.New()
	sub := bus.Subscribe(func(ev events.Event) bool { return ev.HasUser(user) }, 1)
	defer sub.Close()
	other := bus.Subscribe(func(ev events.Event) bool { return ev.HasUser(user) }, 10)
	defer other.Close()

	ctx := context.Background()
	for range 3 {
		bus.Publish(ctx, events.Event{Kind: events.KindNotification, UserIDs: []uuid.UUID{user}})
	}
	// The roomy subscriber hears all three and has no gap; the one with a buffer of 1 hears the
	// first and is told it missed some.
	for i := range 3 {
		select {
		case <-other.C:
		case <-time.After(5 * time.Second):
			t.Fatalf("roomy subscriber got %d of 3 events", i)
		}
	}
	if !waitGap(t, sub, 5*time.Second) {
		t.Fatal("no gap signalled to the subscriber whose buffer was full")
	}
	if ev := <-sub.C; !ev.HasUser(user) {
		t.Errorf("buffered event %+v", ev)
	}
	if bus.Dropped() != 2 {
		t.Errorf("Dropped() = %d, want 2", bus.Dropped())
	}
	if waitGap(t, other, 100*time.Millisecond) {
		t.Error("the subscriber that missed nothing was told of a gap")
	}
}

func TestListenerReconnectIsAGap(t *testing.T) {
	bus, database := runBus(t)
	sub := bus.Subscribe(nil, 0)
	defer sub.Close()
	if waitGap(t, sub, 200*time.Millisecond) {
		t.Fatal("gap signalled before anything was lost")
	}
	// Cut the listener's connection, as a PostgreSQL restart or a network fault would.
	ctx := context.Background()
	database.CutEventListeners(t, 1)
	if !waitGap(t, sub, 10*time.Second) {
		t.Fatal("no gap signalled after the listener reconnected")
	}
	if _, reconnects := bus.Stats(); reconnects != 1 {
		t.Errorf("Stats reports %d reconnects, want 1", reconnects)
	}
	// Listening again: events flow as before.
	user := uuid.New()
	deadline := time.Now().Add(5 * time.Second)
	for {
		bus.Publish(ctx, events.Event{Kind: events.KindNotification, UserIDs: []uuid.UUID{user}})
		select {
		case ev := <-sub.C:
			if ev.HasUser(user) {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no event after the reconnect")
		}
	}
}

// A process with an in-process cache publishes the keys its writes changed, in events small enough
// for pg_notify; other processes hear them, and know their own.
func TestInvalidateSharesKeysWithOtherProcesses(t *testing.T) {
	writer, database := runBus(t)
	reader := events.New(database.Pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); reader.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-reader.Ready()

	isInvalidate := func(ev events.Event) bool { return ev.Kind == events.KindInvalidate }
	heard := reader.Subscribe(isInvalidate, 100)
	defer heard.Close()
	own := writer.Subscribe(isInvalidate, 100)
	defer own.Close()

	owner := uuid.New()
	keys := []db.EntityKey{{Kind: db.EntityTaskCounts, ID: owner}, {Kind: db.EntityUser, ID: owner}}
	for range 248 { // 250 keys: three events of at most 100
		keys = append(keys, db.EntityKey{Kind: db.EntityTask, ID: uuid.New()})
	}
	// Without ShareInvalidations nothing is shared.
	writer.Invalidate(ctx, keys[:2])
	writer.ShareInvalidations()
	writer.Invalidate(ctx, keys)

	var got []db.EntityKey
	for n := 0; len(got) < len(keys); n++ {
		select {
		case ev := <-heard.C:
			if !reader.FromElsewhere(ev) {
				t.Fatal("the reader takes the writer's event for its own")
			}
			if len(ev.Keys) > 100 {
				t.Errorf("one event carries %d keys", len(ev.Keys))
			}
			got = append(got, ev.EntityKeys()...)
		case <-time.After(5 * time.Second):
			t.Fatalf("heard %d of %d keys in %d events", len(got), len(keys), n)
		}
	}
	if !sameKeys(got, keys) {
		t.Errorf("heard keys differ from the written ones:\n got %v\nwant %v", got, keys)
	}
	select {
	case ev := <-own.C:
		if writer.FromElsewhere(ev) {
			t.Error("the writer takes its own invalidate event for another process's")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not hear its own event")
	}
}

func sameKeys(a, b []db.EntityKey) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[db.EntityKey]int{}
	for _, k := range a {
		set[k]++
	}
	for _, k := range b {
		set[k]--
	}
	for _, n := range set {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestListenerReturnsSoonAfterAnOutage: PostgreSQL is down for 7 s (a restart, a failover), then
// back. The listener listens again within about 2 s of the server being back, not after a backoff
// that grew through the outage (with a 10 s ceiling it would next try at about 12.7 s).
func TestListenerReturnsSoonAfterAnOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: stops and starts a PostgreSQL cluster")
	}
	cluster := testsupport.NewCluster(t)
	database := cluster.Database(t)
	bus := events.New(database.Pool, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bus.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-bus.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("listener never became ready")
	}

	cluster.Stop(t)
	down := time.Now()
	time.Sleep(7 * time.Second) // the outage under test lasts this long (a precondition, not a wait for a signal)
	cluster.Start(t)
	up := time.Now()
	testenv.WaitFor(t, 20*time.Second, "the listener listens again", func() bool {
		_, reconnects := bus.Stats()
		return reconnects >= 1
	})
	late := time.Since(up)
	t.Logf("down %s; listening again %s after the server was back", up.Sub(down).Round(time.Millisecond), late.Round(time.Millisecond))
	if late > 3*time.Second {
		t.Errorf("the listener listened again %s after PostgreSQL was back, want within its 2 s backoff ceiling and a little", late)
	}
}
