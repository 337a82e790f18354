// Package redisx builds the Redis client every Redis user shares, with timeouts tight enough that a
// slow or dead Redis costs milliseconds, and a circuit breaker so an outage stops costing even those.
// Redis is an accelerator here, never a dependency: callers fall back when Guard.Do fails.
package redisx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// Timeouts for every Redis call. A healthy local Redis answers in well under a millisecond; anything
// slower than this is treated as down.
const (
	DialTimeout = 250 * time.Millisecond
	IOTimeout   = 100 * time.Millisecond
)

// NewClient parses a redis:// URL and applies the tight timeouts. It does not connect.
func NewClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	opts.DialTimeout = DialTimeout
	opts.ReadTimeout = IOTimeout
	opts.WriteTimeout = IOTimeout
	opts.PoolTimeout = IOTimeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // no retries (0 means "default 3"): a retry multiplies the wait on a dead server
	opts.DialerRetries = 1
	opts.DisableIdentity = true
	return redis.NewClient(opts), nil
}

// ErrUnavailable is returned by Guard.Do while the breaker is open: Redis was failing recently and is
// not being tried.
var ErrUnavailable = errors.New("redis unavailable (circuit open)")

// Guard wraps Redis calls in a circuit breaker: after consecutive failures it skips Redis for a
// cool-down, then lets one probe through. It counts faults and remembers outages so callers can
// repair state (e.g. drop a cache that missed invalidations) when Redis comes back.
type Guard struct {
	name    string
	cb      *gobreaker.CircuitBreaker[any]
	logger  *slog.Logger
	faults  atomic.Int64
	opened  atomic.Int64 // how many times the breaker opened
	onClose func()       // called when Redis is healthy again after being open
}

// GuardOptions tunes a Guard; zero values take the defaults.
type GuardOptions struct {
	// Failures in a row that open the breaker (default 3).
	ConsecutiveFailures uint32
	// How long the breaker stays open before a probe (default 2s).
	CoolDown time.Duration
	// OnRecover runs (in its own goroutine) when the breaker closes after having been open.
	OnRecover func()
}

// NewGuard returns a breaker named name (used in logs and metrics).
func NewGuard(name string, logger *slog.Logger, o GuardOptions) *Guard {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = 3
	}
	if o.CoolDown == 0 {
		o.CoolDown = 2 * time.Second
	}
	g := &Guard{name: name, logger: logger, onClose: o.OnRecover}
	g.cb = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     o.CoolDown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.ConsecutiveFailures },
		IsSuccessful: func(err error) bool {
			// A missing key is an answer, not a fault.
			return err == nil || errors.Is(err, redis.Nil)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			logger.Warn("redis circuit breaker", "name", name, "from", from.String(), "to", to.String())
			if to == gobreaker.StateOpen {
				g.opened.Add(1)
			}
			if to == gobreaker.StateClosed && from != gobreaker.StateClosed && g.onClose != nil {
				go g.onClose()
			}
		},
	})
	return g
}

// Do runs fn unless the breaker is open. Failures (other than redis.Nil) are counted and logged at
// debug level; the breaker's state changes are logged at warn level.
func (g *Guard) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	_, err := g.cb.Execute(func() (any, error) { return nil, fn(ctx) })
	switch {
	case err == nil || errors.Is(err, redis.Nil):
		return err
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		return ErrUnavailable
	}
	g.faults.Add(1)
	g.logger.DebugContext(ctx, "redis call failed", "name", g.name, "err", err)
	return err
}

// Faults is how many Redis calls have failed through this guard.
func (g *Guard) Faults() int64 { return g.faults.Load() }

// Open reports whether the breaker is currently skipping Redis.
func (g *Guard) Open() bool { return g.cb.State() == gobreaker.StateOpen }
