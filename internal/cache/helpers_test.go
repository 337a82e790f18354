package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/redisx"
	"github.com/taskgraph/taskgraph/internal/testenv"
)

// row is what the tests cache: an id and a value that changes when the "database" is written.
type row struct {
	ID uuid.UUID
	V  string
}

func rowID(r row) uuid.UUID { return r.ID }

const kind = db.EntityTask

// table is a fake database table behind a loader that records every call.
type table struct {
	mu    sync.Mutex
	rows  map[uuid.UUID]string
	calls int
	ids   []uuid.UUID // every id asked for, over all calls
	// before, when set, runs inside each load after the rows were read (the "snapshot") and before
	// they are returned, so a test can stage a write between a read and its fill.
	before func(ids []uuid.UUID)
}

func newTable() *table { return &table{rows: map[uuid.UUID]string{}} }

func (tb *table) set(id uuid.UUID, v string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows[id] = v
}

func (tb *table) load(_ context.Context, ids []uuid.UUID) ([]row, error) {
	tb.mu.Lock()
	tb.calls++
	tb.ids = append(tb.ids, ids...)
	var out []row
	for _, id := range ids {
		if v, ok := tb.rows[id]; ok {
			out = append(out, row{ID: id, V: v})
		}
	}
	before := tb.before
	tb.mu.Unlock()
	if before != nil {
		before(ids)
	}
	return out, nil
}

// loaded returns how many loads ran and how often each id was asked for.
func (tb *table) loaded() (calls int, perID map[uuid.UUID]int) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	perID = map[uuid.UUID]int{}
	for _, id := range tb.ids {
		perID[id]++
	}
	return tb.calls, perID
}

func many(t *testing.T, c *Cache, tb *table, ids ...uuid.UUID) map[uuid.UUID]*row {
	t.Helper()
	got, err := Many(context.Background(), c, kind, ids, tb.load, rowID)
	if err != nil {
		t.Fatalf("Many: %v", err)
	}
	return got
}

// value returns the value Many returned for id, or "<absent>".
func value(m map[uuid.UUID]*row, id uuid.UUID) string {
	if r, ok := m[id]; ok {
		return r.V
	}
	return "<absent>"
}

func invalidate(c *Cache, ids ...uuid.UUID) {
	keys := make([]db.EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = db.EntityKey{Kind: kind, ID: id}
	}
	c.Invalidate(context.Background(), keys)
}

// stored is what the backing store holds for id right now (tombstone included), or "<absent>".
func stored(t *testing.T, c *Cache, id uuid.UUID) string {
	t.Helper()
	k := key(kind, id)
	found, err := c.store.getMulti(context.Background(), []string{k})
	if err != nil {
		t.Fatalf("store get: %v", err)
	}
	if v, ok := found[k]; ok {
		return v
	}
	return "<absent>"
}

func sameIDs(a, b []uuid.UUID) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	cmp := func(p, q uuid.UUID) int { return slices.Compare(p[:], q[:]) }
	slices.SortFunc(x, cmp)
	slices.SortFunc(y, cmp)
	return slices.Equal(x, y)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// redisURL is the Redis the tests use (TEST_REDIS_ADDR overrides it). Every test works under its own
// key prefix, so tests (and other packages' tests) can share the logical database.
func redisURL() string { return testenv.RedisURL(0) }

// newRedisClient returns a tight-timeout client to the test Redis, closed when the test ends.
func newRedisClient(t *testing.T, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	rdb, err := redisx.NewClient(redisURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("test Redis at %s unreachable (set TEST_REDIS_ADDR): %v", redisURL(), err)
	}
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	return rdb
}

// testPrefix returns a key prefix no other test uses and deletes its keys when the test ends.
func testPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "test:cache:" + hex.EncodeToString(b) + ":"
	rdb := newRedisClient(t) // registered before the deletion below, so closed after it
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var keys []string
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("list test keys: %v", err)
			return
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("delete test keys: %v", err)
			}
		}
	})
	return prefix
}

// newRedisCache is one instance's cache on Redis under prefix (several may share a prefix, like
// several servers share Redis).
func newRedisCache(t *testing.T, prefix string, hooks ...redis.Hook) *Cache {
	t.Helper()
	return NewRedis(newRedisClient(t, hooks...), prefix, discardLogger())
}

func newLocalCache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewLocal(1000, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// backends runs a test against the in-process store and against Redis.
func backends(t *testing.T, test func(t *testing.T, c *Cache)) {
	t.Run("local", func(t *testing.T) { test(t, newLocalCache(t)) })
	t.Run("redis", func(t *testing.T) { test(t, newRedisCache(t, testPrefix(t))) })
}
