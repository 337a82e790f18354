package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every route's example path is served by that route, and a handler without a Route is refused.
func TestRoutes(t *testing.T) {
	mux := http.NewServeMux()
	handlers := map[string]http.Handler{}
	for _, r := range Routes() {
		if _, dup := handlers[r.Pattern]; dup {
			t.Fatalf("Routes lists %q twice", r.Pattern)
		}
		handlers[r.Pattern] = http.NotFoundHandler()
	}
	if err := registerRoutes(mux, nil, handlers); err != nil {
		t.Fatal(err)
	}
	for _, r := range Routes() {
		req := httptest.NewRequest(http.MethodGet, r.ExamplePath(), nil)
		if _, pattern := mux.Handler(req); pattern != r.Pattern {
			t.Errorf("GET %s is served by %q, want %q", r.ExamplePath(), pattern, r.Pattern)
		}
	}
	if got := (Route{Pattern: "GET /exports/{id}"}).ExamplePath(); got != "/exports/example" {
		t.Errorf("ExamplePath of /exports/{id} = %q", got)
	}

	err := registerRoutes(http.NewServeMux(), nil, map[string]http.Handler{
		patternHealthz: http.NotFoundHandler(), "GET /debug/pprof/": http.NotFoundHandler(),
	})
	if err == nil || !strings.Contains(err.Error(), "/debug/pprof/") {
		t.Errorf("a handler missing from Routes: err = %v, want it named", err)
	}
}
