package ratelimit

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/redisx"
	"github.com/taskgraph/taskgraph/internal/testenv"
)

// deadPrimary returns a Redis limiter whose client points at url, which never answers.
func deadPrimary(t *testing.T, url string) Limiter {
	t.Helper()
	rdb, err := redisx.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return NewRedis(rdb, "test:dead:")
}

// silentRedis listens on a free port, accepts connections and never writes: a hung Redis.
func silentRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// checkFallsBack makes calls through a Resilient whose primary is down and checks that each is
// answered quickly by the fallback, that the breaker opens, and that the fallback still limits.
func checkFallsBack(t *testing.T, primary Limiter, perCall time.Duration) {
	t.Helper()
	guard := redisx.NewGuard("test", discardLogger(), redisx.GuardOptions{})
	r := NewResilient(primary, NewLocal(100), guard, discardLogger())
	l := PerMinute(10, 3)
	const calls = 10
	for i := range calls {
		wasOpen := guard.Open()
		start := time.Now()
		res, err := r.Allow(context.Background(), "k", l, 1)
		took := time.Since(start)
		t.Logf("call %d: %v (breaker open before: %v)", i, took, wasOpen)
		if err != nil {
			t.Fatalf("call %d: primary's error leaked: %v", i, err)
		}
		if limit := perCall; took > limit || (wasOpen && took > 5*time.Millisecond) {
			t.Fatalf("call %d took %v (breaker open before: %v), want under %v, or 5ms once open", i, took, wasOpen, limit)
		}
		if want := i < l.Burst; res.Allowed != want {
			t.Fatalf("call %d: got %+v, want Allowed %v from the fallback's burst of %d", i, res, want, l.Burst)
		}
	}
	if !guard.Open() {
		t.Fatal("breaker still closed after every call failed")
	}
	if got := r.Faults(); got != calls {
		t.Fatalf("Faults() = %d, want %d", got, calls)
	}
}

func TestResilientRedisStopped(t *testing.T) {
	checkFallsBack(t, deadPrimary(t, "redis://127.0.0.1:1"), 300*time.Millisecond)
}

func TestResilientRedisNeverAnswers(t *testing.T) {
	checkFallsBack(t, deadPrimary(t, "redis://"+silentRedis(t)), 500*time.Millisecond)
}

// switchable fails on demand in front of a real limiter, and counts the calls that reach it.
type switchable struct {
	Limiter
	down  atomic.Bool
	calls atomic.Int64
}

func (s *switchable) Allow(ctx context.Context, key string, l Limit, n int) (Result, error) {
	s.calls.Add(1)
	if s.down.Load() {
		return Result{}, errors.New("injected outage")
	}
	return s.Limiter.Allow(ctx, key, l, n)
}

func TestResilientRecovers(t *testing.T) {
	primary := &switchable{Limiter: NewRedis(newRedisClient(t), testPrefix(t))}
	guard := redisx.NewGuard("test", discardLogger(), redisx.GuardOptions{CoolDown: 200 * time.Millisecond})
	r := NewResilient(primary, NewLocal(100), guard, discardLogger())
	l := PerMinute(10, 3)

	primary.down.Store(true)
	for i := 0; !guard.Open(); i++ {
		if i == 10 {
			t.Fatal("breaker still closed after 10 failures")
		}
		allow(t, r, "k", l, 1)
	}
	// The fallback has now spent its whole burst of 3 for "k"; Redis has spent nothing.
	primary.down.Store(false)
	calls := primary.calls.Load()
	if res := allow(t, r, "k", l, 1); res.Allowed {
		t.Fatalf("breaker open: got %+v, want the fallback's refusal", res)
	}
	if primary.calls.Load() != calls {
		t.Fatal("primary called while the breaker was open")
	}
	faults := r.Faults()

	testenv.WaitFor(t, 5*time.Second, "the breaker to close after a 200ms cool-down", func() bool { return !guard.Open() })
	res := allow(t, r, "k", l, 1)
	if !res.Allowed || res.Remaining != 2 {
		t.Fatalf("after cool-down: got %+v, want Redis' fresh bucket (allowed, Remaining 2)", res)
	}
	if r.Faults() != faults || guard.Open() {
		t.Fatalf("after recovery: Faults %d (was %d), breaker open %v", r.Faults(), faults, guard.Open())
	}
}

func TestResilientHealthyPrimaryIsShared(t *testing.T) {
	prefix := testPrefix(t)
	// Two instances, each with its own client, guard and fallback, sharing one Redis.
	newInstance := func() *Resilient {
		guard := redisx.NewGuard("test", discardLogger(), redisx.GuardOptions{})
		return NewResilient(NewRedis(newRedisClient(t), prefix), NewLocal(100), guard, discardLogger())
	}
	a, b := newInstance(), newInstance()
	l := PerMinute(10, 2)
	allow(t, a, "k", l, 1)
	allow(t, b, "k", l, 1)
	if res := allow(t, a, "k", l, 1); res.Allowed {
		t.Fatalf("third call across instances: got %+v, want refused by the shared budget", res)
	}
	if a.Faults()+b.Faults() != 0 {
		t.Fatalf("faults with a healthy Redis: %d and %d", a.Faults(), b.Faults())
	}
}

func TestResilientCallerErrors(t *testing.T) {
	primary := &switchable{Limiter: NewLocal(10)}
	guard := redisx.NewGuard("test", discardLogger(), redisx.GuardOptions{ConsecutiveFailures: 1})
	r := NewResilient(primary, NewLocal(10), guard, discardLogger())

	if _, err := r.Allow(context.Background(), "k", PerMinute(10, 3), 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("n = 0: err %v, want ErrInvalid", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res, err := r.Allow(ctx, "k", PerMinute(10, 3), 1); err != nil || !res.Allowed {
		t.Fatalf("cancelled caller: got %+v, %v, want the fallback's answer", res, err)
	}
	// Neither the caller's bug nor its departure is Redis' fault.
	if primary.calls.Load() != 0 || r.Faults() != 0 || guard.Open() {
		t.Fatalf("primary calls %d, faults %d, breaker open %v; want 0, 0, false",
			primary.calls.Load(), r.Faults(), guard.Open())
	}
}
