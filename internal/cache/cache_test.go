package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"
)

// TestManyMissesThenHits: the first read loads every id once (in one call), the second is served
// from the cache without loading; ids the loader does not return are absent and not cached; the
// hit and miss counters add up to the ids asked for.
func TestManyMissesThenHits(t *testing.T) {
	backends(t, func(t *testing.T, c *Cache) {
		tb := newTable()
		a, b, ghost := uuid.New(), uuid.New(), uuid.New()
		tb.set(a, "a1")
		tb.set(b, "b1")

		got := many(t, c, tb, a, b, ghost)
		calls, _ := tb.loaded()
		if calls != 1 || !sameIDs(tb.ids, []uuid.UUID{a, b, ghost}) {
			t.Fatalf("first read: %d loads of %v, want 1 load of [a b ghost]", calls, tb.ids)
		}
		if value(got, a) != "a1" || value(got, b) != "b1" || value(got, ghost) != "<absent>" || len(got) != 2 {
			t.Fatalf("first read = a:%s b:%s ghost:%s (%d entries), want a1 b1 <absent>",
				value(got, a), value(got, b), value(got, ghost), len(got))
		}
		if s := c.Stats(); s.Hits != 0 || s.Misses != 3 {
			t.Fatalf("stats after first read = %+v, want 0 hits, 3 misses", s)
		}

		got = many(t, c, tb, a, b)
		if calls, _ := tb.loaded(); calls != 1 {
			t.Fatalf("second read loaded again (%d loads); want it served from the cache", calls)
		}
		if value(got, a) != "a1" || value(got, b) != "b1" || len(got) != 2 {
			t.Fatalf("second read = a:%s b:%s, want a1 b1", value(got, a), value(got, b))
		}

		// A missing row is not cached: asking again asks the loader again, and it is still absent.
		got = many(t, c, tb, ghost)
		calls, perID := tb.loaded()
		if calls != 2 || perID[ghost] != 2 || len(got) != 0 {
			t.Fatalf("ghost: %d loads (ghost asked %d times), result %v; want a second load and no entry", calls, perID[ghost], got)
		}
		s := c.Stats()
		if s.Hits != 2 || s.Misses != 4 || s.Hits+s.Misses != 3+2+1 || s.Faults != 0 {
			t.Fatalf("stats = %+v, want 2 hits + 4 misses = 6 ids asked, no faults", s)
		}
	})
}

// TestInvalidateMakesNextReadLoad: after Invalidate the next read goes to the loader and returns
// the new value; untouched entries stay cached.
func TestInvalidateMakesNextReadLoad(t *testing.T) {
	backends(t, func(t *testing.T, c *Cache) {
		tb := newTable()
		a, b := uuid.New(), uuid.New()
		tb.set(a, "old")
		tb.set(b, "b")
		many(t, c, tb, a, b)

		tb.set(a, "new")
		invalidate(c, a)
		got := many(t, c, tb, a, b)
		calls, perID := tb.loaded()
		if value(got, a) != "new" || value(got, b) != "b" {
			t.Fatalf("after invalidation: a=%s b=%s, want new and b", value(got, a), value(got, b))
		}
		if calls != 2 || perID[a] != 2 || perID[b] != 1 {
			t.Fatalf("%d loads, a loaded %d times, b %d times; want a reloaded, b still cached", calls, perID[a], perID[b])
		}
	})
}

// TestFillRacingInvalidationLeavesTombstone: a read that fetched the old row before a write, and
// fills after the write's invalidation, must not put the old row back.
func TestFillRacingInvalidationLeavesTombstone(t *testing.T) {
	backends(t, func(t *testing.T, c *Cache) {
		tb := newTable()
		a := uuid.New()
		tb.set(a, "old")
		var once sync.Once
		tb.before = func([]uuid.UUID) {
			// The loader has read "old"; now a write commits and invalidates, before the fill.
			once.Do(func() {
				tb.set(a, "new")
				invalidate(c, a)
			})
		}
		many(t, c, tb, a) // may return "old": that is what the read saw

		if v := stored(t, c, a); v != tombstone {
			t.Fatalf("store holds %q after the racing fill, want the tombstone", v)
		}
		got := many(t, c, tb, a)
		if value(got, a) != "new" {
			t.Fatalf("next read = %s, want new (the racing fill put the old row back)", value(got, a))
		}
		if calls, _ := tb.loaded(); calls != 2 {
			t.Fatalf("%d loads, want 2 (the tombstone is a miss)", calls)
		}
	})
}

