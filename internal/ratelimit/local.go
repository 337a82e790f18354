package ratelimit

import (
	"context"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// localLimiter keeps budgets in process memory: one token bucket per key (a token bucket with
// Burst tokens refilled at Rate/Period is the same policy as GCRA), in an LRU so memory stays
// bounded however many keys callers invent.
type localLimiter struct {
	buckets *lru.Cache[string, *rate.Limiter]
}

// NewLocal returns an in-process Limiter remembering at most maxKeys keys (at least 1). A key
// evicted as least recently used starts again with a full bucket; that is the price of bounded
// memory, and it only favours keys idle long enough to be evicted.
func NewLocal(maxKeys int) Limiter {
	buckets, err := lru.New[string, *rate.Limiter](max(1, maxKeys))
	if err != nil {
		// lru.New only fails for a non-positive size, which max rules out.
		panic(fmt.Sprintf("ratelimit: new LRU: %v", err))
	}
	return &localLimiter{buckets: buckets}
}

func (c *localLimiter) Allow(_ context.Context, key string, l Limit, n int) (Result, error) {
	if err := check(l, n); err != nil {
		return Result{}, err
	}
	now := time.Now()
	b := c.bucket(key, l, now)
	// AllowN spends atomically or not at all, so concurrent callers cannot overspend.
	allowed := n <= l.Burst && b.AllowN(now, n)
	tokens := b.TokensAt(now)
	out := Result{
		Allowed:    allowed,
		Remaining:  whole(tokens),
		ResetAfter: l.durationFor(float64(l.Burst) - tokens),
	}
	if !allowed {
		out.RetryAfter = l.durationFor(float64(n) - tokens)
	}
	return neverFits(l, n, out), nil
}

// bucket returns key's bucket, created full on first use and retuned if the caller changed the
// limit for the key (as Redis would reinterpret the stored state under the new limit).
// Peek implements Limiter.
func (c *localLimiter) Peek(_ context.Context, key string, l Limit) (Result, error) {
	if err := check(l, 1); err != nil {
		return Result{}, err
	}
	now := time.Now()
	tokens := c.bucket(key, l, now).TokensAt(now)
	return Result{Remaining: whole(tokens), ResetAfter: l.durationFor(float64(l.Burst) - tokens)}, nil
}

func (c *localLimiter) bucket(key string, l Limit, now time.Time) *rate.Limiter {
	want := rate.Limit(l.perSecond())
	b, ok := c.buckets.Get(key)
	if !ok {
		// PeekOrAdd keeps the first bucket if another goroutine created one meanwhile.
		fresh := rate.NewLimiter(want, l.Burst)
		if prev, found, _ := c.buckets.PeekOrAdd(key, fresh); found {
			b = prev
		} else {
			b = fresh
		}
	}
	if b.Limit() != want {
		b.SetLimitAt(now, want)
	}
	if b.Burst() != l.Burst {
		b.SetBurstAt(now, l.Burst)
	}
	return b
}
