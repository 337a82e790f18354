package server_test

// Budgets: the "cost" response extension, hourly cost budgets per user and per client IP (shared across
// instances through Redis), sign-in limits per IP and per email, and X-Forwarded-For behind
// TRUSTED_PROXIES.

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// redisDB returns the URL of Redis logical database n, flushed now and when the test ends. Tests here
// use 8..15, one number per test.
func redisDB(t *testing.T, n int) string { return testenv.FlushedRedisDB(t, n) }

// costInfo is the "cost" response extension.
type costInfo struct {
	RequestedNodes, Points, MaxNodes, Limit, Remaining int
	ResetAt                                            time.Time
}

func costOf(t *testing.T, r hresp) costInfo {
	t.Helper()
	m, ok := r.Extensions["cost"].(map[string]any)
	if !ok {
		t.Fatalf("no cost extension (%d): %s", r.Status, r.Body)
	}
	num := func(k string) int {
		f, ok := m[k].(float64)
		if !ok || f != math.Trunc(f) {
			t.Fatalf("cost.%s = %v, want an integer (%s)", k, m[k], r.Body)
		}
		return int(f)
	}
	s, _ := m["resetAt"].(string)
	reset, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("cost.resetAt = %q, want RFC 3339: %v", s, err)
	}
	return costInfo{RequestedNodes: num("requestedNodes"), Points: num("points"), MaxNodes: num("maxNodes"),
		Limit: num("limit"), Remaining: num("remaining"), ResetAt: reset}
}

// wantThrottled checks a 429 RATE_LIMITED answer with a positive Retry-After that matches
// extensions.retryAfter, and returns the seconds.
func wantThrottled(t *testing.T, r hresp) int {
	t.Helper()
	wantErr(t, r, http.StatusTooManyRequests, "RATE_LIMITED")
	header := r.Header.Get("Retry-After")
	secs, err := strconv.Atoi(header)
	if err != nil || secs <= 0 {
		t.Errorf("Retry-After = %q, want a positive number of seconds", header)
	}
	if len(r.Errors) > 0 {
		if ra, ok := r.Errors[0].Extensions["retryAfter"].(float64); !ok || int(ra) != secs {
			t.Errorf("extensions.retryAfter = %v, want %d like Retry-After", r.Errors[0].Extensions["retryAfter"], secs)
		}
	}
	return secs
}

func wantOK(t *testing.T, r hresp) {
	t.Helper()
	if r.Status != http.StatusOK || len(r.Errors) != 0 || !r.hasData() {
		t.Fatalf("want 200 with data, got %d %.400s", r.Status, r.Body)
	}
}

func TestCostExtension(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_POINTS_PER_HOUR": "100"})
	u := env.Register(t, "Ada")

	first := gqlPost(t, env, u.Token, `{ me { id } }`, nil)
	wantOK(t, first)
	c1 := costOf(t, first)
	if c1.RequestedNodes != 2 || c1.Points != 1 || c1.MaxNodes != int(env.Config.QueryMaxNodes) || c1.Limit != 100 || c1.Remaining != 99 {
		t.Errorf("cost of { me { id } } = %+v, want 2 nodes, 1 point, maxNodes %d, limit 100, 99 remaining", c1, env.Config.QueryMaxNodes)
	}
	if now := time.Now(); c1.ResetAt.Before(now.Add(-time.Second)) || c1.ResetAt.After(now.Add(time.Hour+time.Second)) {
		t.Errorf("resetAt = %s, want within the hour", c1.ResetAt)
	}

	// 100 tasks × (1 + edges(1 + node(1 + id))) = 400 nodes = 4 points.
	second := gqlPost(t, env, u.Token, `{ tasks(first: 100) { edges { node { id } } } }`, nil)
	wantOK(t, second)
	c2 := costOf(t, second)
	if c2.RequestedNodes != 400 || c2.Points != 4 {
		t.Errorf("cost of 100 tasks = %+v, want 400 nodes and 4 points", c2)
	}
	if c1.Remaining-c2.Remaining != c2.Points {
		t.Errorf("remaining went %d → %d, want a drop of %d points", c1.Remaining, c2.Remaining, c2.Points)
	}
	if c2.ResetAt.Before(c1.ResetAt) {
		t.Errorf("resetAt moved back: %s → %s", c1.ResetAt, c2.ResetAt)
	}
	// An anonymous client is charged against its IP's budget, and told that budget's size.
	anon := gqlPost(t, env, "", `{ apiVersion }`, nil)
	wantOK(t, anon)
	if c := costOf(t, anon); c.Limit != int(env.Config.AnonRateLimitPoints) || c.Remaining > c.Limit-c.Points {
		t.Errorf("anonymous cost = %+v, want limit %d (the anonymous budget)", c, env.Config.AnonRateLimitPoints)
	}
	// A mutation is costed too.
	third := gqlPost(t, env, u.Token, hostileCreateTask, createVars("costed"))
	wantOK(t, third)
	if c3 := costOf(t, third); c3.Points != 1 || c3.Remaining != c2.Remaining-1 {
		t.Errorf("mutation cost = %+v after %d remaining", c3, c2.Remaining)
	}
}

