package opstest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/opstest"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// leaks are what a client must never see in an error: driver and network detail, SQL, stacks.
var leaks = []string{"SQLSTATE", "pgx", "pgconn", "pgxpool", "dial ", "connection refused", "127.0.0.1",
	"goroutine ", ".go:", "panic", "SELECT ", "INSERT ", "UPDATE ", "FROM ", "terminating connection",
	"read-only", "read-write", "target_session_attrs", "shutting down", "recovery"}

// retryable are the codes a write may fail with while the primary changes: the client retries them.
var retryable = []string{"UNAVAILABLE"}

// write is one createTask of the load.
type write struct {
	title    string
	assigned bool // assigned to Bob: a notify_assigned job
	start    time.Time
	end      time.Time
	status   int
	body     []byte
	codes    []string
	err      error
}

func (w write) ok() bool { return w.err == nil && w.status == http.StatusOK && len(w.codes) == 0 }

// problem says what is wrong with a failed write's answer, or "" when it failed cleanly.
func (w write) problem() string {
	if w.err != nil {
		return "no answer: " + w.err.Error()
	}
	if w.status != http.StatusOK && w.status != http.StatusServiceUnavailable {
		return fmt.Sprintf("HTTP %d", w.status)
	}
	if len(w.codes) == 0 {
		return "failed without errors[]"
	}
	for _, c := range w.codes {
		if !slices.Contains(retryable, c) {
			return fmt.Sprintf("code %s, want one of %v", c, retryable)
		}
	}
	for _, l := range leaks {
		if strings.Contains(string(w.body), l) {
			return fmt.Sprintf("the answer shows %q", l)
		}
	}
	return ""
}

// post sends one createTask; safe from any goroutine (it never fails the test itself).
func post(env *testsupport.Env, token string, in write) (w write) {
	w = in
	input := map[string]any{"title": w.title}
	if w.assigned {
		input["assigneeId"] = bobID
	}
	body, _ := json.Marshal(map[string]any{"query": createTaskMutation, "variables": map[string]any{"input": input}})
	w.start = time.Now()
	defer func() { w.end = time.Now() }()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		w.err = err
		return w
	}
	defer res.Body.Close()
	w.status = res.StatusCode
	if w.body, w.err = io.ReadAll(res.Body); w.err != nil {
		return w
	}
	var out struct {
		Errors []testsupport.Error
	}
	if err := json.Unmarshal(w.body, &out); err != nil {
		w.err = fmt.Errorf("not JSON: %w", err)
		return w
	}
	for _, e := range out.Errors {
		w.codes = append(w.codes, e.Code())
	}
	return w
}

var bobID string // set once, before the writers start