// fakeClock is a settable clock for the local store and the cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// TestSlowFillAfterTombstoneExpiredIsDropped: a load so slow that the tombstone of the write it
// raced has already expired when it returns must not fill (the old row would be back for the whole
// TTL). The clock is fake, so "slow" costs no time.
func TestSlowFillAfterTombstoneExpiredIsDropped(t *testing.T) {
	c := newLocalCache(t)
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	c.now = clock.Now
	c.store.(*localStore).now = clock.Now

	tb := newTable()
	a := uuid.New()
	tb.set(a, "old")
	var once sync.Once
	tb.before = func([]uuid.UUID) {
		once.Do(func() {
			tb.set(a, "new")
			invalidate(c, a)
			clock.Advance(tombstoneTTL + time.Second) // the load is still running when the tombstone expires
		})
	}
	many(t, c, tb, a)
	if v := stored(t, c, a); v != "<absent>" {
		t.Fatalf("store holds %q after a fill that outlived the tombstone, want nothing", v)
	}
	if got := many(t, c, tb, a); value(got, a) != "new" {
		t.Fatalf("next read = %s, want new", value(got, a))
	}
	// A prompt load still fills.
	many(t, c, tb, a)
	if calls, _ := tb.loaded(); calls != 2 {
		t.Fatalf("%d loads, want 2: the prompt second load should have filled", calls)
	}
}

// TestManyLoadsEachIDOnceForConcurrentMisses: 20 concurrent misses for one id cost one load; and
// overlapping misses [a b] and [b c] load b once. Run in a synctest bubble so "all callers are
// waiting" is observed, not guessed with sleeps.
func TestManyLoadsEachIDOnceForConcurrentMisses(t *testing.T) {
	t.Run("same id", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newLocalCache(t)
			tb := newTable()
			a := uuid.New()
			tb.set(a, "a")
			release := make(chan struct{})
			tb.before = func([]uuid.UUID) { <-release }

			const callers = 20
			results := make(chan string, callers)
			for range callers {
				go func() {
					got, err := Many(context.Background(), c, kind, []uuid.UUID{a}, tb.load, rowID)
					if err != nil {
						results <- "error: " + err.Error()
						return
					}
					results <- value(got, a)
				}()
			}
			synctest.Wait() // every caller is now blocked: one in the loader, the rest waiting for it
			if calls, _ := tb.loaded(); calls != 1 {
				t.Errorf("%d loads started for %d concurrent misses of one id, want 1", calls, callers)
			}
			close(release)
			for range callers {
				if v := <-results; v != "a" {
					t.Errorf("a caller got %q, want a", v)
				}
			}
			if calls, perID := tb.loaded(); calls != 1 || perID[a] != 1 {
				t.Fatalf("%d loads (a loaded %d times), want 1", calls, perID[a])
			}
		})
	})
	t.Run("overlapping ids", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newLocalCache(t)
			tb := newTable()
			a, b, d := uuid.New(), uuid.New(), uuid.New()
			for _, id := range []uuid.UUID{a, b, d} {
				tb.set(id, id.String())
			}
			release := make(chan struct{})
			tb.before = func([]uuid.UUID) { <-release }

			type result struct {
				got map[uuid.UUID]*row
				err error
			}
			first, second := make(chan result, 1), make(chan result, 1)
			go func() {
				got, err := Many(context.Background(), c, kind, []uuid.UUID{a, b}, tb.load, rowID)
				first <- result{got, err}
			}()
			synctest.Wait() // [a b] is loading
			go func() {
				got, err := Many(context.Background(), c, kind, []uuid.UUID{b, d}, tb.load, rowID)
				second <- result{got, err}
			}()
			synctest.Wait() // [b c] loads c and waits for b
			close(release)
			r1, r2 := <-first, <-second
			if r1.err != nil || r2.err != nil {
				t.Fatalf("errors: %v, %v", r1.err, r2.err)
			}
			if value(r1.got, a) != a.String() || value(r1.got, b) != b.String() ||
				value(r2.got, b) != b.String() || value(r2.got, d) != d.String() {
				t.Fatalf("results %v / %v miss rows", r1.got, r2.got)
			}
			calls, perID := tb.loaded()
			if perID[b] != 1 || perID[a] != 1 || perID[d] != 1 || calls != 2 {
				t.Fatalf("%d loads; a, b, c loaded %d, %d, %d times; want 2 loads, each id once", calls, perID[a], perID[b], perID[d])
			}
		})
	})
}

