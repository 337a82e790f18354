package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// TestRetireByAnotherInstanceEmptiesTheCache: two instances (two Cache values, own clients) on one
// prefix. A fills; B retires the cache (what it does after a lost invalidation); A's next read misses.
func TestRetireByAnotherInstanceEmptiesTheCache(t *testing.T) {
	prefix := testPrefix(t)
	a, b := newRedisCache(t, prefix), newRedisCache(t, prefix)
	tb := newTable()
	id := uuid.New()
	tb.set(id, "v1")

	many(t, a, tb, id)
	many(t, a, tb, id)
	if calls, _ := tb.loaded(); calls != 1 {
		t.Fatalf("%d loads before the retire, want 1 (second read cached)", calls)
	}
	if err := b.redis.retire(context.Background()); err != nil {
		t.Fatal(err)
	}
	tb.set(id, "v2") // a change whose invalidation was lost: only the retire can hide v1
	got := many(t, a, tb, id)
	if calls, _ := tb.loaded(); calls != 2 || value(got, id) != "v2" {
		t.Fatalf("after B's retire A read %s with %d loads, want v2 from a second load", value(got, id), calls)
	}
	// A fills the new epoch, and B reads it.
	if got := many(t, b, newTable(), id); value(got, id) != "v2" {
		t.Fatalf("B reads %s, want v2 filled by A in the new epoch", value(got, id))
	}
}

// TestInvalidationReachesTheCurrentEpoch: an instance that has not read since another instance
// retired the cache still knows the old epoch. Its invalidations must hit the entries every
// instance reads now, not the retired ones.
func TestInvalidationReachesTheCurrentEpoch(t *testing.T) {
	prefix := testPrefix(t)
	a, b := newRedisCache(t, prefix), newRedisCache(t, prefix)
	tb := newTable()
	id := uuid.New()
	tb.set(id, "old")

	many(t, a, tb, uuid.New()) // A learns epoch 0
	if err := b.redis.retire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := many(t, b, tb, id); value(got, id) != "old" { // B caches "old" in the new epoch
		t.Fatalf("B read %s, want old", value(got, id))
	}
	tb.set(id, "new")
	invalidate(a, id) // the write went through A
	if got := many(t, b, tb, id); value(got, id) != "new" {
		t.Fatalf("B reads %s after A's invalidation, want new (A invalidated the retired epoch)", value(got, id))
	}
	if got := many(t, a, tb, id); value(got, id) != "new" {
		t.Fatalf("A reads %s, want new", value(got, id))
	}
}

// TestFillAfterRetireCannotUndoInvalidation: a load reads the old row; the write's invalidation
// lands in epoch N; then the cache is retired to N+1 and the loading instance learns it. The fill
// must not put the old row into epoch N+1, where no tombstone guards it.
func TestFillAfterRetireCannotUndoInvalidation(t *testing.T) {
	prefix := testPrefix(t)
	a, b := newRedisCache(t, prefix), newRedisCache(t, prefix)
	id := uuid.New()
	slow := newTable()
	slow.set(id, "old")
	loading, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow.before = func([]uuid.UUID) {
		once.Do(func() {
			close(loading)
			<-release
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = Many(context.Background(), a, kind, []uuid.UUID{id}, slow.load, rowID)
	}()
	<-loading // the load has read "old"

	fresh := newTable()
	fresh.set(id, "new")
	invalidate(a, id)
	if err := b.redis.retire(context.Background()); err != nil {
		t.Fatal(err)
	}
	many(t, a, fresh, uuid.New()) // A meets the new epoch on an unrelated read
	close(release)
	<-done

	if got := many(t, a, fresh, id); value(got, id) != "new" {
		t.Fatalf("A reads %s, want new: the slow fill put the old row into the new epoch", value(got, id))
	}
	if got := many(t, b, fresh, id); value(got, id) != "new" {
		t.Fatalf("B reads %s, want new", value(got, id))
	}
}

// faultHook makes a Redis client fail on demand and runs a callback right after the first INCR
// (the epoch bump) has been executed.
type faultHook struct {
	failing atomic.Bool
	mu      sync.Mutex
	onIncr  func()
}

var errStaged = errors.New("staged redis fault")

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.failing.Load() {
			return errStaged
		}
		err := next(ctx, cmd)
		if strings.EqualFold(cmd.Name(), "incr") {
			h.mu.Lock()
			f := h.onIncr
			h.onIncr = nil
			h.mu.Unlock()
			if f != nil {
				f()
			}
		}
		return err
	}
}

func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.failing.Load() {
			return errStaged
		}
		return next(ctx, cmds)
	}
}

// TestLostInvalidationBypassesRedisUntilRetired: an invalidation that cannot reach Redis makes the
// instance read around Redis (from the loader) until it has retired the cache; then it trusts Redis
// again and the stale entry is gone.
func TestLostInvalidationBypassesRedisUntilRetired(t *testing.T) {
	hook := &faultHook{}
	c := newRedisCache(t, testPrefix(t), hook)
	tb := newTable()
	id := uuid.New()
	tb.set(id, "old")
	many(t, c, tb, id)

	tb.set(id, "new")
	hook.failing.Store(true)
	invalidate(c, id) // lost
	if got := many(t, c, tb, id); value(got, id) != "new" {
		t.Fatalf("read during the outage = %s, want new", value(got, id))
	}
	if c.Stats().Faults == 0 {
		t.Fatal("no fault counted for the lost invalidation")
	}
	hook.failing.Store(false)
	calls, _ := tb.loaded()
	if got := many(t, c, tb, id); value(got, id) != "new" {
		t.Fatalf("read after Redis returned = %s, want new (the stale entry was served)", value(got, id))
	}
	many(t, c, tb, id)
	if after, _ := tb.loaded(); after != calls+1 {
		t.Fatalf("%d loads for two reads after recovery, want 1: Redis should be trusted again", after-calls)
	}
}

// TestInvalidationLostDuringRetireStaysSuspect: an invalidation lost while the retire is running
// (after the epoch bump) is not covered by it; the instance must not trust Redis afterwards as if
// it were. Here another instance caches the old row in the new epoch, then a write's invalidation is
// lost, all while the first instance's retire is in progress.
func TestInvalidationLostDuringRetireStaysSuspect(t *testing.T) {
	prefix := testPrefix(t)
	hook := &faultHook{}
	c := newRedisCache(t, prefix, hook)
	other := newRedisCache(t, prefix)
	tb := newTable()
	id := uuid.New()
	tb.set(id, "old")

	hook.failing.Store(true)
	invalidate(c, uuid.New()) // some earlier lost invalidation: c will retire on its next read
	hook.failing.Store(false)

	hook.mu.Lock()
	hook.onIncr = func() {
		// The epoch has just been bumped. Another instance caches "old" in the new epoch...
		if got := many(t, other, tb, id); value(got, id) != "old" {
			t.Errorf("other instance read %s, want old", value(got, id))
		}
		// ...then a write through c commits and its invalidation is lost.
		tb.set(id, "new")
		hook.failing.Store(true)
		invalidate(c, id)
		hook.failing.Store(false)
	}
	hook.mu.Unlock()

	many(t, c, tb, uuid.New()) // runs the repair (retire), during which the above happens
	if got := many(t, c, tb, id); value(got, id) != "new" {
		t.Fatalf("c reads %s, want new: the repair cleared a lost invalidation it did not cover", value(got, id))
	}
	if got := many(t, other, tb, id); value(got, id) != "new" {
		t.Fatalf("other instance reads %s, want new", value(got, id))
	}
}
