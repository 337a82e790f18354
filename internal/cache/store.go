package cache

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"
)

// tombstone marks a just-invalidated key for a moment. Fills use "set if absent", so a reader that
// fetched a row before a concurrent write cannot put the old row back after the invalidation.
const (
	tombstone    = "\x00"
	tombstoneTTL = 2 * time.Second
)

// store is the byte-level cache underneath: Redis, shared by every instance, or an in-process LRU
// for a single instance.
type store interface {
	// getMulti returns the values found (tombstones included, as tombstone).
	getMulti(ctx context.Context, keys []string) (map[string]string, error)
	// generation names the entries a read sees now (the Redis epoch). A fill passes the generation
	// read before its load, so rows loaded before the cache was retired go to the retired entries.
	generation() int64
	// fill stores values only where the key is absent, in generation gen.
	fill(ctx context.Context, gen int64, values map[string]string, ttl time.Duration) error
	// invalidate replaces keys with short-lived tombstones in the current generation.
	invalidate(ctx context.Context, keys []string) error
}

// localStore is a bounded in-process LRU with per-entry expiry.
type localStore struct {
	mu  sync.Mutex
	lru *lru.Cache[string, *localEntry]
	now func() time.Time
	gen atomic.Int64 // bumped by purge, so fills of loads that started before it are dropped
}

// localEntry is immutable once stored, except decoded: the value decoded once (by the first read
// that found it), which later reads copy instead of decoding the JSON again (see lookup).
type localEntry struct {
	value   string
	expires time.Time
	decoded atomic.Pointer[any]
}

func newLocalStore(maxEntries int) (*localStore, error) {
	c, err := lru.New[string, *localEntry](maxEntries)
	if err != nil {
		return nil, fmt.Errorf("local cache: %w", err)
	}
	return &localStore{lru: c, now: time.Now}, nil
}

func (s *localStore) getMulti(_ context.Context, keys []string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(keys))
	now := s.now()
	for _, k := range keys {
		if e, ok := s.lru.Get(k); ok && now.Before(e.expires) {
			out[k] = e.value
		}
	}
	return out, nil
}

// lookup calls found for each key with a live entry (tombstones included), in the order of keys.
// found runs under the store's lock: it must be quick and must not call the store.
func (s *localStore) lookup(keys []string, found func(i int, e *localEntry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for i, k := range keys {
		if e, ok := s.lru.Get(k); ok && now.Before(e.expires) {
			found(i, e)
		}
	}
}

// generation changes only when purge empties the store.
func (s *localStore) generation() int64 { return s.gen.Load() }

func (s *localStore) fill(_ context.Context, gen int64, values map[string]string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen.Load() {
		return nil // loaded before a purge: may predate a write whose invalidation was lost
	}
	now := s.now()
	for k, v := range values {
		if e, ok := s.lru.Peek(k); ok && now.Before(e.expires) {
			continue
		}
		s.lru.Add(k, &localEntry{value: v, expires: now.Add(ttl)})
	}
	return nil
}

// purge drops every entry and retires fills still in flight.
func (s *localStore) purge() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1)
	s.lru.Purge()
}

func (s *localStore) invalidate(_ context.Context, keys []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp := s.now().Add(tombstoneTTL)
	for _, k := range keys {
		s.lru.Add(k, &localEntry{value: tombstone, expires: exp})
	}
	return nil
}

// redisStore keeps entries in Redis under "<prefix><epoch>:<key>". The epoch lives in Redis too and
// is read with every lookup, so bumping it (after an outage that may have lost invalidations)
// instantly retires every entry on every instance.
type redisStore struct {
	rdb      *redis.Client
	prefix   string
	mu       sync.Mutex
	epoch    int64
	epochKey string
}

func newRedisStore(rdb *redis.Client, prefix string) *redisStore {
	return &redisStore{rdb: rdb, prefix: prefix, epochKey: prefix + "epoch"}
}

func (s *redisStore) currentEpoch() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

func (s *redisStore) full(epoch int64, key string) string {
	return s.prefix + strconv.FormatInt(epoch, 10) + ":" + key
}

func (s *redisStore) getMulti(ctx context.Context, keys []string) (map[string]string, error) {
	epoch := s.currentEpoch()
	full := make([]string, 0, len(keys)+1)
	full = append(full, s.epochKey)
	for _, k := range keys {
		full = append(full, s.full(epoch, k))
	}
	vals, err := s.rdb.MGet(ctx, full...).Result()
	if err != nil {
		return nil, fmt.Errorf("redis MGET: %w", err)
	}
	var seen int64
	if v, ok := vals[0].(string); ok {
		seen, _ = strconv.ParseInt(v, 10, 64)
	}
	if seen != epoch {
		// Another instance retired the cache: what we read belongs to the old epoch.
		s.mu.Lock()
		s.epoch = seen
		s.mu.Unlock()
		return map[string]string{}, nil
	}
	out := make(map[string]string, len(keys))
	for i, k := range keys {
		if v, ok := vals[i+1].(string); ok {
			out[k] = v
		}
	}
	return out, nil
}

func (s *redisStore) generation() int64 { return s.currentEpoch() }

// fill writes into epoch, the one seen before the values were loaded. If the cache was retired since,
// the values land in the retired epoch, where nobody reads them: they may predate an invalidation
// that was written to the retired epoch.
func (s *redisStore) fill(ctx context.Context, epoch int64, values map[string]string, ttl time.Duration) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, v := range values {
			p.SetNX(ctx, s.full(epoch, k), v, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis fill: %w", err)
	}
	return nil
}

// invalidateScript writes tombstones under the epoch Redis holds now, read in the same atomic step:
// this instance's idea of the epoch may be stale (another instance retired the cache since its last
// read), and a tombstone in a retired epoch would leave the live entry in place. The data keys are
// built in the script, so this needs a non-cluster Redis (as MGET of many keys already does).
// KEYS[1] = epoch key; ARGV = prefix, tombstone, ttl in ms, keys...
//
// It also gives each key a new version token (see Responses): the server's clock in microseconds and
// a sequence number, so a token never repeats, even if Redis evicted the previous one.
var invalidateScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[1]) or '0'
local t = redis.call('TIME')
local token = t[1] .. t[2] .. ':' .. redis.call('INCR', ARGV[1] .. 'verseq')
for i = 4, #ARGV do
  redis.call('SET', ARGV[1] .. epoch .. ':' .. ARGV[i], ARGV[2], 'PX', ARGV[3])
  redis.call('SET', ARGV[1] .. epoch .. ':ver:' .. ARGV[i], token, 'PX', 86400000)
end
return epoch
`)

func (s *redisStore) invalidate(ctx context.Context, keys []string) error {
	args := make([]any, 0, len(keys)+3)
	args = append(args, s.prefix, tombstone, tombstoneTTL.Milliseconds())
	for _, k := range keys {
		args = append(args, k)
	}
	seen, err := invalidateScript.Run(ctx, s.rdb, []string{s.epochKey}, args...).Text()
	if err != nil {
		return fmt.Errorf("redis invalidate: %w", err)
	}
	if n, err := strconv.ParseInt(seen, 10, 64); err == nil {
		s.mu.Lock()
		s.epoch = n
		s.mu.Unlock()
	}
	return nil
}

// retire bumps the shared epoch so no instance reads entries written before now.
func (s *redisStore) retire(ctx context.Context) error {
	n, err := s.rdb.Incr(ctx, s.epochKey).Result()
	if err != nil {
		return fmt.Errorf("redis retire cache: %w", err)
	}
	s.mu.Lock()
	s.epoch = n
	s.mu.Unlock()
	return nil
}
