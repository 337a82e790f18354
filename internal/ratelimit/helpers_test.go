package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/redisx"
	"github.com/taskgraph/taskgraph/internal/testenv"
)

// redisURL is the Redis the tests use (TEST_REDIS_ADDR overrides it).
func redisURL() string { return testenv.RedisURL(0) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newRedisClient returns a tight-timeout client to the test Redis, closed when the test ends.
func newRedisClient(t *testing.T) *redis.Client {
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
	return rdb
}

// testPrefix returns a prefix no other test uses and deletes its keys when the test ends.
func testPrefix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "test:" + hex.EncodeToString(b) + ":"
	rdb := newRedisClient(t) // registered before the deletion below, so closed after it
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// redis_rate stores keys under "rate:".
		keys, err := rdb.Keys(ctx, "rate:"+prefix+"*").Result()
		if err != nil {
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

// allow calls lim.Allow and fails the test on error.
func allow(t *testing.T, lim Limiter, key string, l Limit, n int) Result {
	t.Helper()
	res, err := lim.Allow(context.Background(), key, l, n)
	if err != nil {
		t.Fatalf("Allow(%q, %d): %v", key, n, err)
	}
	return res
}
