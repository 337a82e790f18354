package cache

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

// nearServer is a process with a near cache in front of Redis, its sync running until the test ends.
func nearServer(t *testing.T, prefix string) *Cache {
	t.Helper()
	c := newRedisCache(t, prefix)
	if err := c.EnableNear(100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.RunNearSync(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !c.NearServing() {
		if time.Now().After(deadline) {
			t.Fatal("the near cache's lease never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c
}

// A process with a near cache drops what another process invalidates before that Invalidate
// returns — the other process having a near cache itself or not (a worker announcing its writes) —
// and one whose subscription hangs stops serving its near cache within its lease, which is all the
// writer then waits.
func TestNearCachesDropOtherProcessesWritesBeforeTheyReturn(t *testing.T) {
	prefix := testPrefix(t)
	server, peer := nearServer(t, prefix), nearServer(t, prefix)
	worker := newRedisCache(t, prefix)
	worker.AnnounceToNearCaches()
	wctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go func() { _ = worker.RunNearSync(wctx) }()
	time.Sleep(100 * time.Millisecond) // the worker's acknowledgement subscription

	tb := newTable()
	id := uuid.New()
	tb.set(id, "v1")
	// Fill Redis, then the server's near cache, past the tombstone of nothing.
	many(t, server, tb, id)
	many(t, server, tb, id)
	if before := server.Stats().NearHits; value(many(t, server, tb, id), id) != "v1" || server.Stats().NearHits == before {
		t.Fatal("the server's near cache does not serve the row: the test would prove nothing")
	}

	for name, writer := range map[string]*Cache{"peer": peer, "worker": worker} {
		tb.set(id, "v2 by "+name)
		start := time.Now()
		invalidate(writer, id)
		took := time.Since(start)
		if got := value(many(t, server, tb, id), id); got != "v2 by "+name {
			t.Fatalf("after the %s's Invalidate returned, the server read %q", name, got)
		}
		if took > nearLease/2 {
			t.Errorf("the %s's Invalidate took %v with every process acknowledging", name, took)
		}
		time.Sleep(tombstoneTTL + 100*time.Millisecond) // let the server's near cache fill again
		many(t, server, tb, id)
		many(t, server, tb, id)
	}

	// The server hangs: the writer waits out its lease, and the server no longer serves near entries.
	server.PauseNearSync(true)
	defer server.PauseNearSync(false)
	tb.set(id, "v3")
	start := time.Now()
	invalidate(peer, id)
	if took := time.Since(start); took < nearLease/2 || took > 2*nearLease {
		t.Errorf("with the server hung, Invalidate took %v; want about its lease, %v", took, nearLease)
	}
	if server.NearServing() {
		t.Fatal("the hung server's near cache still serves")
	}
	if got := value(many(t, server, tb, id), id); got != "v3" {
		t.Fatalf("the hung server read %q after the write returned", got)
	}
}
