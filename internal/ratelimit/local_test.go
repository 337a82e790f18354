package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLocal(t *testing.T) {
	testBehaviours(t, func(*testing.T) Limiter { return NewLocal(100) })
}

func TestLocalMemoryIsBounded(t *testing.T) {
	const maxKeys = 8
	lim := NewLocal(maxKeys)
	buckets := lim.(*localLimiter).buckets
	l := PerMinute(1, 1)
	allow(t, lim, "hot", l, 1)
	allow(t, lim, "cold", l, 1)
	for i := range 10 * maxKeys {
		allow(t, lim, fmt.Sprint("key", i), l, 1)
		// Touching "hot" keeps it recently used, so eviction must not reset its budget.
		if res := allow(t, lim, "hot", l, 1); res.Allowed {
			t.Fatalf("hot key after %d other keys: got %+v, want still refused", i+1, res)
		}
		if n := buckets.Len(); n > maxKeys {
			t.Fatalf("%d keys remembered, want at most %d", n, maxKeys)
		}
	}
	if n := buckets.Len(); n != maxKeys {
		t.Fatalf("%d keys remembered, want %d", n, maxKeys)
	}
	// The untouched key was evicted and starts again with a full bucket.
	if res := allow(t, lim, "cold", l, 1); !res.Allowed {
		t.Fatalf("evicted key: got %+v, want allowed", res)
	}
}

func TestLocalConcurrentCallersDoNotOverspend(t *testing.T) {
	lim := NewLocal(10)
	l := PerHour(20, 20)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if res := allow(t, lim, "k", l, 1); res.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 20 {
		t.Fatalf("%d of 100 concurrent calls allowed, want exactly the burst of 20", got)
	}
}
