package cache

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// nearSync keeps the near caches of every process sharing a Redis correct across processes: a
// write answers only once no process can serve what it changed from its near cache.
//
//   - Invalidate publishes the keys it dropped on a Redis channel every process with a near cache
//     subscribes to (the writer included). PUBLISH answers how many subscribers received it; each
//     drops the keys from its near cache, then acknowledges to the writer, which waits for as many
//     acknowledgements, at most nearLease (+ nearLeaseMargin).
//   - A process serves from its near cache only under a lease: it publishes a ping on the same
//     channel every nearLease/5 and, when its own ping comes back (Redis delivers a subscriber's
//     messages in the order it received them), every invalidation published before the ping has
//     been applied; the lease then runs until nearLease after the ping was sent. So a process that
//     fell behind, hangs, or lost its subscription stops serving its near cache at most nearLease
//     after the last ping it saw, which is why a writer that misses an acknowledgement waits that
//     long, and no longer.
//   - Every (re)subscription empties the near cache: messages may have been missed while the
//     subscription was down.
//   - A write that cannot publish (Redis unreachable) waits until nearLease after the first such
//     failure of the outage: by then no process that lost Redis at the same time still serves
//     from its near cache. (A process that alone loses Redis already loses its invalidations of
//     Redis itself; see lost/repair.)
type nearSync struct {
	rdb     *redis.Client
	c       *Cache
	logger  *slog.Logger
	channel string // invalidations and pings
	origin  string // this process, in pings and as its acknowledgement channel's suffix
	ackChan string
	start   time.Time // the monotonic clock the lease is kept on

	lease atomic.Int64 // time.Since(start) until which the near cache may serve, in ns

	mu      sync.Mutex
	waiting map[string]chan struct{} // acknowledgements per invalidation message
	pings   map[uint64]time.Duration // pings in flight: sent at (since start)
	nextID  uint64

	outageSince atomic.Int64 // since start, ns, +1: the first failed publish of an outage (0: none)

	// paused, for tests: the subscription loop stops processing messages (as a hung process would).
	paused atomic.Bool
}

const (
	// nearLease is how long a near cache serves after a ping round trip; a writer waits at most
	// this (+ margin) for a process that does not acknowledge.
	nearLease       = 250 * time.Millisecond
	nearLeaseMargin = 10 * time.Millisecond
	nearPingEvery   = nearLease / 5
)

func newNearSync(rdb *redis.Client, prefix string, c *Cache, logger *slog.Logger) *nearSync {
	origin := uuid.NewString()
	// Pub/sub channels are not per database: the channel names the database, so instances of
	// different deployments (or tests) sharing a server do not wait for each other.
	channel := prefix + "near@" + strconv.Itoa(rdb.Options().DB)
	return &nearSync{
		rdb: rdb, c: c, logger: logger, channel: channel, origin: origin, ackChan: channel + ":ack:" + origin,
		start: time.Now(), waiting: map[string]chan struct{}{}, pings: map[uint64]time.Duration{},
	}
}

func (s *nearSync) now() time.Duration { return time.Since(s.start) }

// serving reports whether the near cache may answer now.
func (s *nearSync) serving() bool { return int64(s.now()) < s.lease.Load() }

// run subscribes and keeps the lease until ctx ends.
func (s *nearSync) run(ctx context.Context) {
	chans := []string{s.ackChan}
	if s.c.near != nil {
		chans = append(chans, s.channel) // a process without a near cache only hears its acknowledgements
		go s.ping(ctx)
	}
	ps := s.rdb.Subscribe(ctx, chans...)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // Receive does not return on ctx's end
	defer stop()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			// go-redis resubscribes on the next Receive; the lease lapses meanwhile, and the
			// subscription's confirmation empties the near cache.
			s.logger.DebugContext(ctx, "near cache subscription", "error", err.Error())
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		for s.paused.Load() && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == s.channel {
				s.c.Purge()
			}
		case *redis.Message:
			s.handle(ctx, m)
		}
	}
}

