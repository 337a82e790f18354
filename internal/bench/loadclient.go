package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// loadClient is the load generator's HTTP/1.1 client: one keep-alive connection per concurrent
// client, each request written whole and its answer read with http.ReadResponse on the client's own
// goroutine, as wrk does. net/http's Transport hands every request and answer between the caller
// and two goroutines per connection; profiled against the task scenario that cost about 40% of
// what the server spent per request, on the two cores the server under test shares with it. Setup,
// checks and sign-in keep using net/http.
//
// Connections are made on first use and never shared: client w uses only its own, so no locking.
type loadClient struct {
	addr, host, path string
	gzip             bool
	conns            []*loadConn
}

type loadConn struct {
	conn net.Conn
	br   *bufio.Reader
	req  []byte // the request being written, reused
}

func newLoadClient(rawURL string, concurrency int, gzip bool) (*loadClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("load client: want an http:// URL, got %q", rawURL)
	}
	path := u.RequestURI()
	return &loadClient{addr: u.Host, host: u.Host, path: path, gzip: gzip, conns: make([]*loadConn, concurrency)}, nil
}

// close closes every connection (the next request of a client dials again).
func (c *loadClient) close() {
	for w, lc := range c.conns {
		if lc != nil {
			_ = lc.conn.Close()
			c.conns[w] = nil
		}
	}
}

// post sends body as client w, with the access token unless it is empty, and reads the answer into
// buf. It answers the HTTP status. A failed request closes the client's connection.
func (c *loadClient) post(ctx context.Context, w int, token string, body []byte, buf *bytes.Buffer) (int, error) {
	lc := c.conns[w]
	if lc == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, fmt.Errorf("dial %s: %w", c.addr, err)
		}
		lc = &loadConn{conn: conn, br: bufio.NewReaderSize(conn, 16<<10)}
		c.conns[w] = lc
	}
	status, keep, err := c.roundTrip(ctx, lc, token, body, buf)
	if err != nil || !keep {
		_ = lc.conn.Close()
		c.conns[w] = nil
	}
	return status, err
}

func (c *loadClient) roundTrip(ctx context.Context, lc *loadConn, token string, body []byte, buf *bytes.Buffer) (status int, keep bool, err error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(requestTimeout)
	}
	if err := lc.conn.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	r := append(lc.req[:0], "POST "...)
	r = append(r, c.path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, c.host...)
	r = append(r, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	if token != "" {
		r = append(r, "\r\nAuthorization: Bearer "...)
		r = append(r, token...)
	}
	if c.gzip {
		r = append(r, "\r\nAccept-Encoding: gzip"...)
	}
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	lc.req = r
	if _, err := lc.conn.Write(r); err != nil {
		return 0, false, fmt.Errorf("send request: %w", err)
	}
	resp, err := http.ReadResponse(lc.br, nil)
	if err != nil {
		return 0, false, fmt.Errorf("read answer: %w", err)
	}
	defer resp.Body.Close()
	buf.Reset()
	var from io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return resp.StatusCode, false, fmt.Errorf("read gzip answer: %w", err)
		}
		from = zr
	}
	if _, err := buf.ReadFrom(from); err != nil {
		return resp.StatusCode, false, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, !resp.Close, nil
}
