// Package cache is Taskgraph's read cache: cache-aside for users, tasks and per-user task counts, in
// Redis (shared by every instance) or, without REDIS_URL, in a bounded in-process LRU.
//
// Rules it keeps:
//   - Writes invalidate after commit (db calls Invalidate); fills never overwrite, so an invalidation
//     is never undone by a slow reader.
//   - A Redis fault is a cache miss, never an error: reads go to PostgreSQL and the fault is counted.
//   - If an invalidation could not reach Redis, Redis is bypassed until the cache epoch has been bumped,
//     so no value written before the lost invalidation is ever served again.
//   - Concurrent misses for the same entity collapse into one database read.
//
// The cache holds rows, not decisions: callers still check who may see what on every read.
package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	guard  *redisx.Guard // set when backed by Redis
	logger *slog.Logger
	flight flightGroup

	// suspect is set when an invalidation was lost; Redis is bypassed until the epoch is bumped.
	suspect atomic.Bool

	hits, misses, faults atomic.Int64
}

// NewLocal returns an in-process cache of at most maxEntries entries.
func NewLocal(maxEntries int, logger *slog.Logger) (*Cache, error) {
	s, err := newLocalStore(maxEntries)
	if err != nil {
		return nil, err
	}
	return &Cache{store: s, logger: logger}, nil
}

// NewRedis returns a cache in Redis under keys starting with prefix.
func NewRedis(rdb *redis.Client, prefix string, logger *slog.Logger) *Cache {
	c := &Cache{logger: logger}
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
}

// Stats returns the hit, miss and fault counters.
func (c *Cache) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Faults: c.faults.Load()}
}

// do runs a store call, through the breaker when Redis backs the cache.
func (c *Cache) do(ctx context.Context, fn func(context.Context) error) error {
	var err error
	if c.guard != nil {
		err = c.guard.Do(ctx, fn)
	} else {
		err = fn(ctx)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		c.faults.Add(1)
	}
	return err
}

func key(kind db.EntityKind, id uuid.UUID) string { return string(kind) + ":" + id.String() }

// Invalidate drops entities after a committed write (it implements db.Invalidator). It runs even if
// the request was cancelled, since the write has happened.
func (c *Cache) Invalidate(ctx context.Context, keys []db.EntityKey) {
	if c == nil || len(keys) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	strs := make([]string, len(keys))
	for i, k := range keys {
		strs[i] = key(k.Kind, k.ID)
	}
	if err := c.do(ctx, func(ctx context.Context) error { return c.store.invalidate(ctx, strs) }); err != nil {
		c.suspect.Store(true)
		c.logger.WarnContext(ctx, "cache invalidation lost; bypassing Redis until the cache is retired", "err", err, "keys", len(strs))
	}
}

// repair retires every entry (bumps the epoch) after a lost invalidation, then trusts Redis again.
func (c *Cache) repair(ctx context.Context) {
	if c.redis == nil || !c.suspect.Load() {
		return
	}
	if err := c.do(ctx, c.redis.retire); err != nil {
		return
	}
	c.suspect.Store(false)
	c.logger.InfoContext(ctx, "cache retired after a lost invalidation; Redis trusted again")
}

// usable reports whether reads and fills may use the store right now.
func (c *Cache) usable(ctx context.Context) bool {
	if !c.suspect.Load() {
		return true
	}
	if c.guard != nil && !c.guard.Open() {
		c.repair(ctx)
	}
	return !c.suspect.Load()
}

// loadTimeout bounds a shared database load, which runs detached from any one request so that one
// caller giving up does not fail the others waiting on it.
const loadTimeout = 10 * time.Second

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
	if useStore {
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = key(kind, id)
		}
		var found map[string]string
		if err := c.do(ctx, func(ctx context.Context) error {
			var err error
			found, err = c.store.getMulti(ctx, keys)
			return err
		}); err != nil {
			found = nil // a cache fault is a miss
		}
		missing = missing[:0:0]
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
		c.hits.Add(int64(len(ids) - len(missing)))
	}
	c.misses.Add(int64(len(missing)))
	if len(missing) == 0 {
		return out, nil
	}

	loaded, err := c.flight.do(ctx, string(kind), missing, func(ids []uuid.UUID) (map[uuid.UUID]any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
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
		if useStore && len(fill) > 0 {
			_ = c.do(lctx, func(ctx context.Context) error { return c.store.fill(ctx, fill, ttlFor(kind)) })
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
