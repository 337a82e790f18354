package observe

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHTTPMiddlewareLabels(t *testing.T) {
	m, reg := newTestMetrics(t)
	var inFlight float64
	h := m.HTTP("/graphql", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight = mustValue(t, reg, "taskgraph_http_in_flight_requests", nil)
		switch r.URL.Query().Get("do") {
		case "teapot":
			w.WriteHeader(http.StatusTeapot)
		case "write":
			_, _ = w.Write([]byte("ok"))
		case "panic":
			panic("boom")
		}
	}))
	serve := func(method, target string) {
		defer func() { _ = recover() }()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, target, nil))
	}
	serve(http.MethodPost, "/graphql/some/raw/path?do=teapot")
	serve(http.MethodGet, "/graphql?do=write")
	serve(http.MethodGet, "/graphql")
	serve("BREW", "/graphql?do=teapot")
	serve(http.MethodPost, "/graphql?do=panic")

	if inFlight != 1 {
		t.Errorf("in-flight inside the handler = %v, want 1", inFlight)
	}
	if v := mustValue(t, reg, "taskgraph_http_in_flight_requests", nil); v != 0 {
		t.Errorf("in-flight after = %v, want 0", v)
	}
	for _, c := range []struct {
		method, status string
		want           float64
	}{
		{"POST", "418", 1},
		{"GET", "200", 2},
		{"other", "418", 1},
		{"POST", "500", 1},
	} {
		got := mustValue(t, reg, "taskgraph_http_requests_total", map[string]string{"route": "/graphql", "method": c.method, "status": c.status})
		if got != c.want {
			t.Errorf("%s %s: %v, want %v", c.method, c.status, got, c.want)
		}
	}
	for _, s := range series(t, reg, "taskgraph_http_requests_total") {
		if s.labels["route"] != "/graphql" {
			t.Errorf("route label %q is not the pattern given", s.labels["route"])
		}
	}
	if v := mustValue(t, reg, "taskgraph_http_request_duration_seconds", map[string]string{"route": "/graphql"}); v != 5 {
		t.Errorf("durations observed %v, want 5", v)
	}
}

func TestHTTPMiddlewareKeepsResponseController(t *testing.T) {
	m, _ := newTestMetrics(t)
	h := m.HTTP("/x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush through the middleware: %v", err)
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
}
