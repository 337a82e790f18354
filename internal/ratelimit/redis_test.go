package ratelimit

import (
	"testing"
)

func TestRedis(t *testing.T) {
	testBehaviours(t, func(t *testing.T) Limiter { return NewRedis(newRedisClient(t), testPrefix(t)) })
}

func TestRedisInstancesShareBudget(t *testing.T) {
	prefix := testPrefix(t)
	// Separate clients stand for separate server instances.
	a, b := NewRedis(newRedisClient(t), prefix), NewRedis(newRedisClient(t), prefix)
	l := PerMinute(4, 4)
	allow(t, a, "k", l, 2)
	if res := allow(t, b, "k", l, 2); !res.Allowed || res.Remaining != 0 {
		t.Fatalf("b spends the rest: got %+v, want allowed with Remaining 0", res)
	}
	for name, lim := range map[string]Limiter{"a": a, "b": b} {
		if res := allow(t, lim, "k", l, 1); res.Allowed {
			t.Fatalf("%s after the shared budget is spent: got %+v, want refused", name, res)
		}
	}
}

func TestRedisPrefixesAreIndependent(t *testing.T) {
	rdb := newRedisClient(t)
	a, b := NewRedis(rdb, testPrefix(t)), NewRedis(rdb, testPrefix(t))
	l := PerMinute(1, 1)
	allow(t, a, "k", l, 1)
	if res := allow(t, b, "k", l, 1); !res.Allowed {
		t.Fatalf("same key, other prefix: got %+v, want allowed", res)
	}
}
