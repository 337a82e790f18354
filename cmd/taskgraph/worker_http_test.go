// Process-level test of the worker's HTTP endpoints: /healthz, /readyz (following the database)
// and /metrics, on the address WORKER_HTTP_ADDR picked, and a clean exit on SIGTERM.
package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// httpAddr is the address the worker logged for its HTTP endpoints.
func (p *workerProc) httpAddr(t *testing.T) string {
	t.Helper()
	var addr string
	testenv.WaitFor(t, 10*time.Second, "the worker's HTTP address in its log", func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "worker HTTP listening" {
				addr = rec.Addr
				return true
			}
		}
		return false
	})
	return addr
}

type probe struct {
	Status int
	Body   string
	JSON   struct {
		Status string
		Checks map[string]string
	}
}

func get(t *testing.T, url string) probe {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := probe{Status: resp.StatusCode, Body: string(body)}
	_ = json.Unmarshal(body, &p.JSON)
	return p
}

func TestWorkerServesHealthReadinessAndMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	database := testsupport.NewDatabase(t)
	// The worker reaches PostgreSQL through a proxy the test can break.
	proxy := testsupport.NewProxy(t, "127.0.0.1:5432")
	url := "postgres://postgres@" + proxy.Addr() + "/" + database.Name + "?sslmode=disable"
	w := startWorker(t, url, map[string]string{"SHUTDOWN_TIMEOUT": "5s"})
	base := "http://" + w.httpAddr(t)

	if p := get(t, base+"/healthz"); p.Status != http.StatusOK || p.JSON.Status != "ok" {
		t.Fatalf("/healthz: %d %s", p.Status, p.Body)
	}
	if p := get(t, base+"/readyz"); p.Status != http.StatusOK || p.JSON.Status != "ready" ||
		p.JSON.Checks["database"] != "ok" || p.JSON.Checks["jobs"] != "running" {
		t.Fatalf("/readyz: %d %s", p.Status, p.Body)
	}
	m := get(t, base+"/metrics")
	for _, want := range []string{
		`taskgraph_db_pool_connections{pool="jobs",state="max"} 14`, // JOB_WORKERS (10) + 4
		`taskgraph_db_pool_connections{pool="primary",state="max"}`,
		`taskgraph_db_statement_duration_seconds_count`,
		`taskgraph_http_requests_total{`,
		`go_goroutines `,
	} {
		if m.Status != http.StatusOK || !strings.Contains(m.Body, want) {
			t.Fatalf("/metrics (%d) lacks %q:\n%s", m.Status, want, tail(m.Body, 30))
		}
	}

	// The database is gone: not ready, but alive (a restart would not bring the database back).
	proxy.Set(testsupport.Refuse)
	testenv.WaitFor(t, 10*time.Second, "/readyz to report the database unreachable", func() bool {
		p := get(t, base+"/readyz")
		return p.Status == http.StatusServiceUnavailable && p.JSON.Checks["database"] == "unreachable"
	})
	if p := get(t, base+"/healthz"); p.Status != http.StatusOK {
		t.Fatalf("/healthz with the database down: %d %s", p.Status, p.Body)
	}
	proxy.Set(testsupport.Forward)
	testenv.WaitFor(t, 10*time.Second, "/readyz to recover with the database", func() bool {
		return get(t, base+"/readyz").Status == http.StatusOK
	})

	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		t.Fatal("worker still running 15s after SIGTERM")
	}
	if w.exitErr != nil {
		t.Fatalf("worker exited with %v after SIGTERM, want 0:\n%s", w.exitErr, tail(w.logs.String(), 20))
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the worker's listener is still open after it exited")
	}
}

// A taken WORKER_HTTP_ADDR is an error at start, not a worker that probes cannot reach.
func TestWorkerRefusesATakenHTTPAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	database := testsupport.NewDatabase(t)
	first := startWorker(t, database.URL, nil)
	addr := first.httpAddr(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	out, err := workerCommand(t, bin, database.URL, addr).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "WORKER_HTTP_ADDR") || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("second worker on %s: %v\n%s", addr, err, out)
	}
}

// workerCommand is `taskgraph worker` on databaseURL with its HTTP endpoints on addr.
func workerCommand(t *testing.T, bin, databaseURL, addr string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, "worker")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DATABASE_URL=" + databaseURL, "WORKER_HTTP_ADDR=" + addr}
	return cmd
}