// TestLoadFailureReachesEveryWaiter: a loader error is returned to the caller that ran it and to
// every caller waiting on it; a panicking loader becomes an error for all of them, and nothing
// deadlocks (synctest fails the test if every goroutine blocks forever).
func TestLoadFailureReachesEveryWaiter(t *testing.T) {
	boom := errors.New("database on fire")
	for _, tc := range []struct {
		name  string
		fail  func()
		check func(error) bool
	}{
		{"error", func() {}, func(err error) bool { return errors.Is(err, boom) }},
		{"panic", func() { panic("loader bug") }, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "panicked") && strings.Contains(err.Error(), "loader bug")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newLocalCache(t)
				a := uuid.New()
				release := make(chan struct{})
				var calls int
				var mu sync.Mutex
				load := func(context.Context, []uuid.UUID) ([]row, error) {
					mu.Lock()
					calls++
					mu.Unlock()
					<-release
					tc.fail()
					return nil, boom
				}
				const callers = 5
				errs := make(chan error, callers)
				for range callers {
					go func() {
						_, err := Many(context.Background(), c, kind, []uuid.UUID{a}, load, rowID)
						errs <- err
					}()
				}
				synctest.Wait()
				close(release)
				for range callers {
					if err := <-errs; !tc.check(err) {
						t.Errorf("a caller got %v", err)
					}
				}
				if calls != 1 {
					t.Fatalf("%d loads, want 1", calls)
				}
				// Nothing failed was cached, and the flight is over: the next read loads afresh.
				tb := newTable()
				tb.set(a, "ok")
				if got := many(t, c, tb, a); value(got, a) != "ok" {
					t.Fatalf("read after the failure = %s, want ok", value(got, a))
				}
			})
		})
	}
}

// TestReadAfterInvalidationDoesNotJoinOlderLoad: a load that started before a write may carry the
// old row. A read that starts after the write's invalidation must not wait for that load and take
// its result (read-your-writes on one instance); it loads on its own.
func TestReadAfterInvalidationDoesNotJoinOlderLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newLocalCache(t)
		a := uuid.New()
		slow := newTable()
		slow.set(a, "old")
		release := make(chan struct{})
		slow.before = func([]uuid.UUID) { <-release }

		older := make(chan string, 1)
		go func() {
			got, err := Many(context.Background(), c, kind, []uuid.UUID{a}, slow.load, rowID)
			if err != nil {
				older <- err.Error()
				return
			}
			older <- value(got, a)
		}()
		synctest.Wait() // the older read has fetched "old" and is about to return it

		fresh := newTable()
		fresh.set(a, "new")
		invalidate(c, a) // a write committed
		newer := make(chan string, 1)
		go func() {
			got, err := Many(context.Background(), c, kind, []uuid.UUID{a}, fresh.load, rowID)
			if err != nil {
				newer <- err.Error()
				return
			}
			newer <- value(got, a)
		}()
		synctest.Wait()
		var v string
		answered := false
		select {
		case v = <-newer:
			answered = true
		default:
			t.Errorf("read after the write is waiting for a load that started before the write")
		}
		close(release)
		<-older
		if !answered {
			v = <-newer
		}
		if v != "new" {
			t.Errorf("read after the write = %s, want new", v)
		}
		// And the stale load did not fill: the next read loads the new row.
		if got := many(t, c, fresh, a); value(got, a) != "new" {
			t.Fatalf("next read = %s, want new", value(got, a))
		}
	})
}

// TestPurgeEmptiesLocalCacheAndDropsOlderFills: after Purge (events from other processes may have
// been missed) every entry is read again, and a load that started before the purge does not put
// its possibly stale rows back.
func TestPurgeEmptiesLocalCacheAndDropsOlderFills(t *testing.T) {
	c, err := NewLocal(100, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable()
	a, b := uuid.New(), uuid.New()
	tb.set(a, "a1")
	tb.set(b, "b1")
	many(t, c, tb, a)

	// Another process changed a; its invalidation was lost, then the purge came.
	tb.set(a, "a2")
	c.Purge()
	if got := many(t, c, tb, a); value(got, a) != "a2" {
		t.Fatalf("after Purge: a = %s, want a2 (read again)", value(got, a))
	}

	// A load of b reads "b1", then b changes elsewhere and the purge runs before the load fills.
	var once sync.Once
	tb.before = func([]uuid.UUID) {
		once.Do(func() {
			tb.set(b, "b2")
			c.Purge()
		})
	}
	many(t, c, tb, b)
	tb.before = nil
	if v := stored(t, c, b); v != "<absent>" {
		t.Fatalf("store holds %q for b: a load older than the purge filled it", v)
	}
	if got := many(t, c, tb, b); value(got, b) != "b2" {
		t.Fatalf("b = %s, want b2", value(got, b))
	}
}

// A Redis-backed cache is shared and never purged by one process.
func TestPurgeLeavesRedisCacheAlone(t *testing.T) {
	c := NewRedis(newRedisClient(t), "purge-"+uuid.NewString()+":", discardLogger())
	tb := newTable()
	a := uuid.New()
	tb.set(a, "a1")
	many(t, c, tb, a)
	c.Purge()
	if v := stored(t, c, a); v == "<absent>" {
		t.Fatal("Purge emptied the shared Redis cache")
	}
	if c.Local() {
		t.Error("a Redis-backed cache reports Local")
	}
}
