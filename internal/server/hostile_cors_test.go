package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// corsHeaders lists the Access-Control-* headers of an answer.
func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k+": "+h.Get(k))
		}
	}
	return out
}

// TestHostileCORS: rs/cors treats an empty origin list as every origin, which made production (no
// CORS_ALLOWED_ORIGINS) answer any site; and operator endpoints must never be readable cross-origin.
func TestHostileCORS(t *testing.T) {
	t.Parallel()
	preflight := func(path string) http.Header {
		return http.Header{"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization, content-type"}}
	}
	probe := func(t *testing.T, env *testsupport.Env, origin string) map[string]hresp {
		t.Helper()
		with := func(h http.Header) http.Header {
			if h == nil {
				h = http.Header{}
			}
			h.Set("Origin", origin)
			return h
		}
		post := bearer("")
		return map[string]hresp{
			"preflight /graphql": hdo(t, env, http.MethodOptions, "/graphql", with(preflight("/graphql")), nil),
			"POST /graphql":      hdo(t, env, http.MethodPost, "/graphql", with(post), gqlBody(t, `{ __typename }`, nil, nil)),
			"GET /metrics":       hdo(t, env, http.MethodGet, "/metrics", with(nil), nil),
			"preflight /metrics": hdo(t, env, http.MethodOptions, "/metrics", with(preflight("/metrics")), nil),
			"GET /readyz":        hdo(t, env, http.MethodGet, "/readyz", with(nil), nil),
			"GET /healthz":       hdo(t, env, http.MethodGet, "/healthz", with(nil), nil),
			"preflight /readyz":  hdo(t, env, http.MethodOptions, "/readyz", with(preflight("/readyz")), nil),
		}
	}
	wantNone := func(t *testing.T, answers map[string]hresp, only ...string) {
		t.Helper()
		for name, r := range answers {
			if len(only) > 0 && !strings.Contains(name, only[0]) {
				continue
			}
			if h := corsHeaders(r.Header); len(h) > 0 {
				t.Errorf("%s: %v, want no CORS headers", name, h)
			}
		}
	}

	t.Run("production without origins allows none", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40)})
		for _, origin := range []string{"https://evil.example", "null", "http://localhost:5173"} {
			wantNone(t, probe(t, env, origin))
		}
	})
	t.Run("production allows exactly the configured origins, never on operator endpoints", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40),
			"CORS_ALLOWED_ORIGINS": "https://app.example"})
		wantNone(t, probe(t, env, "https://evil.example"))
		answers := probe(t, env, "https://app.example")
		if got := answers["POST /graphql"].Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("POST /graphql from the configured origin: Allow-Origin = %q", got)
		}
		if got := answers["preflight /graphql"].Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
			t.Errorf("preflight /graphql from the configured origin: Allow-Origin = %q", got)
		}
		wantNone(t, answers, "metrics")
		wantNone(t, answers, "z")
	})
	t.Run("development origins never reach operator endpoints", func(t *testing.T) {
		t.Parallel()
		env := testsupport.NewEnv(t, nil)
		answers := probe(t, env, "http://localhost:5173")
		wantNone(t, answers, "metrics")
		wantNone(t, answers, "z")
	})
}