// handle applies one message: an invalidation (drop, then acknowledge), a ping (this process's
// own extends the lease) or an acknowledgement of this process's invalidation.
func (s *nearSync) handle(ctx context.Context, m *redis.Message) {
	if m.Channel == s.ackChan {
		s.mu.Lock()
		ch := s.waiting[m.Payload]
		s.mu.Unlock()
		if ch != nil {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		return
	}
	kind, rest, _ := strings.Cut(m.Payload, "|")
	switch kind {
	case "i": // i|<message id>|<ack channel>|key,key,...
		id, rest, _ := strings.Cut(rest, "|")
		ackTo, keys, _ := strings.Cut(rest, "|")
		strs := strings.Split(keys, ",")
		s.c.flight.forget(strs)
		_ = s.c.near.invalidate(ctx, strs)
		s.c.bumpResponses(strs)
		actx, cancel := context.WithTimeout(ctx, nearLease)
		defer cancel()
		_ = s.rdb.Publish(actx, ackTo, id).Err()
	case "p": // p|<origin>|<ping id>
		origin, id, _ := strings.Cut(rest, "|")
		if origin != s.origin {
			return
		}
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return
		}
		s.mu.Lock()
		sent, ok := s.pings[n]
		for k := range s.pings {
			if k <= n {
				delete(s.pings, k)
			}
		}
		s.mu.Unlock()
		if !ok {
			return
		}
		for {
			cur := s.lease.Load()
			next := int64(sent + nearLease)
			if next <= cur || s.lease.CompareAndSwap(cur, next) {
				return
			}
		}
	}
}

// ping publishes this process's pings until ctx ends.
func (s *nearSync) ping(ctx context.Context) {
	t := time.NewTicker(nearPingEvery)
	defer t.Stop()
	for {
		s.mu.Lock()
		s.nextID++
		id := s.nextID
		s.pings[id] = s.now()
		s.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, nearLease)
		_ = s.rdb.Publish(pctx, s.channel, "p|"+s.origin+"|"+strconv.FormatUint(id, 10)).Err()
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// broadcast tells every process with a near cache to drop keys, and returns once each has, or once
// none that has not can still serve them (see nearSync).
func (s *nearSync) broadcast(ctx context.Context, keys []string) {
	id := uuid.NewString()
	acks := make(chan struct{}, 64)
	s.mu.Lock()
	s.waiting[id] = acks
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
	}()
	pctx, cancel := context.WithTimeout(ctx, callBudget)
	n, err := s.rdb.Publish(pctx, s.channel, "i|"+id+"|"+s.ackChan+"|"+strings.Join(keys, ",")).Result()
	cancel()
	if err != nil {
		first := s.outageSince.Load()
		if first == 0 {
			first = int64(s.now()) + 1
			if !s.outageSince.CompareAndSwap(0, first) {
				first = s.outageSince.Load()
			}
		}
		if wait := time.Duration(first-1) + nearLease + nearLeaseMargin - s.now(); wait > 0 {
			s.logger.WarnContext(ctx, "near cache invalidation not published; waiting out the other processes' leases",
				"err", err, "wait", wait.String())
			sleep(ctx, wait)
		}
		return
	}
	s.outageSince.Store(0)
	timer := time.NewTimer(nearLease + nearLeaseMargin)
	defer timer.Stop()
	for got := int64(0); got < n; got++ {
		select {
		case <-acks:
		case <-timer.C:
			s.logger.WarnContext(ctx, "near cache invalidation not acknowledged by every process; waited out their leases",
				"acknowledged", got, "subscribers", n)
			return
		}
	}
}

// sleep waits d; a cancelled ctx does not shorten it (the write has happened: answering early
// would let its client read a near cache that still holds the old row).
func sleep(_ context.Context, d time.Duration) { time.Sleep(d) }

// errNoNear is returned by RunNearSync for a cache without a near cache.
var errNoNear = errors.New("no near cache")

// RunNearSync keeps this process's near cache in step with the other processes' writes until ctx
// ends (see nearSync); without it the near cache never serves. It returns at once for a cache
// without a near cache.
func (c *Cache) RunNearSync(ctx context.Context) error {
	if c == nil || c.sync == nil {
		return errNoNear
	}
	c.sync.run(ctx)
	return nil
}

// AnnounceToNearCaches makes a Redis cache without a near cache of its own (a worker's, set-role's)
// tell the near caches of the other processes what its writes invalidate, and wait for them, as a
// cache with a near cache does. Run RunNearSync beside it to hear their acknowledgements (without
// it, each write waits out their leases).
func (c *Cache) AnnounceToNearCaches() {
	if c != nil && c.redis != nil && c.sync == nil {
		c.sync = newNearSync(c.redis.rdb, c.prefix, c, c.logger)
	}
}

// PauseNearSync stops (true) or resumes (false) processing near-cache messages, as if the process
// hung: for tests of the lease.
func (c *Cache) PauseNearSync(paused bool) {
	if c != nil && c.sync != nil {
		c.sync.paused.Store(paused)
	}
}

// NearServing reports whether the near cache answers reads now (its lease is current).
func (c *Cache) NearServing() bool {
	return c != nil && c.sync != nil && c.sync.serving()
}

// HasNear reports whether this cache keeps a near copy of Redis in process (EnableNear).
func (c *Cache) HasNear() bool {
	return c != nil && c.near != nil
}
