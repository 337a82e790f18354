package deploy_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tufanbarisyildirim/gonginx/config"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/taskgraph/taskgraph/internal/download"
	"github.com/taskgraph/taskgraph/internal/server"
)

// nginxLocation returns the location of srv that nginx picks for path (https://nginx.org/r/location):
// an exact match (=) wins; otherwise the longest prefix match, which ends the search. Regular
// expression locations would be tried before a plain prefix match wins, and named locations (@) are
// only entered by error_page; deploy/nginx.conf has no regular expressions, and this check refuses
// them rather than guessing.
func nginxLocation(t *testing.T, srv config.IBlock, path string) *config.Location {
	t.Helper()
	var longest *config.Location
	for _, d := range srv.GetDirectives() {
		loc, ok := d.(*config.Location)
		if !ok || strings.HasPrefix(loc.Match, "@") {
			continue
		}
		switch loc.Modifier {
		case "=":
			if loc.Match == path {
				return loc
			}
		case "", "^~":
			if strings.HasPrefix(path, loc.Match) && (longest == nil || len(loc.Match) > len(longest.Match)) {
				longest = loc
			}
		default:
			t.Fatalf("deploy/nginx.conf: location %s %s: regular-expression locations are not modelled by this check", loc.Modifier, loc.Match)
		}
	}
	return longest
}

// ingressPath returns the Ingress path that routes path (https://kubernetes.io/docs/concepts/services-networking/ingress/#path-types):
// the longest match, Exact before Prefix; Prefix matches whole path elements.
func ingressPath(t *testing.T, ingresses []*networkingv1.Ingress, path string) (*networkingv1.Ingress, *networkingv1.HTTPIngressPath) {
	t.Helper()
	var bestIng *networkingv1.Ingress
	var best *networkingv1.HTTPIngressPath
	better := func(p *networkingv1.HTTPIngressPath) bool {
		return best == nil || len(p.Path) > len(best.Path) ||
			(len(p.Path) == len(best.Path) && *p.PathType == networkingv1.PathTypeExact)
	}
	for _, ing := range ingresses {
		for _, rule := range ing.Spec.Rules {
			for i := range rule.HTTP.Paths {
				p := &rule.HTTP.Paths[i]
				var match bool
				switch *p.PathType {
				case networkingv1.PathTypeExact:
					match = path == p.Path
				case networkingv1.PathTypePrefix:
					prefix := strings.TrimSuffix(p.Path, "/")
					match = prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
				default:
					t.Fatalf("Ingress %s: path %s has pathType %s, whose meaning depends on the controller: use Exact or Prefix", ing.Name, p.Path, *p.PathType)
				}
				if match && better(p) {
					bestIng, best = ing, p
				}
			}
		}
	}
	return bestIng, best
}

// TestPublicRoutesAreRouted: every public route of the server (server.Routes, the list NewHandler
// registers) reaches the API through deploy/nginx.conf and through the Kubernetes Ingress; /metrics
// is refused to the internet by nginx and not routed by the Ingress; and the export downloads,
// whose signed URL is the credential, are logged without it.
func TestPublicRoutesAreRouted(t *testing.T) {
	t.Parallel()
	public := routes(server.Public)
	if len(public) < 3 {
		t.Fatalf("server.Routes lists only %d public routes", len(public))
	}

	t.Run("nginx.conf", func(t *testing.T) {
		conf := parseNginxConf(t)
		srv := nginxServer(t, conf)
		for _, r := range server.Routes() {
			loc := nginxLocation(t, srv, r.ExamplePath())
			if loc == nil {
				if r.Exposure == server.Public {
					t.Errorf("%s (%s): no location of deploy/nginx.conf matches it", r.Pattern, r.ExamplePath())
				}
				continue
			}
			proxied := slices.Equal(directive(loc.GetBlock(), "proxy_pass"), []string{"http://taskgraph"})
			var allow []string
			denyAll := false
			for _, d := range loc.GetBlock().GetDirectives() {
				switch d.GetName() {
				case "allow":
					allow = append(allow, params(d)[0])
				case "deny":
					denyAll = denyAll || slices.Equal(params(d), []string{"all"})
				}
			}
			switch r.Exposure {
			case server.Public:
				if !proxied || len(allow) > 0 || denyAll || directive(loc.GetBlock(), "return") != nil {
					t.Errorf("%s: location %s %s must pass it to the taskgraph upstream for every client", r.Pattern, loc.Modifier, loc.Match)
				}
			case server.Operator:
				if proxied && !denyAll {
					t.Errorf("%s: location %s %s passes it on without `deny all`", r.Pattern, loc.Modifier, loc.Match)
				}
				for _, a := range allow {
					pfx, err := netip.ParsePrefix(a)
					if err != nil {
						addr, err2 := netip.ParseAddr(a)
						if err2 != nil {
							t.Errorf("%s: allow %s is not an address or network", r.Pattern, a)
							continue
						}
						pfx = netip.PrefixFrom(addr, addr.BitLen())
					}
					if !pfx.Addr().IsPrivate() && !pfx.Addr().IsLoopback() {
						t.Errorf("%s: allow %s lets a public network read it", r.Pattern, a)
					}
				}
			}
			if r.Pattern == download.Pattern {
				for _, d := range loc.GetBlock().GetDirectives() {
					if d.GetName() != "access_log" || params(d)[0] == "off" {
						continue
					}
					format := params(d)[1]
					for _, lf := range conf.FindDirectives("log_format") {
						if p := params(lf); p[0] == format && strings.Contains(strings.Join(p, " "), "$request_uri") {
							t.Errorf("%s: log format %s logs $request_uri, the signed URL", r.Pattern, format)
						}
					}
				}
			}
		}
	})

	t.Run("Ingress", func(t *testing.T) {
		m := loadManifests(t)
		if len(m.ingresses) == 0 {
			t.Skip("deploy/k8s has no Ingress")
		}
		for _, r := range server.Routes() {
			ing, p := ingressPath(t, m.ingresses, r.ExamplePath())
			switch {
			case r.Exposure == server.Public && p == nil:
				t.Errorf("%s (%s): no Ingress path routes it, so clients get the controller's 404", r.Pattern, r.ExamplePath())
			case r.Exposure == server.Public && p.Backend.Service.Name != apiName:
				t.Errorf("%s: Ingress %s sends it to %s, not the API Service %s", r.Pattern, ing.Name, p.Backend.Service.Name, apiName)
			case r.Exposure != server.Public && p != nil:
				t.Errorf("%s is not public (%s), but Ingress %s routes it (path %s) to the internet", r.Pattern, r.Exposure, ing.Name, p.Path)
			}
			// ingress-nginx logs the whole request line; there is no per-path format without snippets.
			if r.Pattern == download.Pattern && p != nil && ing.Annotations["nginx.ingress.kubernetes.io/enable-access-log"] != "false" {
				t.Errorf("%s: Ingress %s logs the signed download URL: set nginx.ingress.kubernetes.io/enable-access-log: \"false\"", r.Pattern, ing.Name)
			}
		}
	})
}
