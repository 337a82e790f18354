// Package cache is Taskgraph's read cache: cache-aside for users, tasks and per-user task counts, in
// Redis (shared by every instance) or, without REDIS_URL, in a bounded in-process LRU.
//
// Rules it keeps:
//   - Writes invalidate after commit (db calls Invalidate); fills never overwrite, so an invalidation
//     is never undone by a slow reader: a fill lands in the epoch its load started in, and a load
//     slower than half the tombstone's life does not fill at all. A read that starts after an
//     invalidation never waits for a load that started before it.
//   - A Redis fault is a cache miss, never an error: reads go to PostgreSQL and the fault is counted.
//     Each Redis call is capped (callBudget), so a failing Redis costs a request little even before
//     the breaker opens.
//   - If an invalidation could not reach Redis, Redis is bypassed until the cache epoch has been bumped,
//     so no value written before the lost invalidation is ever served again.
//   - Concurrent misses for the same entity collapse into one database read.
//   - With Redis, a near cache (EnableNear) keeps recently read entries in the process too, so a hot
//     row costs no round trip. A write drops its entries from every process's near cache before
//     it answers: it publishes them to every process over Redis and waits for each to acknowledge,
//     or for the lease of one that does not to run out; a process serves its near cache only under
//     a lease it renews by round-tripping pings through the same subscription (nearsync.go,
//     RunNearSync). The event bus's invalidate events (InvalidatePeer) and gaps (Purge) apply too,
//     and no near entry outlives nearMaxTTL. Near fills follow the same tombstone and fill-delay
//     rules as Redis's.
//
// The cache holds rows, not decisions: callers still check who may see what on every read.
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/redisx"
)

// TTLs per entity kind: counts change with every task write, so they live shortest.
var defaultTTLs = map[db.EntityKind]time.Duration{
	db.EntityUser:       5 * time.Minute,
	db.EntityTask:       5 * time.Minute,
	db.EntityTaskCounts: time.Minute,
	db.EntitySession:    5 * time.Minute,
}

// ttlFor is the TTL of kind; unknown kinds get a minute rather than none.
func ttlFor(kind db.EntityKind) time.Duration {
	if ttl, ok := defaultTTLs[kind]; ok {
		return ttl
	}
	return time.Minute
}

// Cache is safe for concurrent use. A nil *Cache is valid and caches nothing.
type Cache struct {
	store  store
	redis  *redisStore   // set when backed by Redis
	near   *localStore   // with Redis: entries recently read by this process (EnableNear)
	sync   *nearSync     // keeps near caches correct across processes (with near)
	prefix string        // of the Redis keys
	guard  *redisx.Guard // set when backed by Redis
	logger *slog.Logger
	flight flightGroup
	// responses is the in-process response cache's versions (Responses, without Redis), bumped by
	// Invalidate and emptied by Purge.
	responses atomic.Pointer[localResponses]

	// lost counts invalidations that could not reach Redis; repaired is the value of lost that the
	// latest epoch bump covers. While they differ Redis is suspect and bypassed.
	lost, repaired atomic.Int64

	now func() time.Time // the clock that times loads against tombstoneTTL

	hits, misses, faults, nearHits atomic.Int64

	// afterDrop, for tests, runs in Invalidate between dropping the rows and bumping the response
	// versions: where a concurrent reader may land.
	afterDrop func()
}

// nearMaxTTL bounds how long a near-cache entry is served. Invalidations reach every near cache
// before the write answers, and a near cache that may have missed one does not serve (nearSync's
// lease), so this is not what keeps it correct: it bounds, with the entry's Redis life before it
// was read, how stale a value that changes without a write (task counts' overdue) can be. At 5 s
// a busy instance went back to Redis for about one read in ten.
const nearMaxTTL = 30 * time.Second

// nearTTL is how long a near-cache entry of kind lives: its kind's TTL, at most nearMaxTTL.
func nearTTL(kind db.EntityKind) time.Duration { return min(ttlFor(kind), nearMaxTTL) }

// EnableNear puts an in-process near cache of at most maxEntries entries in front of Redis. It does
// nothing for a cache without Redis (that one lives in the process already). Only processes that
// hear other processes' invalidations (InvalidatePeer, Purge on a gap) may enable it.
func (c *Cache) EnableNear(maxEntries int) error {
	if c == nil || c.redis == nil {
		return nil
	}
	s, err := newLocalStore(maxEntries)
	if err != nil {
		return err
	}
	c.near = s
	c.sync = newNearSync(c.redis.rdb, c.prefix, c, c.logger)
	return nil
}

// NewLocal returns an in-process cache of at most maxEntries entries.
func NewLocal(maxEntries int, logger *slog.Logger) (*Cache, error) {
	s, err := newLocalStore(maxEntries)
	if err != nil {
		return nil, err
	}
	return &Cache{store: s, logger: logger, now: time.Now}, nil
}