func TestBudgetExhaustion(t *testing.T) {
	t.Parallel()
	t.Run("per user", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_POINTS_PER_HOUR": "3"})
		a, b := env.Register(t, "Ada"), env.Register(t, "Bob")
		for i := range 3 {
			r := gqlPost(t, env, a.Token, `{ me { id } }`, nil)
			wantOK(t, r)
			if c := costOf(t, r); c.Remaining != 2-i {
				t.Errorf("query %d: remaining = %d, want %d", i+1, c.Remaining, 2-i)
			}
		}
		before := rowCounts(t, env)
		r := gqlPost(t, env, a.Token, hostileCreateTask, createVars(hostileCanary))
		secs := wantThrottled(t, r)
		// One point comes back every 20 minutes.
		if secs < 1100 || secs > 1200 {
			t.Errorf("Retry-After = %d s, want about 1200 (one point of 3 per hour)", secs)
		}
		if c := costOf(t, r); c.Remaining != 0 || c.Points != 1 {
			t.Errorf("cost on the refused request = %+v, want 0 remaining", c)
		}
		wantThrottled(t, gqlPost(t, env, a.Token, `{ me { id } }`, nil))
		wantThrottled(t, hdo(t, env, http.MethodGet, "/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D", bearer(a.Token), nil))
		wantRowsUnchanged(t, env, before)

		// Another user has their own budget.
		wantOK(t, gqlPost(t, env, b.Token, `{ me { id } }`, nil))
		if strings.Contains(env.Logs.String(), `"level":"ERROR"`) {
			t.Errorf("throttled requests were logged as server errors")
		}
	})
	t.Run("anonymous, per IP", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_ANON_POINTS_PER_HOUR": "3"})
		u := env.Register(t, "Ada") // the register mutation spends one anonymous point
		wantOK(t, gqlPost(t, env, "", `{ __typename }`, nil))
		r := gqlPost(t, env, "", `{ __typename }`, nil)
		wantOK(t, r)
		if c := costOf(t, r); c.Remaining != 0 {
			t.Errorf("anonymous remaining = %d, want 0", c.Remaining)
		}
		before := rowCounts(t, env)
		wantThrottled(t, gqlPost(t, env, "", `{ __typename }`, nil))
		wantThrottled(t, gqlPost(t, env, "", `mutation($input: RegisterInput!) { register(input: $input) { accessToken } }`,
			map[string]any{"input": map[string]any{"name": "Eve", "email": "eve@example.com", "password": "password-123"}}))
		wantRowsUnchanged(t, env, before)
		// A signed-in user from the same address spends their own budget.
		wantOK(t, gqlPost(t, env, u.Token, `{ me { id } }`, nil))
	})
}

func TestBudgetSharedAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	t.Parallel()
	overrides := map[string]string{"REDIS_URL": redisDB(t, 8), "RATE_LIMIT_POINTS_PER_HOUR": "3"}
	a := testsupport.NewEnv(t, overrides)
	b := testsupport.NewEnvOn(t, a.DB, overrides)
	u := a.Register(t, "Ada")

	for range 2 {
		wantOK(t, gqlPost(t, a, u.Token, `{ me { id } }`, nil))
	}
	r := gqlPost(t, b, u.Token, `{ me { id } }`, nil)
	wantOK(t, r)
	if c := costOf(t, r); c.Remaining != 0 {
		t.Errorf("remaining on B after 2 points on A and 1 on B = %d, want 0", c.Remaining)
	}
	before := rowCounts(t, a)
	wantThrottled(t, gqlPost(t, b, u.Token, hostileCreateTask, createVars("refused")))
	wantThrottled(t, gqlPost(t, a, u.Token, `{ me { id } }`, nil))
	wantRowsUnchanged(t, a, before)
}

const loginDoc = `mutation($email: String!, $password: String!) { login(input: {email: $email, password: $password}) { accessToken } }`

func login(t *testing.T, env *testsupport.Env, email, password string) hresp {
	t.Helper()
	return gqlPost(t, env, "", loginDoc, map[string]any{"email": email, "password": password})
}

func TestSignInLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: exhausts rate limits across instances")
	}
	t.Parallel()
	// Users are made on an unlimited instance; the limited instances share its database.
	setup := testsupport.NewEnv(t, nil)
	alice, bob, carol := setup.Register(t, "Alice"), setup.Register(t, "Bob"), setup.Register(t, "Carol")
	limited := map[string]string{"AUTH_RATE_LIMIT_PER_MINUTE": "4"}

	t.Run("per email, then per IP", func(t *testing.T) {
		env := testsupport.NewEnvOn(t, setup.DB, limited)
		wantOK(t, login(t, env, alice.Email, alice.Password))
		if r := login(t, env, alice.Email, "wrong-password"); r.Status != http.StatusOK || r.code() != "UNAUTHENTICATED" {
			t.Fatalf("wrong password under the limit: %d %s", r.Status, r.Body)
		}
		// The third attempt for one email (in any case) is refused, even with the right password.
		sessions := env.CountRows(t, "sessions")
		wantThrottled(t, login(t, env, strings.ToUpper(alice.Email), alice.Password))
		wantThrottled(t, login(t, env, alice.Email, alice.Password))
		if n := env.CountRows(t, "sessions"); n != sessions {
			t.Errorf("sessions %d → %d: a throttled login signed in", sessions, n)
		}
		// Another email still works until the address has made 4 attempts. (Refused attempts count
		// against the address too: 2 for alice, 2 refused, so bob's is the 5th.)
		r := login(t, env, bob.Email, bob.Password)
		wantThrottled(t, r)
		wantThrottled(t, login(t, env, carol.Email, carol.Password))
		if n := env.CountRows(t, "sessions"); n != sessions {
			t.Errorf("sessions %d → %d: a throttled login signed in", sessions, n)
		}
	})

	t.Run("another email works until the per-IP limit", func(t *testing.T) {
		env := testsupport.NewEnvOn(t, setup.DB, limited)
		wantOK(t, login(t, env, alice.Email, alice.Password))
		wantOK(t, login(t, env, alice.Email, alice.Password))
		sessions := env.CountRows(t, "sessions")
		wantThrottled(t, login(t, env, alice.Email, alice.Password)) // 3rd for alice; 3rd for the address
		wantOK(t, login(t, env, bob.Email, bob.Password))            // 4th for the address
		wantThrottled(t, login(t, env, carol.Email, carol.Password)) // 5th for the address
		if n := env.CountRows(t, "sessions"); n != sessions+1 {
			t.Errorf("sessions %d → %d, want one more (bob's)", sessions, n)
		}
	})

	t.Run("wrong email and wrong password answer identically", func(t *testing.T) {
		env := testsupport.NewEnvOn(t, setup.DB, limited)
		wrongPassword := login(t, env, alice.Email, "not-the-password-"+hostileCanary)
		wrongEmail := login(t, env, "nobody-"+strings.ToLower(hostileCanary)+"@example.com", "not-the-password-"+hostileCanary)
		for _, r := range []hresp{wrongPassword, wrongEmail} {
			wantErr(t, r, http.StatusOK, "UNAUTHENTICATED")
		}
		if len(wrongPassword.Errors) != 1 || len(wrongEmail.Errors) != 1 ||
			wrongPassword.Status != wrongEmail.Status || wrongPassword.Errors[0].Message != wrongEmail.Errors[0].Message ||
			fmt.Sprint(wrongPassword.Errors[0].Extensions) != fmt.Sprint(wrongEmail.Errors[0].Extensions) {
			t.Errorf("wrong password: %d %s\nwrong email: %d %s", wrongPassword.Status, wrongPassword.Body, wrongEmail.Status, wrongEmail.Body)
		}
	})

	t.Run("register is limited too", func(t *testing.T) {
		env := testsupport.NewEnvOn(t, setup.DB, limited)
		const registerDoc = `mutation($input: RegisterInput!) { register(input: $input) { accessToken } }`
		register := func(i int) hresp {
			return gqlPost(t, env, "", registerDoc, map[string]any{"input": map[string]any{
				"name": "Spray", "email": fmt.Sprintf("spray-%d-%s@example.com", i, strings.ToLower(hostileCanary)), "password": "password-123"}})
		}
		for i := range 4 {
			wantOK(t, register(i))
		}
		before := rowCounts(t, env)
		wantThrottled(t, register(4))
		wantThrottled(t, register(5))
		wantRowsUnchanged(t, env, before)
	})
}

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	xff := func(env *testsupport.Env, forwarded ...string) hresp {
		h := bearer("")
		for _, f := range forwarded {
			h.Add("X-Forwarded-For", f)
		}
		return hdo(t, env, http.MethodPost, "/graphql", h, gqlBody(t, `{ __typename }`, nil, nil))
	}
	t.Run("behind a trusted proxy each client has its own budget", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"TRUSTED_PROXIES": "127.0.0.1/32", "RATE_LIMIT_ANON_POINTS_PER_HOUR": "2"})
		wantOK(t, xff(env, "203.0.113.7"))
		wantOK(t, xff(env, "203.0.113.7"))
		wantThrottled(t, xff(env, "203.0.113.7"))
		// A forged hop to the left does not help: the proxy appended the real address on the right.
		wantThrottled(t, xff(env, "198.51.100.1, 203.0.113.7"))
		wantThrottled(t, xff(env, "198.51.100.1", "203.0.113.7"))
		// Other clients behind the proxy, and the proxy itself, are untouched.
		wantOK(t, xff(env, "203.0.113.8"))
		wantOK(t, xff(env, "203.0.113.7, 203.0.113.9"))
		wantOK(t, xff(env))
	})
	t.Run("without trusted proxies the header is ignored", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"RATE_LIMIT_ANON_POINTS_PER_HOUR": "2"})
		wantOK(t, xff(env, "203.0.113.7"))
		wantOK(t, xff(env, "203.0.113.8"))
		wantThrottled(t, xff(env, "203.0.113.9"))
		wantThrottled(t, xff(env))
		wantThrottled(t, xff(env, "10.0.0.1, 192.0.2.44"))
	})
}
