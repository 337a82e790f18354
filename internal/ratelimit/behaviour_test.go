package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// testBehaviours checks what every Limiter must do; newLimiter returns a fresh, empty limiter.
func testBehaviours(t *testing.T, newLimiter func(t *testing.T) Limiter) {
	t.Run("peek reports the budget and spends nothing", func(t *testing.T) {
		lim := newLimiter(t)
		l := PerHour(5, 5)
		peek := func() Result {
			t.Helper()
			res, err := lim.Peek(context.Background(), "p", l)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := peek(); res.Remaining != 5 || res.ResetAfter != 0 {
			t.Fatalf("fresh key: got %+v, want Remaining 5, ResetAfter 0", res)
		}
		allow(t, lim, "p", l, 2)
		for range 3 {
			if res := peek(); res.Remaining != 3 || res.ResetAfter <= 0 {
				t.Fatalf("after spending 2: got %+v, want Remaining 3 and a reset time", res)
			}
		}
		if res := allow(t, lim, "p", l, 3); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("peeks spent budget: got %+v, want the last 3 allowed", res)
		}
	})
	t.Run("burst then refusal, allowed again after RetryAfter", func(t *testing.T) {
		lim := newLimiter(t)
		l := Limit{Rate: 10, Period: time.Second, Burst: 3}
		for want := 2; want >= 0; want-- {
			res := allow(t, lim, "k", l, 1)
			if !res.Allowed || res.Remaining != want || res.RetryAfter != 0 {
				t.Fatalf("within burst: got %+v, want allowed with Remaining %d, RetryAfter 0", res, want)
			}
			if res.ResetAfter <= 0 || res.ResetAfter > 300*time.Millisecond {
				t.Fatalf("ResetAfter %v, want in (0, 300ms]", res.ResetAfter)
			}
		}
		res := allow(t, lim, "k", l, 1)
		if res.Allowed || res.Remaining != 0 {
			t.Fatalf("over burst: got %+v, want refused with Remaining 0", res)
		}
		if res.RetryAfter <= 0 || res.RetryAfter > 100*time.Millisecond {
			t.Fatalf("RetryAfter %v, want in (0, 100ms] (one emission interval)", res.RetryAfter)
		}
		// Only enough if the refusal spent nothing.
		time.Sleep(res.RetryAfter)
		if res := allow(t, lim, "k", l, 1); !res.Allowed {
			t.Fatalf("after waiting RetryAfter: got %+v, want allowed", res)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		lim := newLimiter(t)
		l := PerMinute(2, 2)
		allow(t, lim, "a", l, 2)
		if res := allow(t, lim, "a", l, 1); res.Allowed {
			t.Fatalf("a over burst: got %+v, want refused", res)
		}
		if res := allow(t, lim, "b", l, 1); !res.Allowed || res.Remaining != 1 {
			t.Fatalf("b: got %+v, want allowed with Remaining 1", res)
		}
	})

	t.Run("n events cost n", func(t *testing.T) {
		lim := newLimiter(t)
		l := PerMinute(10, 10) // one event back every 6s: nothing refills during the test
		if res := allow(t, lim, "k", l, 5); !res.Allowed || res.Remaining != 5 {
			t.Fatalf("spend 5: got %+v, want allowed with Remaining 5", res)
		}
		if res := allow(t, lim, "k", l, 3); !res.Allowed || res.Remaining != 2 {
			t.Fatalf("spend 3: got %+v, want allowed with Remaining 2", res)
		}
		res := allow(t, lim, "k", l, 5)
		if res.Allowed || res.Remaining != 2 {
			t.Fatalf("spend 5 of 2: got %+v, want refused with Remaining 2", res)
		}
		// Three events are missing, 6s each.
		if res.RetryAfter <= 12*time.Second || res.RetryAfter > 18*time.Second {
			t.Fatalf("RetryAfter %v, want in (12s, 18s]", res.RetryAfter)
		}
		if res := allow(t, lim, "k", l, 2); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("spend the last 2: got %+v, want allowed with Remaining 0", res)
		}
	})

	t.Run("n above Burst never fits", func(t *testing.T) {
		lim := newLimiter(t)
		l := PerMinute(10, 3)
		res := allow(t, lim, "k", l, 4)
		if res.Allowed || res.RetryAfter != time.Minute || res.Remaining != 3 {
			t.Fatalf("got %+v, want refused with RetryAfter = Period and nothing spent", res)
		}
		if res := allow(t, lim, "k", l, 3); !res.Allowed {
			t.Fatalf("whole burst after the refusal: got %+v, want allowed", res)
		}
	})

	t.Run("invalid arguments", func(t *testing.T) {
		lim := newLimiter(t)
		for _, c := range []struct {
			l Limit
			n int
		}{{PerMinute(10, 3), 0}, {PerMinute(0, 3), 1}, {PerMinute(10, 0), 1}, {Limit{Rate: 1, Burst: 1}, 1}} {
			if _, err := lim.Allow(context.Background(), "k", c.l, c.n); !errors.Is(err, ErrInvalid) {
				t.Errorf("Allow(%+v, %d): err %v, want ErrInvalid", c.l, c.n, err)
			}
		}
	})
}