// NewRedis returns a cache in Redis under keys starting with prefix.
func NewRedis(rdb *redis.Client, prefix string, logger *slog.Logger) *Cache {
	c := &Cache{logger: logger, now: time.Now, prefix: prefix}
	c.redis = newRedisStore(rdb, prefix)
	c.store = c.redis
	c.guard = redisx.NewGuard("cache", logger, redisx.GuardOptions{OnRecover: func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.repair(ctx)
	}})
	return c
}

// Stats are counters since start, for metrics and the benchmark.
type Stats struct {
	Hits, Misses, Faults int64
	// NearHits are the hits (counted in Hits too) answered by the near cache, without Redis.
	NearHits int64
}

// Stats returns the hit, miss and fault counters.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Faults: c.faults.Load(), NearHits: c.nearHits.Load()}
}

// callBudget caps one Redis call, like ratelimit's primaryBudget: the client's timeouts alone do not
// bound a call (go-redis retries failed dials and handshakes with backoff, ~0.5 s against a server
// that refuses), and past this a database read is worth more than the cache.
const callBudget = redisx.IOTimeout + 50*time.Millisecond

// do runs a store call, through the breaker and within callBudget when Redis backs the cache.
func (c *Cache) do(ctx context.Context, fn func(context.Context) error) error {
	var err error
	if c.guard != nil {
		if err := ctx.Err(); err != nil {
			return err // the caller gave up: a miss, but no fault of Redis (and no breaker failure)
		}
		cctx, cancel := context.WithTimeout(ctx, callBudget)
		defer cancel()
		err = c.guard.Do(cctx, fn)
	} else {
		err = fn(ctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		c.faults.Add(1)
	}
	return err
}

// key is string(kind) + ":" + id.String(), in one allocation instead of two.
func key(kind db.EntityKind, id uuid.UUID) string {
	const hexDigits = "0123456789abcdef"
	var buf [64]byte
	b := append(buf[:0], kind...)
	b = append(b, ':')
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return string(b)
}

// Invalidate drops entities after a committed write (it implements db.Invalidator). It runs even if
// the request was cancelled, since the write has happened.
func (c *Cache) Invalidate(ctx context.Context, keys []db.EntityKey) {
	if c == nil || len(keys) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	strs := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, cached := defaultTTLs[k.Kind]; cached { // other kinds (writers) are not cache entries
			strs = append(strs, key(k.Kind, k.ID))
		}
	}
	if len(strs) == 0 {
		return
	}
	// A load already running for these keys may carry the rows from before the write: later reads
	// must start their own load rather than wait for that one.
	c.flight.forget(strs)
	if c.near != nil {
		_ = c.near.invalidate(ctx, strs)
	}
	if err := c.do(ctx, func(ctx context.Context) error { return c.store.invalidate(ctx, strs) }); err != nil {
		c.lost.Add(1)
		c.logger.WarnContext(ctx, "cache invalidation lost; bypassing Redis until the cache is retired", "err", err, "keys", len(strs))
	}
	// Only once the rows are gone: an answer computed under the new version must not read them.
	if c.afterDrop != nil {
		c.afterDrop()
	}
	c.bumpResponses(strs)
	if c.sync != nil {
		// After Redis: a process that drops its near entry and reads Redis again finds the tombstone.
		c.sync.broadcast(ctx, strs)
	}
}

// InvalidatePeer applies another process's invalidation (heard over the event bus): the in-process
// cache drops the entries, or with Redis the near cache does (that process invalidated Redis itself).
func (c *Cache) InvalidatePeer(ctx context.Context, keys []db.EntityKey) {
	if c == nil || c.redis == nil {
		c.Invalidate(ctx, keys)
		return
	}
	if c.near == nil || len(keys) == 0 {
		return
	}
	strs := make([]string, 0, len(keys))
	for _, k := range keys {
		if _, cached := defaultTTLs[k.Kind]; cached {
			strs = append(strs, key(k.Kind, k.ID))
		}
	}
	c.flight.forget(strs)
	_ = c.near.invalidate(ctx, strs)
	c.bumpResponses(strs)
}

// bumpResponses gives keys new versions in the in-process response layer (if any), after their
// rows were dropped: answers computed with the old versions are never served again.
func (c *Cache) bumpResponses(strs []string) {
	if r := c.responses.Load(); r != nil {
		r.invalidate(strs)
	}
}

// Purge empties an in-process cache (or the near cache in front of Redis), and makes loads already
// running not fill it: for when this process may have missed other processes' invalidations. Redis
// itself is shared and invalidated by every process directly, so it is left alone.
func (c *Cache) Purge() {
	if c == nil {
		return
	}
	local := c.near
	if c.redis == nil {
		local, _ = c.store.(*localStore)
	}
	if local != nil {
		c.flight.forgetAll()
		local.purge()
	}
	if r := c.responses.Load(); r != nil {
		r.purge()
	}
}

