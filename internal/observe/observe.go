// Package observe owns metrics (Prometheus) and the per-request log line.
//
// Everything lives on a *Metrics built by New; there is no package-level mutable state, and a nil
// *Metrics is valid and records nothing, so tests and tools can skip metrics entirely. Every label
// value is either fixed by the caller's code (routes, pool names, limits) or bounded here (operation
// names, client names, methods), so no client can grow the number of series without limit.
package observe

import (
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Limits on label cardinality and memory.
const (
	maxOperationNames = 200       // distinct operation labels before new names become "other"
	maxClientPairs    = 100       // distinct (client_name, client_version) pairs before "other"
	maxLabelLen       = 64        // longest operation, client name or client version label
	maxActiveUsers    = 1_000_000 // users remembered for taskgraph_active_users
	activeUserWindow  = 5 * time.Minute
)

// Label values used by more than one metric.
const (
	labelOther     = "other"
	labelUnknown   = "unknown"
	labelAnonymous = "anonymous"
)

// Rate limits reported by RateLimited.
const (
	LimitCost   = "cost"   // the per-client hourly query-cost budget
	LimitSignIn = "signin" // password checks and email probes (login, register, changePassword, deleteMe, updateMe email) per IP and per account
)

// Metrics holds every collector of one Taskgraph process. Build it with New; the zero value is not
// usable, but a nil *Metrics is, and does nothing.
type Metrics struct {
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpInFlight prometheus.Gauge

	operationDuration *prometheus.HistogramVec
	graphqlErrors     *prometheus.CounterVec
	deprecatedUsage   *prometheus.CounterVec
	operations        *boundedLabels
	clients           *boundedLabels
	errorCodes        *boundedLabels

	statementDuration *prometheus.HistogramVec
	pools             *poolCollector

	cacheStats atomic.Pointer[func() (hits, misses, faults int64)]
	// responseStats reads the response cache's counters (whole answers served without executing).
	responseStats atomic.Pointer[func() (hits, misses int64)]
	eventStats    atomic.Pointer[func() (dropped, reconnects int64)]

	rateLimited *prometheus.CounterVec

	users *activeUsers
}

// New builds the collectors and registers them, with the standard Go runtime and process collectors,
// on reg. A Go or process collector that reg already holds (prometheus.DefaultRegisterer has both)
// is kept; any other registration conflict is an error. A nil reg builds the collectors without
// registering them.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgraph_http_requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskgraph_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "taskgraph_http_in_flight_requests",
			Help: "HTTP requests being served now.",
		}),
		operationDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskgraph_graphql_operation_duration_seconds",
			Help:    "Time from the start of a GraphQL operation (parsing included) to its response, by operation name and type.",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation", "type"}),
		graphqlErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgraph_graphql_errors_total",
			Help: "Errors returned in GraphQL responses, by extensions.code.",
		}, []string{"code"}),
		deprecatedUsage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgraph_graphql_deprecated_field_usage_total",
			Help: "Resolutions of fields marked @deprecated, by field and client (apollographql-client-name/-version headers).",
		}, []string{"field", "client_name", "client_version"}),
		operations: newBoundedLabels(maxOperationNames),
		clients:    newBoundedLabels(maxClientPairs),
		errorCodes: newBoundedLabels(maxErrorCodes),
		statementDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "taskgraph_db_statement_duration_seconds",
			Help:    "Time to run one SQL statement, by SQL verb.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 15},
		}, []string{"statement"}),
		pools: newPoolCollector(),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "taskgraph_rate_limit_refusals_total",
			Help: "Requests refused by a rate limit, by limit.",
		}, []string{"limit"}),
		users: newActiveUsers(maxActiveUsers, activeUserWindow),
	}
	// Known limits start at zero, so rate() works from the first refusal.
	m.rateLimited.WithLabelValues(LimitCost)
	m.rateLimited.WithLabelValues(LimitSignIn)

	cacheStat := func(pick func(h, mi, f int64) int64) func() float64 {
		return func() float64 {
			stats := m.cacheStats.Load()
			if stats == nil {
				return 0
			}
			return float64(pick((*stats)()))
		}
	}
	responseStat := func(pick func(h, mi int64) int64) func() float64 {
		return func() float64 {
			stats := m.responseStats.Load()
			if stats == nil {
				return 0
			}
			return float64(pick((*stats)()))
		}
	}
	eventStat := func(pick func(dropped, reconnects int64) int64) func() float64 {
		return func() float64 {
			stats := m.eventStats.Load()
			if stats == nil {
				return 0
			}
			return float64(pick((*stats)()))
		}
	}
	own := []prometheus.Collector{
		m.httpRequests, m.httpDuration, m.httpInFlight,
		m.operationDuration, m.graphqlErrors, m.deprecatedUsage,
		m.statementDuration, m.pools, m.rateLimited,
		byResult("taskgraph_cache_requests_total", "Read-cache lookups, by result.", "hit",
			cacheStat(func(h, _, _ int64) int64 { return h })),
		byResult("taskgraph_cache_requests_total", "Read-cache lookups, by result.", "miss",
			cacheStat(func(_, mi, _ int64) int64 { return mi })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "taskgraph_cache_faults_total",
			Help: "Read-cache store faults (each one served from PostgreSQL instead).",
		}, cacheStat(func(_, _, f int64) int64 { return f })),
		byResult("taskgraph_response_cache_requests_total", responseHelp, "hit",
			responseStat(func(h, _ int64) int64 { return h })),
		byResult("taskgraph_response_cache_requests_total", responseHelp, "miss",
			responseStat(func(_, mi int64) int64 { return mi })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "taskgraph_events_dropped_total",
			Help: "Live-update events dropped for subscribers that read too slowly (each is told to re-read).",
		}, eventStat(func(d, _ int64) int64 { return d })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "taskgraph_events_listener_reconnects_total",
			Help: "Reconnects of the live-update listener; events published meanwhile were lost (subscribers are told).",
		}, eventStat(func(_, r int64) int64 { return r })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "taskgraph_active_users",
			Help: "Distinct signed-in users seen in the last 5 minutes.",
		}, func() float64 { return float64(m.users.count()) }),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range own {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, err
			}
		}
	}
	return m, nil
}

