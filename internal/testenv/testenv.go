// Package testenv names the real services tests talk to (PostgreSQL, Redis) and hands out isolated
// pieces of them. It imports nothing of Taskgraph, so every package's tests can use it.
//
// TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432) and TEST_REDIS_ADDR (default
// 127.0.0.1:6379) point the tests elsewhere, e.g. at a private Redis so that two test runs on one
// machine do not flush each other's databases.
package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// PostgresURL is the PostgreSQL server tests create their databases on (no database name).
func PostgresURL() string {
	if u := os.Getenv("TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432"
}

// RedisAddr is the host:port of the Redis tests use.
func RedisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// RedisURL is the URL of logical database n of the test Redis.
func RedisURL(n int) string { return fmt.Sprintf("redis://%s/%d", RedisAddr(), n) }

// FlushedRedisDB empties logical database n of the test Redis now and when the test ends, and
// returns its URL. Each test that flushes owns its number (tests of one package run one at a time
// unless they call t.Parallel, and those get distinct numbers).
func FlushedRedisDB(t testing.TB, n int) string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: n})
	flush := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return rdb.FlushDB(ctx).Err()
	}
	if err := flush(); err != nil {
		_ = rdb.Close()
		t.Fatalf("Redis at %s (db %d) unavailable: %v", RedisAddr(), n, err)
	}
	t.Cleanup(func() { // registered before the servers that use it, so it runs after they stopped
		if err := flush(); err != nil {
			t.Errorf("flush Redis db %d: %v", n, err)
		}
		_ = rdb.Close()
	})
	return RedisURL(n)
}

// WaitFor polls cond until it holds, failing the test with what after timeout. It is the one way
// tests wait: for a signal (a row, a counter, a log line, an event), never for a fixed time.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitForState(t, timeout, what, func() (bool, string) { return cond(), "" })
}

// WaitForState is WaitFor for a condition that can describe where it stands, for the failure message.
func WaitForState(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := time.Millisecond; ; wait = min(wait*2, 50*time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				what += " (last: " + state + ")"
			}
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(wait)
	}
}
