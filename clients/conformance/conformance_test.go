// Package conformance runs the client conformance suite (this directory's npm project: Apollo
// Client, urql, graphql-ws, graphql-sse, GraphQL Code Generator and tsc, at the exact versions of
// package-lock.json) against real taskgraph processes on a fresh database. Integration tier: it
// builds the binary and runs node, so it is skipped with -short.
package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// shortTTL is the access-token lifetime of the server the token-refresh test uses.
const shortTTL = 5 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	testsupport.ReleaseDatabases()
	os.Exit(code)
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer runs `taskgraph serve` with env on a free port and returns its base URL once its log
// says it listens.
func startServer(t *testing.T, bin string, env map[string]string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stderr, logs))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				addr <- line.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(logs.String(), 40))
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("taskgraph did not listen within 30s:\n%s", logs.String())
		return ""
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// npm runs an npm script in this directory and fails the test with its output when it fails.
func npm(t *testing.T, ctx context.Context, env []string, args ...string) time.Duration {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	d := time.Since(start)
	t.Logf("npm %s (%s):\n%s", strings.Join(args, " "), d.Round(time.Millisecond), tail(out.String(), 200))
	if err != nil {
		t.Fatalf("npm %s failed: %v", strings.Join(args, " "), err)
	}
	return d
}

// TestClientConformance: codegen from the live schema, tsc over the typed documents, then the
// node:test suites (test/*.test.mjs), each against two servers on one fresh database: one as
// configured by default, one whose access tokens expire after a few seconds.
func TestClientConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts taskgraph and runs node; skipped with -short")
	}
	for _, tool := range []string{"node", "npm", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v (CI installs it)", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, "bash", "../npm-ci.sh", ".")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm-ci.sh: %v\n%s", err, out)
	}

	bin := filepath.Join(t.TempDir(), "taskgraph")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "../../cmd/taskgraph")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	database := testsupport.NewDatabase(t)
	env := map[string]string{
		"DATABASE_URL":               database.URL,
		"REDIS_URL":                  testenv.FlushedRedisDB(t, 12),
		"HTTP_ADDR":                  "127.0.0.1:0",
		"WORKER_HTTP_ADDR":           "127.0.0.1:0",
		"JWT_SECRET":                 "conformance-secret-conformance-secret-01",
		"AUTH_RATE_LIMIT_PER_MINUTE": "100000",
		"LOG_LEVEL":                  "info",
	}
	base := startServer(t, bin, env)
	short := map[string]string{"ACCESS_TOKEN_TTL": shortTTL.String(), "JOBS_IN_PROCESS": "false"}
	for k, v := range env {
		if _, ok := short[k]; !ok {
			short[k] = v
		}
	}
	shortBase := startServer(t, bin, short)

	vars := []string{"TASKGRAPH_URL=" + base, "TASKGRAPH_SHORT_TTL_URL=" + shortBase,
		fmt.Sprintf("TASKGRAPH_SHORT_TTL_SECONDS=%d", int(shortTTL.Seconds()))}
	codegen := npm(t, ctx, vars, "run", "codegen")
	typecheck := npm(t, ctx, vars, "run", "typecheck")
	suite := npm(t, ctx, vars, "test")
	t.Logf("conformance: codegen %s, tsc %s, client suites %s", codegen.Round(time.Millisecond),
		typecheck.Round(time.Millisecond), suite.Round(time.Millisecond))
}
