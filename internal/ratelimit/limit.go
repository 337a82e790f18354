// Package ratelimit owns request budgets: GCRA limits per key, kept in Redis so every instance shares
// them, in process memory for single instances, and a resilient pairing of the two that answers from
// memory whenever Redis is slow or down, so rate limiting never fails a request.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Limit allows Rate events per Period with bursts up to Burst (GCRA semantics).
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerMinute allows rate events a minute, burst at once.
func PerMinute(rate, burst int) Limit { return Limit{Rate: rate, Period: time.Minute, Burst: burst} }

// PerHour allows rate events an hour, burst at once.
func PerHour(rate, burst int) Limit { return Limit{Rate: rate, Period: time.Hour, Burst: burst} }

// Result is the answer to one Allow call.
//
// When n > Burst the request can never fit, however long the caller waits: it is refused with
// RetryAfter = Period so that a caller honouring it backs off for a whole period instead of retrying
// at once.
type Result struct {
	Allowed    bool
	Remaining  int           // events still allowed right now
	RetryAfter time.Duration // when refused: wait this long before n events fit; 0 when allowed
	ResetAfter time.Duration // until the bucket is full again
}

// Limiter spends and checks per-key budgets.
type Limiter interface {
	// Allow spends n events (n >= 1) of key's budget under l, or refuses without spending.
	Allow(ctx context.Context, key string, l Limit, n int) (Result, error)
	// Peek reports key's budget under l without spending any: Remaining and ResetAfter (for rate-limit
	// headers and dry runs). Allowed is unset.
	Peek(ctx context.Context, key string, l Limit) (Result, error)
}

// ErrInvalid is returned for a Limit with a non-positive field or for n < 1: a programming error,
// never a fault of the backing store.
var ErrInvalid = errors.New("ratelimit: invalid limit or cost")

// check rejects arguments no limiter can answer.
func check(l Limit, n int) error {
	if l.Rate < 1 || l.Period <= 0 || l.Burst < 1 || n < 1 {
		return fmt.Errorf("%w: %d/%s burst %d, n %d", ErrInvalid, l.Rate, l.Period, l.Burst, n)
	}
	return nil
}

// perSecond is the refill rate in events per second.
func (l Limit) perSecond() float64 { return float64(l.Rate) / l.Period.Seconds() }

// eventsIn is how many events' budget accrues in d, as a fraction.
func (l Limit) eventsIn(d time.Duration) float64 { return d.Seconds() * l.perSecond() }

// durationFor is how long it takes events' budget to accrue, rounded up to the microsecond so that
// waiting exactly that long is always enough.
func (l Limit) durationFor(events float64) time.Duration {
	if events <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(events/l.perSecond()*1e6)) * time.Microsecond
}

// whole turns a fractional budget into the whole events it allows, never negative.
func whole(events float64) int {
	// The epsilon absorbs float error so that an exactly refilled event counts.
	return max(0, int(math.Floor(events+1e-9)))
}

// neverFits applies the n > Burst rule documented on Result.
func neverFits(l Limit, n int, r Result) Result {
	if n > l.Burst {
		r.Allowed = false
		r.RetryAfter = l.Period
	}
	return r
}
