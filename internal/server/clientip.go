package server

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

type clientIPKey struct{}

// ClientIP returns the client address of the request ("" outside one): the peer address, or behind
// trusted proxies the nearest address in X-Forwarded-For that is not a trusted proxy.
func ClientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// ipv6ClientBits is how much of an IPv6 address names one client for rate limits: a /64 is the
// smallest block a site is given, and one host may use any address in it.
const ipv6ClientBits = 64

// rateLimitKey is the client address as per-client limits count it: an IPv4 address as it is, an
// IPv6 address by its /64, so rotating addresses within one's own network earns no new budget.
func rateLimitKey(ctx context.Context) string {
	ip := ClientIP(ctx)
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Unmap().Is6() {
		return ip
	}
	p, err := a.WithZone("").Prefix(ipv6ClientBits)
	if err != nil {
		return ip
	}
	return p.String()
}

// withClientIP resolves the client address once per request. X-Forwarded-For is believed only when
// the peer is a trusted proxy, and read from the right so a client cannot forge its way past a limit.
func withClientIP(trusted []netip.Prefix, next http.Handler) http.Handler {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip := host
		if peer, err := netip.ParseAddr(host); err == nil && isTrusted(peer.Unmap()) {
			hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break
				}
				ip = a.Unmap().String()
				if !isTrusted(a.Unmap()) {
					break
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip)))
	})
}

func parsePrefixes(cidrs []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil { // config.Validate has checked them
			out = append(out, p)
		}
	}
	return out
}
