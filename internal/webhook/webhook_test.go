package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
)

func TestForbiddenAddresses(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "169.254.1.1",
		"100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "255.255.255.255",
		"::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"::ffff:169.254.169.254",
	} {
		if !Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is allowed, want forbidden", s)
		}
	}
	for _, s := range []string{"93.184.216.34", "8.8.8.8", "100.128.0.1", "2606:2800:220:1::1"} {
		if Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is forbidden, want allowed", s)
		}
	}
}

func TestControlChecksTheDialedAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:443", "10.0.0.1:443", "[::1]:443", "169.254.169.254:80", "[::ffff:127.0.0.1]:80"} {
		if err := Control("tcp", addr, nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("Control(%s) = %v, want ErrForbiddenAddress", addr, err)
		}
	}
	if err := Control("tcp", "93.184.216.34:443", nil); err != nil {
		t.Errorf("Control(public) = %v", err)
	}
}

// The guarded client never connects to a loopback receiver, whether it is named by IP or by a name
// that resolves to it; the development client does.
func TestClientRefusesLoopbackUnlessAllowed(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	port := netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()
	for _, url := range []string{srv.URL, "http://localhost:" + itoa(port) + "/", "http://[::1]:" + itoa(port) + "/"} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, nil)
		resp, err := NewClient(false).Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: delivered, want refused", url)
		}
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v, want ErrForbiddenAddress", url, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver got %d requests", hits.Load())
	}
	resp, err := NewClient(true).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != 1 {
		t.Fatalf("allowed client: %d requests, want 1", hits.Load())
	}
}

func TestClientDoesNotFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
	}))
	defer srv.Close()
	resp, err := NewClient(true).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want the 302 itself", resp.StatusCode)
	}
}

func TestValidateURL(t *testing.T) {
	cases := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://hooks.example.com/taskgraph", false, true},
		{"http://hooks.example.com/taskgraph", false, false},
		{"http://hooks.example.com/taskgraph", true, true},
		{"https://127.0.0.1/x", false, false},
		{"https://10.0.0.1/x", false, false},
		{"https://[::1]/x", false, false},
		{"https://[fd00::1]/x", false, false},
		{"https://169.254.169.254/x", false, false},
		{"https://localhost/x", false, false},
		{"http://127.0.0.1:8080/x", true, true},
		{"https://user:pw@example.com/x", false, false},
		{"https://user:pw@example.com/x", true, false},
		{"ftp://example.com/x", true, false},
		{"/relative", true, false},
		{"https://example.com/" + string(make([]byte, 2048)), false, false},
	}
	for _, c := range cases {
		if got := ValidateURL(c.url, c.allowPrivate); (got == "") != c.ok {
			t.Errorf("ValidateURL(%.40q, %v) = %q, want ok=%v", c.url, c.allowPrivate, got, c.ok)
		}
	}
}

func TestSign(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	body := []byte(`{"id":"x"}`)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("1700000000." + string(body)))
	if got, want := Sign(secret, 1700000000, body), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// embeddedInternal are IPv6 spellings of internal IPv4 addresses: each must be refused like the
// IPv4 address it carries, at registration (ValidateURL) and at dial time (Control).
var embeddedInternal = []string{
	"::7f00:1",                             // IPv4-compatible ::127.0.0.1
	"::127.0.0.1",                          // the same, dotted
	"::a9fe:a9fe",                          // IPv4-compatible metadata service
	"::ffff:0:7f00:1",                      // IPv4-translated (SIIT) ::ffff:0:127.0.0.1
	"::ffff:0:a00:1",                       // IPv4-translated 10.0.0.1
	"2002:7f00:1::1",                       // 6to4 of 127.0.0.1
	"2002:a9fe:a9fe::",                     // 6to4 of 169.254.169.254
	"2002:c0a8:101:1::1",                   // 6to4 of 192.168.1.1
	"64:ff9b::7f00:1",                      // NAT64 well-known prefix
	"64:ff9b::5db8:d822",                   // NAT64: a translator may be inside the network, any embedded address
	"64:ff9b:1::7f00:1",                    // NAT64 local-use prefix (RFC 8215)
	"64:ff9b:1:ffff::a00:1",                // NAT64 local-use prefix, other layout
	"2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1 (obfuscated)
	"2001:0:7f00:1::1",                     // Teredo, server 127.0.0.1
}

func TestForbiddenEmbeddedIPv4(t *testing.T) {
	for _, s := range embeddedInternal {
		ip := netip.MustParseAddr(s)
		if !Forbidden(ip) {
			t.Errorf("%s is allowed, want forbidden", s)
		}
		if err := Control("tcp", netip.AddrPortFrom(ip, 443).String(), nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("Control([%s]:443) = %v, want ErrForbiddenAddress", s, err)
		}
		if problem := ValidateURL("https://["+s+"]/hook", false); problem == "" {
			t.Errorf("ValidateURL(https://[%s]/hook) accepted it", s)
		}
	}
	// The same forms carrying a public address stay usable.
	for _, s := range []string{"2002:5db8:d822::1", "2001:0:5db8:d822:8000:63bf:a247:29dd"} {
		if Forbidden(netip.MustParseAddr(s)) {
			t.Errorf("%s is forbidden, want allowed (it carries a public address)", s)
		}
	}
}
