package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/taskgraph/taskgraph/internal/download"
	"github.com/taskgraph/taskgraph/internal/graphiql"
	"github.com/taskgraph/taskgraph/internal/observe"
)

// Exposure says who may reach a route, and so what a reverse proxy in front of the server must do
// with it.
type Exposure int

const (
	// Public routes are for clients on the internet: a proxy must pass them on.
	Public Exposure = iota
	// Probe routes are for the orchestrator's health checks, which call each instance directly; a
	// proxy may pass them on or not.
	Probe
	// Operator routes describe the process (metrics): a proxy must refuse them to the internet.
	Operator
)

// String names the exposure in messages.
func (e Exposure) String() string {
	switch e {
	case Public:
		return "public"
	case Probe:
		return "probe"
	case Operator:
		return "operator"
	}
	return fmt.Sprintf("Exposure(%d)", int(e))
}

// Route is one path the HTTP handler serves.
type Route struct {
	// Pattern is the http.ServeMux pattern NewHandler registers.
	Pattern string
	// Label is the route label of the taskgraph_http_* metrics; empty: not counted (the metrics
	// route itself).
	Label    string
	Exposure Exposure
}

// Path is the pattern without its method, e.g. "/exports/{id}" for "GET /exports/{id}".
func (r Route) Path() string {
	if _, path, ok := strings.Cut(r.Pattern, " "); ok {
		return path
	}
	return r.Pattern
}

// ExamplePath is a concrete request path the route serves: each {wildcard} becomes "example" and
// {$} (the exact-match marker) disappears.
func (r Route) ExamplePath() string {
	var b strings.Builder
	rest := r.Path()
	for {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			b.WriteString(rest)
			return b.String()
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:open])
		if rest[open:open+end+1] != "{$}" {
			b.WriteString("example")
		}
		rest = rest[open+end+1:]
	}
}

// Route patterns NewHandler registers.
const (
	patternGraphQL   = "/graphql"
	patternGraphQLV1 = "/api/v1/graphql"
	patternHealthz   = "GET /healthz"
	patternReadyz    = "GET /readyz"
	patternMetrics   = "GET /metrics"
	patternGraphiQL  = "GET /{$}"
	// GraphiQL's script, styles and licenses (internal/graphiql).
	patternGraphiQLAssets = "GET " + graphiql.AssetPrefix
)

// Routes is every route NewHandler can serve, some only when enabled (/metrics with a Gatherer,
// GraphiQL with GRAPHIQL=true). NewHandler registers from this list and refuses a handler that is
// not in it, so the deployment checks in deploy/ (every public route is routed by nginx.conf and the
// Kubernetes Ingress, /metrics is not public) read exactly what the server serves.
func Routes() []Route {
	return []Route{
		// GraphQL over HTTP (POST, GET), WebSocket and SSE.
		{Pattern: patternGraphQL, Label: "/graphql", Exposure: Public},
		// Clients that pin a versioned path get the same endpoint.
		{Pattern: patternGraphQLV1, Label: "/api/v1/graphql", Exposure: Public},
		// Export files: the signed URL is the credential, so the route stays outside the GraphQL chain.
		{Pattern: download.Pattern, Label: "/exports/{id}", Exposure: Public},
		// GraphiQL, when enabled.
		{Pattern: patternGraphiQL, Label: "/", Exposure: Public},
		{Pattern: patternGraphiQLAssets, Label: graphiql.AssetPrefix, Exposure: Public},
		{Pattern: patternHealthz, Label: "/healthz", Exposure: Probe},
		{Pattern: patternReadyz, Label: "/readyz", Exposure: Probe},
		// Scraped by Prometheus; deploy/nginx.conf and the Ingress keep it off the public side.
		{Pattern: patternMetrics, Exposure: Operator},
	}
}

// registerRoutes puts handlers (by pattern; nil: not enabled) on mux in the order of Routes, each
// counted in m under its route label. A handler whose pattern is not in Routes is an error.
func registerRoutes(mux *http.ServeMux, m *observe.Metrics, handlers map[string]http.Handler) error {
	for _, r := range Routes() {
		h, ok := handlers[r.Pattern]
		delete(handlers, r.Pattern)
		if !ok || h == nil {
			continue
		}
		if r.Label != "" {
			h = m.HTTP(r.Label, h)
		}
		mux.Handle(r.Pattern, h)
	}
	if len(handlers) > 0 {
		var extra []string
		for p := range handlers {
			extra = append(extra, p)
		}
		slices.Sort(extra)
		return fmt.Errorf("server: handlers for %v are not listed in Routes", extra)
	}
	return nil
}
