package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// runServer serves env's handler through the real server.Run (httptest applies no timeouts) with
// the given settings, until the test ends; it returns the bound address.
func runServer(t *testing.T, env *testsupport.Env, settings map[string]string) string {
	t.Helper()
	cfg, err := config.Load(func(k string) string {
		if v, ok := settings[k]; ok {
			return v
		}
		return map[string]string{"HTTP_ADDR": "127.0.0.1:0", "JWT_SECRET": env.Config.JWTSecret, "SHUTDOWN_TIMEOUT": "2s", "SHUTDOWN_DELAY": "0s"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, env.App.Handler, slog.New(slog.DiscardHandler), ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	select {
	case addr := <-ready:
		return addr.String()
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	return ""
}

// TestHostileSlowBody trickles a POST body, on the regular path and on the streaming one (Accept:
// text/event-stream): HTTP_READ_TIMEOUT covers the whole body on both. Streaming answers are exempt
// only from the write deadline.
func TestHostileSlowBody(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: trickles bodies past timeouts")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	addr := runServer(t, env, map[string]string{"HTTP_READ_TIMEOUT": "2s"})
	const body = `{"query": "subscription { jobUpdated(id: \"x\") { id } }", "padding": "` + "pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp" + `"}`
	for name, accept := range map[string]string{
		"regular":   "application/json",
		"streaming": "text/event-stream",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			head := "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: " + accept +
				"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
			start := time.Now()
			if _, err := conn.Write([]byte(head)); err != nil {
				t.Fatal(err)
			}
			closed := make(chan time.Duration, 1)
			var got bytes.Buffer
			go func() {
				_, _ = io.Copy(&got, conn) // returns when the server closes the connection
				closed <- time.Since(start)
			}()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := 0; i < len(body); i++ {
					if _, err := conn.Write([]byte{body[i]}); err != nil {
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
					}
				}
			}()
			select {
			case d := <-closed:
				if d > 4*time.Second {
					t.Errorf("server closed the slow body's connection after %s, want within HTTP_READ_TIMEOUT (2s)", d)
				}
			case <-time.After(6 * time.Second):
				t.Fatalf("server was still reading a trickled body after 6s with HTTP_READ_TIMEOUT=2s")
			}
			if strings.Contains(got.String(), "200 OK") {
				t.Errorf("a request whose body never finished was served: %q", got.String())
			}
			res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz")
			if err != nil {
				t.Fatalf("healthz after the slow body: %v", err)
			}
			res.Body.Close()
		})
	}
}
