package observe

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

func TestNewRegistersEverything(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.RateLimited(LimitCost)
	srv := httptest.NewServer(m.Handler(reg))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{
		"taskgraph_http_in_flight_requests",
		"taskgraph_rate_limit_refusals_total",
		"taskgraph_cache_requests_total",
		"taskgraph_cache_faults_total",
		"taskgraph_response_cache_requests_total",
		"taskgraph_active_users",
		"go_goroutines",
		"process_start_time_seconds",
	} {
		if !strings.Contains(string(body), "\n"+name) && !strings.HasPrefix(string(body), name) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}

func TestNewKeepsExistingRuntimeCollectors(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if _, err := New(reg); err != nil {
		t.Fatalf("New on a registry that has the Go and process collectors: %v", err)
	}
	if _, err := New(reg); err == nil {
		t.Fatal("a second New on the same registry registered its collectors twice")
	}
}

func TestNilMetricsIsNoOp(t *testing.T) {
	var m *Metrics
	m.RateLimited(LimitCost)
	m.SawUser(uuid.New())
	m.WatchCache(func() (int64, int64, int64) { return 1, 2, 3 })
	m.WatchEvents(func() (int64, int64) { return 1, 2 })
	m.WatchPool("primary", nil)
	if m.PGXTracer() != nil {
		t.Error("nil Metrics returned a tracer")
	}
	if ChainTracers(m.PGXTracer(), nil) != nil {
		t.Error("a chain of nil tracers is not nil")
	}
	called := false
	h := m.HTTP("/x", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	if !called {
		t.Error("nil Metrics' HTTP middleware did not call next")
	}
	if m.GraphQLExtension() == nil {
		t.Error("nil Metrics has no GraphQL extension")
	}
	var l *RequestLog
	l.SetOperation("a", "query")
	l.AddErrorCode("X")
	if l.Attrs() != nil || RequestLogFrom(context.Background()) != nil {
		t.Error("nil RequestLog has attributes")
	}
}

func TestRateLimited(t *testing.T) {
	m, reg := newTestMetrics(t)
	if v := mustValue(t, reg, "taskgraph_rate_limit_refusals_total", map[string]string{"limit": "signin"}); v != 0 {
		t.Fatalf("signin starts at %v", v)
	}
	m.RateLimited(LimitCost)
	m.RateLimited(LimitCost)
	m.RateLimited(LimitSignIn)
	m.RateLimited("made-up")
	for limit, want := range map[string]float64{"cost": 2, "signin": 1, "other": 1} {
		if v := mustValue(t, reg, "taskgraph_rate_limit_refusals_total", map[string]string{"limit": limit}); v != want {
			t.Errorf("limit=%s: %v, want %v", limit, v, want)
		}
	}
}

func TestWatchEvents(t *testing.T) {
	m, reg := newTestMetrics(t)
	if v := mustValue(t, reg, "taskgraph_events_dropped_total", nil); v != 0 {
		t.Fatalf("dropped before WatchEvents: %v", v)
	}
	var dropped, reconnects int64 = 4, 1
	m.WatchEvents(func() (int64, int64) { return dropped, reconnects })
	dropped = 6 // read at scrape time
	if v := mustValue(t, reg, "taskgraph_events_dropped_total", nil); v != 6 {
		t.Errorf("dropped %v, want 6", v)
	}
	if v := mustValue(t, reg, "taskgraph_events_listener_reconnects_total", nil); v != 1 {
		t.Errorf("reconnects %v, want 1", v)
	}
}

func TestWatchCache(t *testing.T) {
	m, reg := newTestMetrics(t)
	if v := mustValue(t, reg, "taskgraph_cache_requests_total", map[string]string{"result": "hit"}); v != 0 {
		t.Fatalf("hits before WatchCache: %v", v)
	}
	var hits, misses, faults int64 = 7, 3, 1
	m.WatchCache(func() (int64, int64, int64) { return hits, misses, faults })
	hits = 9 // read at scrape time, not when registered
	if v := mustValue(t, reg, "taskgraph_cache_requests_total", map[string]string{"result": "hit"}); v != 9 {
		t.Errorf("hits %v, want 9", v)
	}
	if v := mustValue(t, reg, "taskgraph_cache_requests_total", map[string]string{"result": "miss"}); v != 3 {
		t.Errorf("misses %v, want 3", v)
	}
	if v := mustValue(t, reg, "taskgraph_cache_faults_total", nil); v != 1 {
		t.Errorf("faults %v, want 1", v)
	}
}

func TestWatchResponses(t *testing.T) {
	m, reg := newTestMetrics(t)
	if v := mustValue(t, reg, "taskgraph_response_cache_requests_total", map[string]string{"result": "hit"}); v != 0 {
		t.Fatalf("hits before WatchResponses: %v", v)
	}
	var hits, misses int64 = 4, 2
	m.WatchResponses(func() (int64, int64) { return hits, misses })
	hits = 5 // read at scrape time
	if v := mustValue(t, reg, "taskgraph_response_cache_requests_total", map[string]string{"result": "hit"}); v != 5 {
		t.Errorf("hits %v, want 5", v)
	}
	if v := mustValue(t, reg, "taskgraph_response_cache_requests_total", map[string]string{"result": "miss"}); v != 2 {
		t.Errorf("misses %v, want 2", v)
	}
}

func TestSanitize(t *testing.T) {
	for _, c := range []struct{ in, extra, want string }{
		{"GetTasks_2", "", "GetTasks_2"},
		{"a-b.c d", "", "a_b_c_d"},
		{"web-app 1.2", clientLabelExtra, "web-app_1.2"},
		{"ünï", "", "_n_"},
		{"", "", ""},
		{strings.Repeat("x", 300), "", strings.Repeat("x", 64)},
		{"\"}\n{evil=\"1", "", "____evil__1"},
	} {
		if got := sanitize(c.in, c.extra); got != c.want {
			t.Errorf("sanitize(%q, %q) = %q, want %q", c.in, c.extra, got, c.want)
		}
	}
}

func TestBoundedLabels(t *testing.T) {
	b := newBoundedLabels(2)
	if b.get("a") != "a" || b.get("b") != "b" || b.get("c") != "other" || b.get("a") != "a" {
		t.Fatal("bounded labels did not admit the first two and refuse the third")
	}
}
