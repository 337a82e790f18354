package events_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.DropTemplate()
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
		bus.PublishNotification(ctx, user)
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
	var cut int
	if err := database.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'taskgraph-events'`).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("terminated %d listeners (err %v), want 1", cut, err)
	}
	if !waitGap(t, sub, 10*time.Second) {
		t.Fatal("no gap signalled after the listener reconnected")
	}
	// Listening again: events flow as before.
	user := uuid.New()
	deadline := time.Now().Add(5 * time.Second)
	for {
		bus.PublishNotification(ctx, user)
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
