package cache

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/redisx"
)

// brokenRedis is a TCP server that accepts connections and then either closes them at once (a Redis
// that refuses, as seen through a load balancer or proxy) or never answers (a Redis that hangs).
func brokenRedis(t *testing.T, hang bool) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !hang {
				_ = c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	rdb, err := redisx.NewClient("redis://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = rdb.Close()
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return rdb
}

// faultBound is a generous bound for one cache call against a broken Redis. Each Redis call is
// capped at callBudget (150 ms) and one Many makes at most two (read, fill) before the breaker opens;
// without the cap go-redis' own retries make a single call take 0.4-1.1 s.
const faultBound = time.Second

// TestBrokenRedisIsAMissWithinBudget: with Redis refusing or hanging, Many answers from the loader,
// invalidations are counted as lost, reads stay correct, and no call takes long.
func TestBrokenRedisIsAMissWithinBudget(t *testing.T) {
	for _, hang := range []bool{false, true} {
		name := map[bool]string{false: "refusing", true: "hanging"}[hang]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := NewRedis(brokenRedis(t, hang), "test:broken:", discardLogger())
			tb := newTable()
			id := uuid.New()
			want := "v0"
			tb.set(id, want)
			timed := func(what string, fn func()) {
				t.Helper()
				start := time.Now()
				fn()
				if d := time.Since(start); d > faultBound {
					t.Errorf("%s took %v against a %s Redis, want < %v", what, d, name, faultBound)
				}
			}
			for i := range 4 {
				timed("Many", func() {
					if got := many(t, c, tb, id); value(got, id) != want {
						t.Fatalf("read %d = %s, want %s", i, value(got, id), want)
					}
				})
				want = fmt.Sprintf("v%d", i+1)
				tb.set(id, want)
				timed("Invalidate", func() { invalidate(c, id) })
			}
			if s := c.Stats(); s.Faults < 3 || s.Hits != 0 {
				t.Fatalf("stats %+v, want at least 3 faults and no hits", s)
			}
			if !c.suspect() {
				t.Fatal("invalidations were lost but Redis is not suspect")
			}
		})
	}
}

// TestDocumentsWithBrokenRedisWithinBudget: persisted-query lookups against a broken Redis are misses
// and do not take long each (capped per call; without the cap one lookup costs ~0.5 s).
func TestDocumentsWithBrokenRedisWithinBudget(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "refusing", true: "hanging"}[hang], func(t *testing.T) {
			t.Parallel()
			d, err := NewDocuments(brokenRedis(t, hang), "test:apq:", 10, discardLogger())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for range 3 { // the breaker opens after 3 failures: these are the slow ones
				if _, ok := d.Get(context.Background(), "unknown-hash"); ok {
					t.Fatal("found a document in a broken Redis")
				}
			}
			if elapsed := time.Since(start); elapsed > faultBound {
				t.Fatalf("3 lookups took %v, want < %v in all", elapsed, faultBound)
			}
			d.Add(context.Background(), "h", "{ me { id } }")
			if doc, ok := d.Get(context.Background(), "h"); !ok || doc != "{ me { id } }" {
				t.Fatalf("local fallback lost the document: %q %v", doc, ok)
			}
		})
	}
}
