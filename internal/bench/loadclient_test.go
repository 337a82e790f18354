package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The load client reads whatever framing a server answers with (Content-Length, chunked, gzip),
// keeps its connection across requests, sends the token and body as net/http would, and dials
// again after a server closes the connection.
func TestLoadClientReadsEveryFraming(t *testing.T) {
	var conns atomic.Int64
	big := `{"data":{"x":"` + strings.Repeat("y", 20_000) + `"}}`
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/graphql" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		answer := `{"data":{"echo":` + string(body) + `,"auth":"` + r.Header.Get("Authorization") + `"}}`
		switch string(body) {
		case `"chunked"`:
			_, _ = io.WriteString(w, big[:10_000])
			w.(http.Flusher).Flush() // forces chunked framing
			_, _ = io.WriteString(w, big[10_000:])
			return
		case `"gzip"`:
			if r.Header.Get("Accept-Encoding") != "gzip" {
				http.Error(w, "no gzip asked", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, answer)
			_ = zw.Close()
			return
		case `"close"`:
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, answer)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	for _, gz := range []bool{false, true} {
		conns.Store(0)
		lc, err := newLoadClient(srv.URL+"/graphql", 2, gz)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		post := func(w int, token, body, want string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			status, err := lc.post(ctx, w, token, []byte(body), &buf)
			if err != nil || status != http.StatusOK || buf.String() != want {
				t.Fatalf("gzip %v, %s: status %d, err %v, answer %.200q; want %.200q", gz, body, status, err, buf.String(), want)
			}
		}
		post(0, "t0", `1`, `{"data":{"echo":1,"auth":"Bearer t0"}}`)
		post(0, "", `2`, `{"data":{"echo":2,"auth":""}}`)
		post(0, "t0", `"chunked"`, big)
		if gz {
			post(0, "t0", `"gzip"`, `{"data":{"echo":"gzip","auth":"Bearer t0"}}`)
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("gzip %v: %d connections for one client's requests, want 1 kept alive", gz, n)
		}
		post(1, "t1", `"close"`, `{"data":{"echo":"close","auth":"Bearer t1"}}`)
		post(1, "t1", `3`, `{"data":{"echo":3,"auth":"Bearer t1"}}`)
		if n := conns.Load(); n != 3 {
			t.Errorf("gzip %v: %d connections, want 3 (client 1 dials again after the server closed)", gz, n)
		}
		lc.close()
	}
}