// Local reports whether the cache lives in this process's memory (no Redis).
func (c *Cache) Local() bool { return c != nil && c.redis == nil }

// suspect reports whether an invalidation was lost since the last epoch bump.
func (c *Cache) suspect() bool { return c.lost.Load() != c.repaired.Load() }

// repair retires every entry (bumps the epoch) after a lost invalidation, then trusts Redis again.
func (c *Cache) repair(ctx context.Context) {
	if c.redis == nil {
		return
	}
	// Only invalidations lost before the bump is sent are covered by it; one lost while the retire
	// runs may come after the bump and keeps Redis suspect until the next repair.
	lost := c.lost.Load()
	if lost == c.repaired.Load() {
		return
	}
	if err := c.do(ctx, c.redis.retire); err != nil {
		return
	}
	if c.near != nil {
		c.Purge() // the near cache may hold entries (and answers) read from Redis before the retire
	}
	for {
		r := c.repaired.Load()
		if r >= lost || c.repaired.CompareAndSwap(r, lost) {
			break
		}
	}
	if !c.suspect() {
		c.logger.InfoContext(ctx, "cache retired after a lost invalidation; Redis trusted again")
	}
}

// usable reports whether reads and fills may use the store right now.
func (c *Cache) usable(ctx context.Context) bool {
	if !c.suspect() {
		return true
	}
	if c.guard != nil && !c.guard.Open() {
		c.repair(ctx)
	}
	return !c.suspect()
}

// loadTimeout bounds a shared database load, which runs detached from any one request so that one
// caller giving up does not fail the others waiting on it.
const loadTimeout = 10 * time.Second

// maxFillDelay is how long after its load started a fill may still be stored. An invalidation that
// the load's rows predate was written after the load started, so its tombstone lives at least until
// start+tombstoneTTL; filling well before that keeps "set if absent" meaningful. Slower loads are
// returned but not cached.
const maxFillDelay = tombstoneTTL / 2

// Many returns the entities of kind with these ids, from the cache where possible and from load for
// the rest (filling the cache). Ids that load does not return are absent from the result.
func Many[T any](ctx context.Context, c *Cache, kind db.EntityKind, ids []uuid.UUID,
	load func(context.Context, []uuid.UUID) ([]T, error), idOf func(T) uuid.UUID) (map[uuid.UUID]*T, error) {
	out := make(map[uuid.UUID]*T, len(ids))
	if c == nil {
		rows, err := load(ctx, ids)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			out[idOf(rows[i])] = &rows[i]
		}
		return out, nil
	}

	useStore := c.usable(ctx)
	missing := ids
	var gen int64 // the store generation (Redis epoch) this read saw; its fills go there
	// The near cache's generation and the time before it was read: its fills, like Redis's, must
	// land in the generation and within maxFillDelay of the read they come from.
	var nearGen int64
	var nearStart time.Time
	near := c.near
	if !useStore || near != nil && !c.sync.serving() {
		near = nil // its lease lapsed: it may have missed another process's invalidation
	}
	if near != nil {
		nearStart, nearGen = c.now(), near.generation()
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = key(kind, id)
		}
		missing = localFound(near, ids, keys, out)
		c.hits.Add(int64(len(ids) - len(missing)))
		c.nearHits.Add(int64(len(ids) - len(missing)))
	}
	if useStore && len(missing) > 0 {
		keys := make([]string, len(missing))
		for i, id := range missing {
			keys[i] = key(kind, id)
		}
		asked := missing
		if local, ok := c.store.(*localStore); ok {
			gen = local.generation()
			missing = localFound(local, asked, keys, out)
		} else {
			var found map[string]string
			if err := c.do(ctx, func(ctx context.Context) error {
				var err error
				found, err = c.store.getMulti(ctx, keys)
				return err
			}); err != nil {
				found = nil // a cache fault is a miss
			}
			gen = c.store.generation()
			missing = decodeFound(asked, keys, found, out)
			if near != nil && len(missing) < len(asked) && c.now().Sub(nearStart) < maxFillDelay {
				fill := make(map[string]string, len(asked)-len(missing))
				for _, k := range keys {
					if v, ok := found[k]; ok && v != tombstone {
						fill[k] = v
					}
				}
				_ = near.fill(ctx, nearGen, fill, nearTTL(kind))
			}
		}
		c.hits.Add(int64(len(asked) - len(missing)))
	}
	c.misses.Add(int64(len(missing)))
	if len(missing) == 0 {
		return out, nil
	}

	// Rows read from a replica may predate a write whose tombstone has already expired: they are
	// served but never cached, and their loads are not shared with primary reads.
	noFill := StaleSource(ctx)
	flightKind := string(kind)
	if noFill {
		flightKind += "@replica"
	}
	loaded, err := c.flight.do(ctx, flightKind, missing, func(ids []uuid.UUID) (map[uuid.UUID]any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		start := c.now()
		rows, err := load(lctx, ids)
		if err != nil {
			return nil, err
		}
		m := make(map[uuid.UUID]any, len(rows))
		fill := make(map[string]string, len(rows))
		for i := range rows {
			m[idOf(rows[i])] = &rows[i]
			if b, err := json.Marshal(rows[i]); err == nil {
				fill[key(kind, idOf(rows[i]))] = string(b)
			}
		}
		if age := c.now().Sub(start); useStore && !noFill && len(fill) > 0 && age < maxFillDelay {
			fctx, cancel := context.WithTimeout(lctx, maxFillDelay-age)
			defer cancel()
			_ = c.do(fctx, func(ctx context.Context) error { return c.store.fill(ctx, gen, fill, ttlFor(kind)) })
		}
		if near != nil && !noFill && len(fill) > 0 && c.now().Sub(nearStart) < maxFillDelay {
			_ = near.fill(lctx, nearGen, fill, nearTTL(kind))
		}
		return m, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", kind, err)
	}
	for id, v := range loaded {
		out[id] = v.(*T)
	}
	return out, nil
}