// TestPrimaryFailover: Taskgraph on a pg_auto_failover formation (monitor, primary, synchronous
// standby) with a multi-host DATABASE_URL. Under a steady write load the primary is killed with
// SIGKILL (keeper, postmaster and backends). Writes fail cleanly with a retryable code until the
// standby is promoted, then succeed again without restarting Taskgraph; no acknowledged write is
// lost; jobs enqueued before the kill run once; the live subscription is told to resync and keeps
// delivering.
func TestPrimaryFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs a pg_auto_failover formation and kills its primary")
	}
	began := time.Now()
	f := opstest.NewFormation(t, 1)
	primary, standby := f.Nodes[0], f.Nodes[1]
	formed := time.Since(began)
	if s := primary.Query(t, "postgres", `SHOW synchronous_standby_names`); s == "" {
		t.Fatal("replication is asynchronous: synchronous_standby_names is empty on the primary")
	}

	url := f.URL("taskgraph")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := db.OpenPool(ctx, url, db.PoolOptions{MaxConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := db.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	env := testsupport.NewEnvOn(t, &testsupport.Database{Name: "taskgraph", URL: url, Pool: pool}, map[string]string{
		"DATABASE_URL":               url,
		"DATABASE_READ_URLS":         primary.URL("taskgraph") + "," + standby.URL("taskgraph"),
		"REQUEST_TIMEOUT":            "10s", // registering hashes a password: slow under -race on a busy machine
		"RATE_LIMIT_POINTS_PER_HOUR": "10000000",
		"JOBS_IN_PROCESS":            "true",
		// A job that was running when the primary died is left "running" on the standby; River's
		// rescuer retries it after JOB_RESCUE_AFTER (1 h by default), shortened here.
		"JOB_TIMEOUT":      "3s",
		"LONG_JOB_TIMEOUT": "4s",
		"JOB_RESCUE_AFTER": "5s",
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- server log ---\n%s\n%s", lastLines(env.Logs.String(), 60), f.Logs())
		}
	})
	env.WaitEventsReady(t)
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	bobID = bob.GlobalID

	ws := testsupport.DialWS(t, env, map[string]any{"Authorization": "Bearer " + alice.Token})
	ws.MustAck()
	ws.Subscribe("live", `subscription { taskChanged { kind task { title } } }`, nil)
	// The subscription is live once it delivers a write made after it started.
	for i := 0; ; i++ {
		createTask(t, alice.Client, fmt.Sprintf("probe %d", i))
		if kind, _ := nextChange(ws, 2*time.Second); kind == "CREATED" {
			break
		}
		if i == 5 {
			t.Fatal("the subscription delivers nothing")
		}
	}
	// Before: the standby (replica-2) takes reads, the primary (replica-1) does not.
	testenv.WaitForState(t, 10*time.Second, "/readyz shows the standby alone in the read rotation", func() (bool, string) {
		code, checks := readyz(env)
		return code == http.StatusOK && !strings.HasPrefix(checks["replica-1"], "ok") && strings.HasPrefix(checks["replica-2"], "ok"),
			fmt.Sprintf("%d %v", code, checks)
	})
	if s := primary.Query(t, "postgres", `SELECT coalesce(string_agg(sync_state, ','), 'none') FROM pg_stat_replication`); s != "sync" && s != "quorum" {
		t.Fatalf("the standby is not synchronous before the kill: sync_state %s", s)
	}

	// Steady, bounded write load: writers create tasks one after another; every fifth is assigned
	// to Bob, which enqueues a notify_assigned job in the same transaction.
	const writers = 3
	var (
		mu       sync.Mutex
		writes   []write
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		acked    = make(chan struct{}, 100)
		loadEnds = time.Now().Add(100 * time.Second) // hard bound, whatever happens
	)
	for w := range writers {
		wg.Go(func() {
			for i := 0; time.Now().Before(loadEnds); i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := post(env, alice.Token, write{title: fmt.Sprintf("w%d-%03d", w, i), assigned: i%5 == 0})
				mu.Lock()
				writes = append(writes, r)
				mu.Unlock()
				if r.ok() {
					select {
					case acked <- struct{}{}:
					default:
					}
				}
				time.Sleep(20 * time.Millisecond) // pacing: a steady load, not a flood
			}
		})
	}
	var stopOnce sync.Once
	stopLoad := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopLoad() // on every way out, the writers end before the cluster is torn down
	for range 30 {   // load before the kill: 30 acknowledged writes
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			t.Fatal("the load acknowledges no writes")
		}
	}

	killedAt := time.Now()
	killed := f.Kill(t, primary)
	deadAt := time.Now() // every process of the primary is gone (a write may succeed during Kill)
	// When the event listener listens again (on the new primary), watched from now on.
	listenedAt := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, reconnects := env.App.Events.Stats(); reconnects >= 1 {
				listenedAt <- time.Now()
				return
			}
		}
		close(listenedAt)
	}()
	f.WaitStates(t, 60*time.Second, map[string]string{standby.Name: "wait_primary"})
	promoted := time.Since(killedAt)

	// Writes succeed again without restarting Taskgraph: 30 acknowledged writes that started after
	// the promotion.
	promotedAt := killedAt.Add(promoted)
	testenv.WaitForState(t, 30*time.Second, "30 writes acknowledged after the promotion", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, w := range writes {
			if w.ok() && w.start.After(promotedAt) {
				n++
			}
		}
		return n >= 30, fmt.Sprintf("%d of %d writes", n, len(writes))
	})
	stopLoad()

	// Every write the API acknowledged is on the new primary; failed writes failed cleanly.
	var ackedTitles, failedTitles []string
	var assignedAcked int
	var firstFail, lastFail, firstOKAfter time.Time
	bad := 0
	kinds := map[string]int{}
	for _, w := range writes {
		if w.ok() {
			ackedTitles = append(ackedTitles, w.title)
			if w.assigned {
				assignedAcked++
			}
			if w.start.After(deadAt) && (firstOKAfter.IsZero() || w.end.Before(firstOKAfter)) {
				firstOKAfter = w.end
			}
			continue
		}
		failedTitles = append(failedTitles, w.title)
		if firstFail.IsZero() || w.start.Before(firstFail) {
			firstFail = w.start
		}
		if w.end.After(lastFail) {
			lastFail = w.end
		}
		kinds[fmt.Sprintf("%d %v", w.status, w.codes)]++
		if p := w.problem(); p != "" {
			if bad++; bad <= 5 {
				t.Errorf("write %s failed uncleanly (%s): %s", w.title, p, w.body)
			}
		}
	}
	present := titlesOn(t, standby, append(slices.Clone(ackedTitles), failedTitles...))
	lost := 0
	for _, title := range ackedTitles {
		if !present[title] {
			if lost++; lost <= 5 {
				t.Errorf("acknowledged write %s is missing after the failover", title)
			}
		}
	}
	committedFailures := 0
	for _, title := range failedTitles {
		if present[title] {
			committedFailures++
		}
	}
	window := time.Duration(0)
	if !firstFail.IsZero() {
		window = lastFail.Sub(firstFail)
	}
	if window > promoted+10*time.Second {
		t.Errorf("writes failed for %s, longer than the failover (%s) and a little", window, promoted)
	}
	if lastFail.After(killedAt.Add(promoted + 10*time.Second)) {
		t.Errorf("writes kept failing %s after the promotion", lastFail.Sub(killedAt.Add(promoted)))
	}
	t.Logf("formation up in %s; killed %d processes of the primary; standby promoted %s after the kill; "+
		"first write acknowledged %s after the kill; writes failed for %s; %d writes: %d acknowledged, %d failed (%d of them committed nonetheless), %d lost; failures: %v",
		formed.Round(time.Millisecond), killed, promoted.Round(time.Millisecond), firstOKAfter.Sub(killedAt).Round(time.Millisecond),
		window.Round(time.Millisecond), len(writes), len(ackedTitles), len(failedTitles), committedFailures, lost, kinds)

	// Jobs enqueued with acknowledged writes, before the kill and after, run once each: one
	// notification per task assigned to Bob.
	testenv.WaitForState(t, 75*time.Second, "Bob's notifications", func() (bool, string) {
		n, distinct := notificationsOf(t, standby, bob)
		return n >= assignedAcked && n == distinct, fmt.Sprintf("%d notifications for %d tasks, %d acknowledged assignments", n, distinct, assignedAcked)
	})
	if n, distinct := notificationsOf(t, standby, bob); n != distinct || n < assignedAcked || n > assignedAcked+committedFailures {
		t.Errorf("Bob has %d notifications for %d tasks; %d assignments were acknowledged", n, distinct, assignedAcked)
	}
	// Ready again, on the new primary; the promoted node and the dead one are out of the read
	// rotation (only a streaming replica takes reads).
	testenv.WaitForState(t, 10*time.Second, "/readyz answers 200 with both nodes out of the read rotation", func() (bool, string) {
		code, checks := readyz(env)
		return code == http.StatusOK && checks["database"] == "ok" &&
				!strings.HasPrefix(checks["replica-1"], "ok") && !strings.HasPrefix(checks["replica-2"], "ok"),
			fmt.Sprintf("%d %v", code, checks)
	})
	// River follows the new primary: a job requested now runs.
	if attempts := runReport(t, alice.Client, 30*time.Second); attempts != 1 {
		t.Errorf("a report after the failover took %d attempts", attempts)
	}

	// The live subscription: told to resync once the listener has reconnected to the new primary
	// (after its backoff), then delivering new writes again.
	at, ok := <-listenedAt
	if !ok {
		t.Fatal("the event listener never listened again after the failover")
	}
	listening := at.Sub(killedAt)
	// The listener retries at least every 2 s (internal/events), so it listens again soon after
	// writes succeed again (the database is reachable from then on).
	if late := listening - firstOKAfter.Sub(killedAt); late > 4*time.Second {
		t.Errorf("the event listener listened again %s after writes succeeded again, want within its 2 s backoff and a little", late)
	}
	createTask(t, alice.Client, "after failover")
	sawResync, sawAfter := false, false
	for !sawAfter {
		kind, title := nextChange(ws, 10*time.Second)
		switch {
		case kind == "":
			t.Fatalf("the subscription went quiet after the failover (resync seen: %v)", sawResync)
		case kind == "RESYNC":
			sawResync = true
		case title == "after failover":
			sawAfter = true
		}
	}
	if !sawResync {
		t.Error("the subscription was not told to resync after the failover")
	}
	t.Logf("the event listener listened on the new primary %s after the kill", listening.Round(time.Millisecond))
	if elapsed := time.Since(began); elapsed > 3*time.Minute {
		t.Errorf("the test took %s, over its 3-minute budget", elapsed)
	}
}

