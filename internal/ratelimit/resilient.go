package ratelimit

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/taskgraph/taskgraph/internal/redisx"
)

// primaryBudget caps one primary call: a Redis round trip at its slowest (redisx.IOTimeout) plus
// slack for a fresh connection. Client timeouts alone do not bound a call (go-redis retries failed
// dials with backoff), and past this the fallback's answer is worth more than Redis'.
const primaryBudget = redisx.IOTimeout + 50*time.Millisecond

var _ Limiter = (*Resilient)(nil)

// Resilient implements Limiter: it asks primary (normally Redis) through guard and, on any primary
// error or while the breaker is open, answers from fallback (normally local memory). During an
// outage limits are therefore per instance rather than shared, which is looser but still limits;
// failing requests because Redis is down would be worse.
type Resilient struct {
	primary, fallback Limiter
	guard             *redisx.Guard
	logger            *slog.Logger
	faults            atomic.Int64
}

// NewResilient pairs primary and fallback behind guard. A nil logger discards.
func NewResilient(primary, fallback Limiter, guard *redisx.Guard, logger *slog.Logger) *Resilient {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Resilient{primary: primary, fallback: fallback, guard: guard, logger: logger}
}

// Allow answers from primary when it can and from fallback otherwise. It never returns the
// primary's error; it returns an error only for invalid arguments.
func (r *Resilient) Allow(ctx context.Context, key string, l Limit, n int) (Result, error) {
	// Invalid arguments are the caller's bug: reject them before they count against Redis.
	if err := check(l, n); err != nil {
		return Result{}, err
	}
	// A caller that has already given up would only fail the Redis call and trip the breaker for
	// everyone; give it the local answer instead, and do not blame Redis for it.
	if ctx.Err() != nil {
		return r.fallback.Allow(ctx, key, l, n)
	}
	var res Result
	pctx, cancel := context.WithTimeout(ctx, primaryBudget)
	defer cancel()
	err := r.guard.Do(pctx, func(ctx context.Context) error {
		var err error
		res, err = r.primary.Allow(ctx, key, l, n)
		return err
	})
	if err == nil {
		return res, nil
	}
	r.faults.Add(1)
	r.logger.DebugContext(ctx, "rate limit answered locally", "key", key, "err", err)
	return r.fallback.Allow(ctx, key, l, n)
}

// Peek implements Limiter, from memory whenever Redis cannot answer in time.
func (r *Resilient) Peek(ctx context.Context, key string, l Limit) (Result, error) {
	if ctx.Err() != nil {
		return r.fallback.Peek(ctx, key, l)
	}
	var res Result
	pctx, cancel := context.WithTimeout(ctx, primaryBudget)
	defer cancel()
	err := r.guard.Do(pctx, func(ctx context.Context) error {
		var err error
		res, err = r.primary.Peek(ctx, key, l)
		return err
	})
	if err == nil {
		return res, nil
	}
	r.faults.Add(1)
	return r.fallback.Peek(ctx, key, l)
}

// Faults is how many calls were answered by the fallback because the primary failed or was skipped
// by the open breaker.
func (r *Resilient) Faults() int64 { return r.faults.Load() }