// decodeFound puts the entries of found (keyed by keys, one per id) into out and returns the ids
// not found (absent, tombstoned or undecodable).
func decodeFound[T any](ids []uuid.UUID, keys []string, found map[string]string, out map[uuid.UUID]*T) []uuid.UUID {
	var missing []uuid.UUID
	for i, id := range ids {
		v, ok := found[keys[i]]
		if !ok || v == tombstone {
			missing = append(missing, id)
			continue
		}
		var row T
		if err := json.Unmarshal([]byte(v), &row); err != nil {
			missing = append(missing, id)
			continue
		}
		out[id] = &row
	}
	return missing
}

// localFound is decodeFound for an in-process store, without copying its entries into a map: an
// entry decoded by an earlier read is copied (copyRow) rather than decoded again, and the first read
// of an entry remembers its decoded value for the next ones. What a read returns is always its own
// copy, as a fresh decode would be, so callers may modify it.
func localFound[T any](s *localStore, ids []uuid.UUID, keys []string, out map[uuid.UUID]*T) []uuid.UUID {
	var missing []uuid.UUID
	next := 0 // ids[next:] not yet seen by found; lookup reports live keys in order
	s.lookup(keys, func(i int, e *localEntry) {
		missing = append(missing, ids[next:i]...)
		next = i + 1
		if e.value == tombstone {
			missing = append(missing, ids[i])
			return
		}
		if p := e.decoded.Load(); p != nil {
			if v, ok := (*p).(*T); ok {
				if row, ok := copyRow(v); ok {
					out[ids[i]] = row
					return
				}
			}
		}
		row := new(T)
		if err := json.Unmarshal([]byte(e.value), row); err != nil {
			missing = append(missing, ids[i])
			return
		}
		if cp, ok := copyRow(row); ok {
			var memo any = row
			e.decoded.Store(&memo)
			row = cp
		}
		out[ids[i]] = row
	})
	return append(missing, ids[next:]...)
}

// copyRow returns a copy of v that shares nothing mutable with it, for the row types whose copying
// it knows (false for others, which are then decoded on every read). TestCopyRowCoversEveryField
// fails if a reference field is added to one of these types without being copied here.
func copyRow[T any](v *T) (*T, bool) {
	switch p := any(v).(type) {
	case *db.Task:
		c := *p
		if p.AssigneeID != nil {
			a := *p.AssigneeID
			c.AssigneeID = &a
		}
		if p.Description != nil {
			d := *p.Description
			c.Description = &d
		}
		if p.DueAt != nil {
			d := *p.DueAt
			c.DueAt = &d
		}
		c.Tags = slices.Clone(p.Tags)
		return any(&c).(*T), true
	case *db.User, *db.Session, *db.TaskCounts: // values only (strings are immutable)
		c := *v
		return &c, true
	}
	return nil, false
}

type staleSourceKey struct{}

// WithStaleSource marks loads under ctx as reading a source that may lag (a replica): Many serves
// what they return but does not cache it.
func WithStaleSource(ctx context.Context) context.Context {
	return context.WithValue(ctx, staleSourceKey{}, true)
}

// StaleSource reports whether WithStaleSource marked ctx.
func StaleSource(ctx context.Context) bool {
	v, _ := ctx.Value(staleSourceKey{}).(bool)
	return v
}