// nextChange reads the subscription's next taskChanged event: its kind and task title ("" on timeout).
func nextChange(ws *testsupport.WS, within time.Duration) (kind, title string) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		m, ok := ws.Next(time.Until(deadline))
		if !ok {
			return "", ""
		}
		if m.Type != "next" {
			continue
		}
		var p struct {
			Data struct {
				TaskChanged struct {
					Kind string
					Task *struct{ Title string }
				}
			}
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			continue
		}
		title := ""
		if p.Data.TaskChanged.Task != nil {
			title = p.Data.TaskChanged.Task.Title
		}
		return p.Data.TaskChanged.Kind, title
	}
	return "", ""
}

// titlesOn reports which of titles are tasks on node (asked with SQL).
func titlesOn(t *testing.T, node *opstest.Node, titles []string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, node.URL("taskgraph"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT title FROM tasks WHERE title = ANY($1)`, titles)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, s := range got {
		out[s] = true
	}
	return out
}

// notificationsOf counts u's TASK_ASSIGNED notifications and the distinct tasks they are about.
func notificationsOf(t *testing.T, node *opstest.Node, u *testsupport.User) (n, distinct int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, node.URL("taskgraph"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT task_id) FROM notifications WHERE user_id = $1 AND kind = 'TASK_ASSIGNED'`,
		u.ID).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	return n, distinct
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readyz asks /readyz for its status and checks (safe from any goroutine).
func readyz(env *testsupport.Env) (int, map[string]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.Server.URL+"/readyz", nil)
	res, err := env.Server.Client().Do(req)
	if err != nil {
		return 0, map[string]string{"error": err.Error()}
	}
	defer res.Body.Close()
	var out struct {
		Checks map[string]string `json:"checks"`
	}
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out.Checks
}
