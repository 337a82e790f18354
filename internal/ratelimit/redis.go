package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// redisLimiter keeps budgets in Redis with redis_rate's GCRA script, so every instance pointed at
// the same Redis and prefix shares them.
type redisLimiter struct {
	rl     *redis_rate.Limiter
	prefix string
}

// NewRedis returns a Limiter backed by rdb. Keys are stored as "rate:"+prefix+key (redis_rate adds
// "rate:"), so limiters with different prefixes are independent. rdb should come from
// redisx.NewClient; wrap the limiter with NewResilient so an outage falls back instead of failing.
func NewRedis(rdb *redis.Client, prefix string) Limiter {
	return &redisLimiter{rl: redis_rate.NewLimiter(rdb), prefix: prefix}
}

func (r *redisLimiter) Allow(ctx context.Context, key string, l Limit, n int) (Result, error) {
	if err := check(l, n); err != nil {
		return Result{}, err
	}
	res, err := r.rl.AllowN(ctx, r.prefix+key, redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period}, n)
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis allow %q: %w", r.prefix+key, err)
	}
	out := Result{Allowed: res.Allowed > 0, ResetAfter: max(0, res.ResetAfter)}
	if !out.Allowed {
		out.RetryAfter = res.RetryAfter
	}
	// redis_rate's Remaining truncates a float (3 - 1 can come back as 1) and is 0 on any refusal,
	// though a refused n-cost call may leave some events. Burst minus what is still draining tells
	// it exactly, ignoring float error below Redis' microsecond clock.
	out.Remaining = whole(float64(l.Burst) - l.eventsIn(out.ResetAfter-time.Microsecond))
	return neverFits(l, n, out), nil
}

// Peek implements Limiter: the GCRA script with cost 0 reads the state and leaves the budget as it is.
func (r *redisLimiter) Peek(ctx context.Context, key string, l Limit) (Result, error) {
	if err := check(l, 1); err != nil {
		return Result{}, err
	}
	res, err := r.rl.AllowN(ctx, r.prefix+key, redis_rate.Limit{Rate: l.Rate, Burst: l.Burst, Period: l.Period}, 0)
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: redis peek %q: %w", r.prefix+key, err)
	}
	out := Result{ResetAfter: max(0, res.ResetAfter)}
	out.Remaining = min(l.Burst, whole(float64(l.Burst)-l.eventsIn(out.ResetAfter-time.Microsecond)))
	return out, nil
}