// Handler serves the metrics of g in the Prometheus text format. It works on a nil *Metrics too.
// Expose it only where operators can reach it (a separate listener or a protected route): it
// describes the process.
func (m *Metrics) Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// RateLimited counts one request refused by limit (LimitCost or LimitSignIn; anything else is
// counted as "other").
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	if limit != LimitCost && limit != LimitSignIn {
		limit = labelOther
	}
	m.rateLimited.WithLabelValues(limit).Inc()
}

// WatchCache makes scrapes report the read cache's counters, read from stats at scrape time
// (cache.Cache.Stats). Until it is called they read 0; a later call replaces the function.
func (m *Metrics) WatchCache(stats func() (hits, misses, faults int64)) {
	if m == nil {
		return
	}
	if stats == nil {
		m.cacheStats.Store(nil)
		return
	}
	m.cacheStats.Store(&stats)
}

const responseHelp = "Response-cache lookups (whole answers of read-only queries), by result."

// byResult is one result's series of a lookup counter read at scrape time.
func byResult(name, help, result string, read func() float64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"result": result}}, read)
}

// WatchResponses makes scrapes report the response cache's counters, read from stats at scrape
// time (cache.Responses.Stats). Until it is called they read 0.
func (m *Metrics) WatchResponses(stats func() (hits, misses int64)) {
	if m == nil || stats == nil {
		return
	}
	m.responseStats.Store(&stats)
}

// WatchEvents makes scrapes report the event bus's counters, read from stats at scrape time
// (events.Bus.Stats). Until it is called they read 0.
func (m *Metrics) WatchEvents(stats func() (dropped, reconnects int64)) {
	if m == nil || stats == nil {
		return
	}
	m.eventStats.Store(&stats)
}

// boundedLabels admits at most max distinct label values; later new values map to "other".
type boundedLabels struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newBoundedLabels(max int) *boundedLabels {
	return &boundedLabels{max: max, seen: make(map[string]struct{})}
}

// get returns v if it was admitted (now or before), otherwise "other".
func (b *boundedLabels) get(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.seen[v]; ok {
		return v
	}
	if len(b.seen) >= b.max {
		return labelOther
	}
	b.seen[v] = struct{}{}
	return v
}

// sanitize keeps the ASCII letters, digits and the bytes in extra of s, replaces every other byte
// with '_', and cuts the result to maxLabelLen bytes.
func sanitize(s, extra string) string {
	if len(s) > maxLabelLen*4 {
		s = s[:maxLabelLen*4] // bound the work; the result is cut below anyway
	}
	b := make([]byte, 0, min(len(s), maxLabelLen))
	for i := 0; i < len(s) && len(b) < maxLabelLen; {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			b = append(b, c)
			i++
		case c < 0x80:
			if containsByte(extra, c) {
				b = append(b, c)
			} else {
				b = append(b, '_')
			}
			i++
		default:
			// One '_' per multi-byte character, not per byte.
			b = append(b, '_')
			i++
			for i < len(s) && s[i]&0xC0 == 0x80 {
				i++
			}
		}
	}
	return string(b)
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
