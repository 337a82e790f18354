// Package webhook holds what webhook delivery needs outside the job queue: validation of a
// user-registered URL, the HTTP client that refuses to reach internal addresses (SSRF protection) and
// the request signature.
//
// The address check runs in the dialer's Control function, on the very IP being connected to after
// DNS resolution, so a hostname that resolves (or re-resolves: DNS rebinding) to a private address
// is refused however it got there. WEBHOOK_ALLOW_PRIVATE=true (development and tests only) turns the
// check off and allows http:// URLs.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Header names of a delivery.
const (
	HeaderSignature = "X-Taskgraph-Signature"
	HeaderTimestamp = "X-Taskgraph-Timestamp"
	HeaderDelivery  = "X-Taskgraph-Delivery"
)

// MaxURLLength bounds a webhook URL.
const MaxURLLength = 2048

// Timeout bounds one delivery (connect, TLS, request and response headers and body).
const Timeout = 5 * time.Second

// ErrForbiddenAddress is returned (wrapped) when a delivery would connect to a refused address.
var ErrForbiddenAddress = errors.New("webhook: refusing to connect to a loopback, private, link-local or otherwise internal address")

var forbiddenPrefixes = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",         // "this network", unspecified
		"10.0.0.0/8",        // RFC 1918
		"100.64.0.0/10",     // CGNAT (RFC 6598)
		"127.0.0.0/8",       // loopback
		"169.254.0.0/16",    // link-local, including the 169.254.169.254 metadata service
		"172.16.0.0/12",     // RFC 1918
		"192.0.0.0/24",      // IETF protocol assignments
		"192.168.0.0/16",    // RFC 1918
		"198.18.0.0/15",     // benchmarking
		"224.0.0.0/4",       // multicast
		"240.0.0.0/4",       // reserved, broadcast
		"::/128",            // unspecified
		"::1/128",           // loopback
		"fc00::/7",          // unique local (ULA)
		"fe80::/10",         // link-local
		"ff00::/8",          // multicast
		"64:ff9b::/96",      // NAT64 well-known prefix: the translator may sit inside the network
		"64:ff9b:1::/48",    // NAT64 local-use prefix (RFC 8215), likewise
		"fd00:ec2::254/128", // AWS IPv6 metadata (inside ULA already; listed for clarity)
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// IPv6 ranges whose addresses carry an IPv4 address (RFC 4291, 6052, 3056, 4380).
var (
	ipv4Compatible = netip.MustParsePrefix("::/96")           // ::a.b.c.d (deprecated)
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96") // ::ffff:0:a.b.c.d (SIIT)
	sixToFour      = netip.MustParsePrefix("2002::/16")       // 2002:AABB:CCDD::/48
	teredo         = netip.MustParsePrefix("2001::/32")       // 2001:0:SSSS:SSSS:flags:port:~CCCC:~CCCC
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries and that a packet to it may end
// up at: the address itself for IPv4-compatible and IPv4-translated forms, the 6to4 router, and the
// Teredo server and (obfuscated) client. IPv4-mapped addresses are unmapped before this; the NAT64
// prefixes are refused whole.
func embeddedIPv4(ip netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return nil
	}
	b := ip.As16()
	at := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case ipv4Compatible.Contains(ip), ipv4Translated.Contains(ip):
		return []netip.Addr{at(12)}
	case sixToFour.Contains(ip):
		return []netip.Addr{at(2)}
	case teredo.Contains(ip):
		client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		return []netip.Addr{at(4), client}
	}
	return nil
}

// Forbidden reports whether ip is an address a webhook may not reach: loopback, private (RFC 1918,
// ULA), link-local (and the metadata service), unspecified, multicast, CGNAT and the like. IPv6
// addresses that carry an IPv4 address (mapped, compatible, translated, 6to4, Teredo) are also
// judged as the IPv4 addresses they carry; NAT64 prefixes are refused whole. Registration
// (ValidateURL) and every dial (Control) ask this one function.
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if forbiddenAddr(ip) {
		return true
	}
	for _, v4 := range embeddedIPv4(ip) {
		if forbiddenAddr(v4) {
			return true
		}
	}
	return false
}

func forbiddenAddr(ip netip.Addr) bool {
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range forbiddenPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Control is a net.Dialer Control function that refuses forbidden addresses; address is the
// resolved "ip:port" about to be connected to.
func Control(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || Forbidden(ip) {
		return fmt.Errorf("%w: %s", ErrForbiddenAddress, host)
	}
	return nil
}

// NewClient returns the delivery client: Timeout per request, no redirects followed, no proxy from the
// environment, and, unless allowPrivate, the address check in the dialer.
func NewClient(allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: Timeout}
	if !allowPrivate {
		dialer.Control = Control
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would connect on our behalf, past the check
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   Timeout,
		ResponseHeaderTimeout: Timeout,
		MaxIdleConns:          50,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &http.Client{
		Transport:     transport,
		Timeout:       Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ValidateURL checks a URL being registered and returns a problem to show the user, or "". It
// requires https (http too with allowPrivate), a host, no credentials, at most MaxURLLength
// characters, and, unless allowPrivate, refuses hosts that are forbidden addresses or localhost names
// (hostnames are checked again, resolved, at every delivery).
func ValidateURL(raw string, allowPrivate bool) string {
	if len(raw) > MaxURLLength {
		return "must be at most " + strconv.Itoa(MaxURLLength) + " characters"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL such as https://example.com/hooks/taskgraph"
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowPrivate:
	default:
		return "must use https"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if u.Fragment != "" {
		return "must not contain a fragment"
	}
	if allowPrivate {
		return ""
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return "must not point at a loopback, private or link-local address"
	}
	if ip, err := netip.ParseAddr(host); err == nil && Forbidden(ip) {
		return "must not point at a loopback, private or link-local address"
	}
	return ""
}

// Sign returns the X-Taskgraph-Signature value: "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + body).
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
