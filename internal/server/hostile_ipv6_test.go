package server_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestHostileIPv6RateLimitKeys: one IPv6 client holds a whole /64 and can rotate through it, so
// per-address limits key IPv6 clients by their /64 (IPv4 clients by their address).
func TestHostileIPv6RateLimitKeys(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"AUTH_RATE_LIMIT_PER_MINUTE": "4", "TRUSTED_PROXIES": "127.0.0.0/8,::1/128"})
	attempt := func(from string, i int) hresp {
		h := bearer("")
		h.Set("X-Forwarded-For", from)
		return hdo(t, env, http.MethodPost, "/graphql", h, gqlBody(t, loginDoc,
			map[string]any{"email": fmt.Sprintf("nobody-%d@example.com", i), "password": "wrong-password"}, nil))
	}
	// Four attempts from four addresses of one /64 spend its budget...
	for i := range 4 {
		if r := attempt(fmt.Sprintf("2001:db8:1:2::%x", i+1), i); r.code() != "UNAUTHENTICATED" {
			t.Fatalf("attempt %d: %.300s, want UNAUTHENTICATED", i, r.Body)
		}
	}
	// ...so a fifth address of the same /64 is refused,
	if r := attempt("2001:db8:1:2:ffff:ffff:ffff:fffe", 5); r.code() != "RATE_LIMITED" {
		t.Errorf("a new address of the same /64: %.300s, want RATE_LIMITED", r.Body)
	}
	// while another /64 and IPv4 clients keep their own budgets.
	if r := attempt("2001:db8:1:3::1", 6); r.code() != "UNAUTHENTICATED" {
		t.Errorf("another /64: %.300s, want UNAUTHENTICATED", r.Body)
	}
	for i := range 4 {
		if r := attempt(fmt.Sprintf("203.0.113.%d", i+1), 10+i); r.code() != "UNAUTHENTICATED" {
			t.Errorf("IPv4 client %d: %.300s, want UNAUTHENTICATED", i, r.Body)
		}
	}
}
