// Process-level tests of graceful shutdown: the real binary, started as a subprocess on a fresh test
// database, is sent SIGTERM while clients are busy, and every answer, the exit status, the log and
// the database are checked afterwards.
package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const (
	testJWTSecret   = "shutdown-test-secret-0123456789abcdef-0123"
	shutdownDelay   = time.Second
	shutdownTimeout = 10 * time.Second
	// exitSlack is how long after SHUTDOWN_DELAY the process may take to exit once nothing is in flight.
	exitSlack = 5 * time.Second
)

// binDir holds the binary buildBinary builds; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	testsupport.ReleaseDatabases()
	os.Exit(code)
}

// buildBinary builds ./cmd/taskgraph once per test process.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskgraph-shutdown-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "taskgraph")
	// The test runs in the package directory, which is ./cmd/taskgraph.
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/taskgraph: %v\n%s", err, out)
	}
	return bin, nil
})

// ---------------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------------

// lockedBuffer collects a subprocess's output while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type serverProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	addr string
	logs *lockedBuffer

	done     chan struct{} // closed when the process has exited
	exitErr  error
	exitedAt time.Time
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startServer runs `taskgraph serve` on databaseURL with the test settings plus extra, and waits
// until /readyz answers 200. The process is killed when the test ends if it is still running.
func startServer(t *testing.T, databaseURL string, extra map[string]string) *serverProc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":       databaseURL,
		"HTTP_ADDR":          addr,
		"JWT_SECRET":         testJWTSecret,
		"SHUTDOWN_DELAY":     shutdownDelay.String(),
		"SHUTDOWN_TIMEOUT":   shutdownTimeout.String(),
		"RATE_LIMIT_ENABLED": "false",
		"LOG_LEVEL":          "info",
	}
	for k, v := range extra {
		env[k] = v
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &serverProc{t: t, cmd: cmd, addr: addr, base: "http://" + addr, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s serve: %v", bin, err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		p.exitedAt = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("server log (last 60 lines):\n%s", tail(p.logs.String(), 60))
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			t.Fatalf("server exited before it was ready (%v):\n%s", p.exitErr, p.logs.String())
		default:
		}
		if res, err := client.Get(p.base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s not ready after 20s:\n%s", addr, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *serverProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the process to exit and returns its exit code (-1: killed by the test).
func (p *serverProc) waitExit(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Errorf("server still running %s after SIGTERM; killing it", d)
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1
	}
	var exitErr *exec.ExitError
	switch {
	case p.exitErr == nil:
		return 0
	case errors.As(p.exitErr, &exitErr):
		return exitErr.ExitCode()
	default:
		p.t.Fatalf("wait: %v", p.exitErr)
		return -1
	}
}

// logRecord is one line of the server's JSON log.
type logRecord map[string]any

func (r logRecord) str(k string) string { s, _ := r[k].(string); return s }

// logRecords parses the log; every line must be a JSON object.
func (p *serverProc) logRecords(t *testing.T) []logRecord {
	t.Helper()
	var out []logRecord
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Errorf("log line is not JSON: %s", line)
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkShutdownLog: the log says "shutting down" and has no error-level record.
func checkShutdownLog(t *testing.T, p *serverProc) []logRecord {
	t.Helper()
	recs := p.logRecords(t)
	shuttingDown := false
	for _, r := range recs {
		if r.str("msg") == "shutting down" {
			shuttingDown = true
		}
		switch r.str("level") {
		case "ERROR":
			b, _ := json.Marshal(r)
			t.Errorf("error-level log record: %s", b)
		case "WARN":
			b, _ := json.Marshal(r)
			t.Logf("warning in the server log: %s", b)
		}
	}
	if !shuttingDown {
		t.Error(`the log has no "shutting down" record`)
	}
	return recs
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------------------------------------------
// A small GraphQL client
// ---------------------------------------------------------------------------------------------------

type gqlResult struct {
	Status int
	Header http.Header
	Close  bool // the server asked to close the connection after this answer
	Body   []byte
	Data   map[string]any
	Errors []map[string]any
}

// post sends one GraphQL operation. A non-nil error is a transport error (nothing or only part of
// an answer arrived) or an answer that is not a complete JSON document.
func post(ctx context.Context, client *http.Client, base, token, requestID, query string, vars map[string]any) (gqlResult, error) {
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		return gqlResult{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return gqlResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	res, err := client.Do(req)
	if err != nil {
		return gqlResult{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	out := gqlResult{Status: res.StatusCode, Header: res.Header, Close: res.Close, Body: raw}
	if err != nil {
		return out, fmt.Errorf("reading the body (status %d, %d bytes read): %w", res.StatusCode, len(raw), err)
	}
	var doc struct {
		Data   map[string]any   `json:"data"`
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return out, fmt.Errorf("answer (status %d) is not a complete JSON document: %w: %q", res.StatusCode, err, raw)
	}
	out.Data, out.Errors = doc.Data, doc.Errors
	return out, nil
}

func registerUser(t *testing.T, base string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := post(ctx, http.DefaultClient, base, "", "", `mutation($input: RegisterInput!) {
		register(input: $input) { accessToken user { id } } }`,
		map[string]any{"input": map[string]any{
			"name": "Drain", "email": fmt.Sprintf("drain-%d@example.com", time.Now().UnixNano()), "password": "password-drain-1",
		}})
	if err != nil || res.Status != http.StatusOK || len(res.Errors) > 0 {
		t.Fatalf("register: %v (status %d) %s", err, res.Status, res.Body)
	}
	reg, _ := res.Data["register"].(map[string]any)
	token, _ := reg["accessToken"].(string)
	if token == "" {
		t.Fatalf("register returned no token: %s", res.Body)
	}
	return token
}

// ---------------------------------------------------------------------------------------------------
// SIGTERM under load
// ---------------------------------------------------------------------------------------------------

const (
	loadQuery = `query Load { me { id taskCounts { total } } tasks(first: 5) { totalCount edges { node { id title } } } }`
	createOp  = `mutation Create($input: CreateTaskInput!) { createTask(input: $input) { task { id title } } }`
)

// attempt is one request a load client made.
type attempt struct {
	requestID string
	mutation  bool
	title     string // createTask only
	start     time.Time
	end       time.Time
	reused    bool  // sent over a kept-alive connection (not a new one)
	ok        bool  // a complete 200 answer with the expected data
	refused   bool  // the connection was refused: nothing was listening any more
	err       error // transport error, or what was wrong with the answer
}

// loadClient sends requests over one keep-alive connection (re-dialled when the server closes it)
// until the server has exited or stop is closed, and at most maxPerClient requests.
func loadClient(id int, base, token string, stop <-chan struct{}, exited <-chan struct{}, record func(attempt)) {
	const maxPerClient = 20_000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	for n := 0; n < maxPerClient; n++ {
		select {
		case <-stop:
			return
		case <-exited:
			return
		default:
		}
		a := attempt{requestID: fmt.Sprintf("load-%d-%d", id, n), mutation: n%2 == 1, start: time.Now()}
		query, vars := loadQuery, map[string]any(nil)
		if a.mutation {
			a.title = fmt.Sprintf("drain %d/%d", id, n)
			query, vars = createOp, map[string]any{"input": map[string]any{"title": a.title}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { a.reused = ci.Reused }})
		res, err := post(ctx, client, base, token, a.requestID, query, vars)
		cancel()
		a.end = time.Now()
		switch {
		case err != nil && errors.Is(err, syscall.ECONNREFUSED):
			a.refused = true
		case err != nil:
			a.err = err
		default:
			a.err = checkLoadAnswer(a, res)
			a.ok = a.err == nil
		}
		record(a)
		if a.refused {
			time.Sleep(5 * time.Millisecond) // the listener is closed; don't spin while the process exits
		}
	}
}

func checkLoadAnswer(a attempt, res gqlResult) error {
	if res.Status != http.StatusOK {
		return fmt.Errorf("status %d: %s", res.Status, res.Body)
	}
	if got := res.Header.Get("X-Request-ID"); got != a.requestID {
		return fmt.Errorf("X-Request-ID %q, want %q", got, a.requestID)
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("GraphQL errors: %s", res.Body)
	}
	if a.mutation {
		ct, _ := res.Data["createTask"].(map[string]any)
		task, _ := ct["task"].(map[string]any)
		if title, _ := task["title"].(string); title != a.title || task["id"] == nil {
			return fmt.Errorf("createTask answered %s", res.Body)
		}
		return nil
	}
	me, _ := res.Data["me"].(map[string]any)
	tasks, _ := res.Data["tasks"].(map[string]any)
	if me["id"] == nil || tasks["totalCount"] == nil || tasks["edges"] == nil {
		return fmt.Errorf("query answered %s", res.Body)
	}
	return nil
}

// TestSIGTERMUnderLoadLosesNothing sends SIGTERM to a server that 8 keep-alive clients keep busy with
// queries and createTask mutations, and checks that:
//
//	(a) every answer that arrived is a complete, valid 200 answer, and no request the server
//	    accepted was cut off (refused connections once the listener closed are expected);
//	(b) during SHUTDOWN_DELAY /readyz answers 503 while /healthz is 200 and GraphQL still answers,
//	    and the listener stays open for the whole delay;
//	(c) the process exits 0 within SHUTDOWN_DELAY plus a few seconds;
//	(d) the tasks in the database are exactly those whose createTask was acknowledged;
//	(e) the JSON log says "shutting down" and has no error-level record.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	database := testsupport.NewDatabase(t)
	srv := startServer(t, database.URL, nil)
	token := registerUser(t, srv.base)

	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(path string) (int, []byte, error) {
		res, err := probe.Get(srv.base + path)
		if err != nil {
			return 0, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, b, err
	}
	if code, body, err := get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM: %d %s %v", code, body, err)
	}

	// The load: 8 clients until the process has exited (stop bounds them if it never does).
	const clients = 8
	var (
		mu       sync.Mutex
		attempts []attempt
		okCount  atomic.Int64
		okWrites atomic.Int64
	)
	record := func(a attempt) {
		if a.ok {
			okCount.Add(1)
			if a.mutation {
				okWrites.Add(1)
			}
		}
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }) }
	t.Cleanup(stopLoad)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadClient(i, srv.base, token, stop, srv.done, record)
		}()
	}
	// Stop by itself even if the process never exits.
	hardStop := time.AfterFunc(30*time.Second, stopLoad)
	defer hardStop.Stop()

	// Let the load run until every client is clearly busy, then SIGTERM mid-stream.
	deadline := time.Now().Add(10 * time.Second)
	for okCount.Load() < 200 || okWrites.Load() < 50 {
		if time.Now().After(deadline) {
			stopLoad()
			wg.Wait()
			t.Fatalf("load did not get going: %d answers, %d writes in 10s", okCount.Load(), okWrites.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sigAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// (b) The drain window: /readyz turns 503 at once, while /healthz and GraphQL still answer.
	var readyz503At time.Time
	for {
		code, body, err := get("/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			readyz503At = time.Now()
			var rz struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal(body, &rz); err != nil || rz.Status != "unavailable" || rz.Checks["shutdown"] != "draining" {
				t.Errorf("/readyz while draining: %s (%v), want status unavailable and checks.shutdown draining", body, err)
			}
			break
		}
		if err != nil || code != http.StatusOK || time.Since(sigAt) > shutdownDelay*6/10 {
			t.Errorf("/readyz after SIGTERM: %d %s %v; want 503 within %s", code, body, err, shutdownDelay*6/10)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !readyz503At.IsZero() {
		if code, body, err := get("/healthz"); err != nil || code != http.StatusOK {
			t.Errorf("/healthz while draining: %d %s %v, want 200", code, body, err)
		}
		// Over a keep-alive connection: the answer must also tell the client to close it, so that no
		// request is on its way over an idle connection when Shutdown closes those.
		keepAlive := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := post(ctx, keepAlive, srv.base, token, "probe-draining", `{ me { id } }`, nil)
		cancel()
		keepAlive.CloseIdleConnections()
		if me, _ := res.Data["me"].(map[string]any); err != nil || res.Status != http.StatusOK || me["id"] == nil {
			t.Errorf("GraphQL while draining: %v (status %d) %s, want 200 with data", err, res.Status, res.Body)
		} else if !res.Close {
			t.Error("GraphQL answer while draining lacks Connection: close (keep-alive connections must end before Shutdown closes idle ones)")
		}
		if elapsed := time.Since(sigAt); elapsed >= shutdownDelay {
			t.Errorf("the drain-window probes took until %s after SIGTERM, past SHUTDOWN_DELAY %s: (b) is not proven", elapsed, shutdownDelay)
		}
	}

	// (c) A clean exit soon after the delay.
	code := srv.waitExit(shutdownDelay + exitSlack)
	exitAfter := srv.exitedAt.Sub(sigAt)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if exitAfter < shutdownDelay {
		t.Errorf("the process exited %s after SIGTERM, before SHUTDOWN_DELAY %s ended", exitAfter, shutdownDelay)
	}
	stopLoad()
	wg.Wait()

	// (e) The log.
	recs := checkShutdownLog(t, srv)
	served := map[string]logRecord{} // request_id -> the server's access-log record
	for _, r := range recs {
		if r.str("msg") == "request" {
			served[r.str("request_id")] = r
		}
	}

	// (a) Every answer complete and valid; refusals only once the listener closed; no accepted
	// request lost. A transport error is classified by whether the server read the request (its
	// access log has the request id) and by the connection it was sent on:
	//   - read by the server: an accepted request lost its answer (failure);
	//   - not read, sent over a kept-alive connection: the server closed a connection a request was
	//     already on its way over, and the client cannot tell whether it ran (failure);
	//   - not read, a new connection, once the listener closed: the kernel had completed the
	//     handshake but the server never accepted the connection (closing the listener resets its
	//     backlog); for the client this is the same as a refused connection (expected).
	var (
		ok, okAfterSignal, refused, backlogResets int
		firstRefused                              time.Time
		acknowledged                              = map[string]bool{}
	)
	listenerClosed := func(a attempt, what string) {
		if after := a.end.Sub(sigAt); after < shutdownDelay-50*time.Millisecond {
			t.Errorf("request %s: %s %s after SIGTERM, before SHUTDOWN_DELAY %s ended: the listener closed early (%v)",
				a.requestID, what, after.Round(time.Millisecond), shutdownDelay, a.err)
		}
	}
	for _, a := range attempts {
		sent := a.start.Sub(sigAt).Round(time.Millisecond)
		_, seen := served[a.requestID]
		switch {
		case a.ok:
			ok++
			if a.start.After(sigAt) {
				okAfterSignal++
			}
			if a.mutation {
				acknowledged[a.title] = true
			}
		case a.refused:
			refused++
			if firstRefused.IsZero() || a.end.Before(firstRefused) {
				firstRefused = a.end
			}
			listenerClosed(a, "connection refused")
		case seen || !isConnectionLevel(a.err):
			t.Errorf("request %s (sent %s after SIGTERM) was accepted but its answer failed: %v", a.requestID, sent, a.err)
		case a.reused:
			t.Errorf("request %s (sent %s after SIGTERM) was cut on a keep-alive connection the server closed without reading it: %v",
				a.requestID, sent, a.err)
		default:
			backlogResets++
			listenerClosed(a, "new connection reset unread")
		}
	}
	t.Logf("%d requests: %d complete answers (%d sent after SIGTERM), %d refused and %d reset unread once the listener closed; "+
		"/readyz 503 after %s; exit %d after %s",
		len(attempts), ok, okAfterSignal, refused, backlogResets,
		readyz503At.Sub(sigAt).Round(time.Millisecond), code, exitAfter.Round(time.Millisecond))
	if okAfterSignal == 0 {
		t.Error("no load request was answered after SIGTERM: the server stopped serving at once instead of draining")
	}

	// (d) Exactly the acknowledged tasks are stored: none lost, none written without an answer.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := database.Pool.Query(ctx, `SELECT title FROM tasks`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var title string
		if err := rows.Scan(&title); err != nil {
			t.Fatal(err)
		}
		stored[title] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var lost, unacked []string
	for title := range acknowledged {
		if !stored[title] {
			lost = append(lost, title)
		}
	}
	for title := range stored {
		if !acknowledged[title] {
			unacked = append(unacked, title)
		}
	}
	sort.Strings(lost)
	sort.Strings(unacked)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged createTask are not in the database: %v", len(lost), lost)
	}
	if len(unacked) > 0 {
		t.Errorf("%d tasks were stored but their createTask got no successful answer: %v", len(unacked), unacked)
	}
	if len(acknowledged) == 0 || len(stored) != len(acknowledged) {
		t.Errorf("%d tasks stored, %d acknowledged", len(stored), len(acknowledged))
	}
}

// isConnectionLevel reports whether err is the connection failing (EOF, reset, closed) rather than
// a bad answer.
func isConnectionLevel(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || strings.Contains(err.Error(), "server closed idle connection")
}

// ---------------------------------------------------------------------------------------------------
// A slow request in flight
// ---------------------------------------------------------------------------------------------------

// TestSIGTERMWaitsForSlowRequest checks that a request in flight when the listener closes still gets
// its whole answer. The request is made slow deterministically: the test holds an ACCESS EXCLUSIVE
// lock on the tasks table, so the server's query for a 100-task page (with owners and counts) waits
// in PostgreSQL; pg_locks shows when it is waiting. SIGTERM is sent, the test waits until the listener
// is closed (SHUTDOWN_DELAY later), checks the process is still running, then releases the lock.
func TestSIGTERMWaitsForSlowRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	database := testsupport.NewDatabase(t)
	srv := startServer(t, database.URL, nil)
	token := registerUser(t, srv.base)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := database.Pool.Exec(ctx, `INSERT INTO tasks (id, owner_id, title)
		SELECT gen_random_uuid(), u.id, 'slow ' || g FROM users u, generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}

	tx, err := database.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }() // committed below; this covers early exits
	if _, err := tx.Exec(ctx, `LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var lockHolder int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&lockHolder); err != nil {
		t.Fatal(err)
	}

	type slowResult struct {
		res gqlResult
		err error
		at  time.Time
	}
	slow := make(chan slowResult, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer rcancel()
		res, err := post(rctx, client, srv.base, token, "slow-page", `query Slow {
			tasks(first: 100) { totalCount edges { node { id title owner { id name taskCounts { total } } } } } }`, nil)
		slow <- slowResult{res, err, time.Now()}
	}()

	// The request is in flight once a server backend waits for the lock.
	testenv.WaitFor(t, 10*time.Second, "the slow request to wait for the tasks lock", func() bool {
		var waiting int
		err := database.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE NOT granted AND relation = 'tasks'::regclass AND pid <> $1`, lockHolder).Scan(&waiting)
		return err == nil && waiting > 0
	})

	sigAt := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	// Wait until the listener is closed: new connections are refused.
	testenv.WaitFor(t, shutdownDelay+exitSlack, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", srv.addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	closedAfter := time.Since(sigAt)
	if closedAfter < shutdownDelay {
		t.Errorf("listener closed %s after SIGTERM, before SHUTDOWN_DELAY %s", closedAfter, shutdownDelay)
	}
	select {
	case r := <-slow:
		t.Fatalf("the slow request returned while the table was still locked: %v %d %s", r.err, r.res.Status, r.res.Body)
	default:
	}
	if srv.exited() {
		t.Fatalf("the server exited with a request in flight (%v)", srv.exitErr)
	}

	releasedAt := time.Now()
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	var r slowResult
	select {
	case r = <-slow:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not finish within 10s of releasing the lock")
	}
	if r.err != nil || r.res.Status != http.StatusOK || len(r.res.Errors) > 0 {
		t.Fatalf("slow request: %v (status %d) %.500s", r.err, r.res.Status, r.res.Body)
	}
	tasks, _ := r.res.Data["tasks"].(map[string]any)
	edges, _ := tasks["edges"].([]any)
	if total, _ := tasks["totalCount"].(float64); total != 100 || len(edges) != 100 {
		t.Fatalf("slow request: totalCount %v and %d edges, want 100 and 100", tasks["totalCount"], len(edges))
	}
	for i, e := range edges {
		node, _ := e.(map[string]any)["node"].(map[string]any)
		owner, _ := node["owner"].(map[string]any)
		counts, _ := owner["taskCounts"].(map[string]any)
		if total, _ := counts["total"].(float64); node["id"] == nil || total != 100 {
			t.Fatalf("edge %d incomplete: %v", i, e)
		}
	}

	code := srv.waitExit(exitSlack)
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	t.Logf("listener closed %s after SIGTERM; slow request answered (%d bytes) %s after the lock was released; exit %d %s after that",
		closedAfter.Round(time.Millisecond), len(r.res.Body), r.at.Sub(releasedAt).Round(time.Millisecond), code,
		srv.exitedAt.Sub(r.at).Round(time.Millisecond))
	recs := checkShutdownLog(t, srv)
	found := false
	for _, rec := range recs {
		if rec.str("msg") == "request" && rec.str("request_id") == "slow-page" {
			found = true
			if status, _ := rec["status"].(float64); status != http.StatusOK {
				t.Errorf("slow request logged with status %v", rec["status"])
			}
		}
	}
	if !found {
		t.Error("the slow request has no access-log record")
	}
}
