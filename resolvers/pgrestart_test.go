package resolvers_test

// PostgreSQL going away under load: Taskgraph on a throwaway primary (testsupport.Cluster) keeps
// serving requests while the server is stopped and started again.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/server"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// prLeaks are what a client must never see in an error: driver and network detail, SQL, stacks.
var prLeaks = []string{"SQLSTATE", "pgx", "pgconn", "pgxpool", "dial ", "connection refused", "127.0.0.1",
	"goroutine ", ".go:", "panic", "SELECT ", "INSERT ", "UPDATE ", "FROM ", "terminating connection",
	"shutting down", "starting up"}

// prMessages are the clear messages a failed request may carry, by code: UNAVAILABLE while the
// database cannot be reached, INTERNAL only for a request that ran out of time.
var prMessages = map[string][]string{
	"UNAVAILABLE": {server.UnavailableMessage, "temporarily unable to verify the access token"},
	"INTERNAL":    {"the request ran out of time (REQUEST_TIMEOUT) and was stopped; retry later"},
}

// prCheckFailure reports what is wrong with a failed answer, or "" when it failed cleanly.
func prCheckFailure(r rpResult) string {
	if r.err != nil {
		return "no answer: " + r.err.Error()
	}
	if r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
		return fmt.Sprintf("status %d, want 200 or 503", r.status)
	}
	if len(r.res.Errors) == 0 {
		return "failed without errors[]"
	}
	for _, e := range r.res.Errors {
		if !slices.Contains(prMessages[e.Code()], e.Message) {
			return fmt.Sprintf("unexpected error %s %q", e.Code(), e.Message)
		}
	}
	for _, leak := range prLeaks {
		if strings.Contains(string(r.body), leak) {
			return fmt.Sprintf("answer contains %q", leak)
		}
	}
	return ""
}

// TestPostgresRestartRecovers: while four clients send requests, PostgreSQL is stopped and started
// again. Requests during the outage fail fast and cleanly, /readyz is 503 while it is down, and once
// it is back requests succeed again without restarting Taskgraph.
func TestPostgresRestartRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: restarts a PostgreSQL cluster")
	}
	const (
		requestTimeout = 2 * time.Second
		slack          = time.Second // HTTP, JSON and the race detector on top of REQUEST_TIMEOUT
		clients        = 4
		loadFor        = 8 * time.Second
		outage         = time.Second
	)
	primary := testsupport.NewCluster(t)
	env := testsupport.NewEnvOn(t, primary.Database(t), map[string]string{
		"REQUEST_TIMEOUT":            requestTimeout.String(),
		"RATE_LIMIT_POINTS_PER_HOUR": "1000000", // the clients are busy; limits are not under test
	})
	t.Cleanup(func() { rpDumpLogs(t, env) })
	users := make([]*testsupport.User, clients)
	for i := range users {
		users[i] = env.Register(t, fmt.Sprintf("Client%d", i))
		rpCreate(t, users[i], "before restart")
	}
	// Reads that always reach PostgreSQL (lists are not cached), a write, and cached reads.
	ops := []struct {
		query string
		vars  map[string]any
	}{
		{rpListQuery, nil},
		{rpCreateTask, map[string]any{"input": map[string]any{"title": "during the test"}}},
		{rpCountsQuery, nil},
		{`{ me { id name } }`, nil},
	}

	var (
		mu      sync.Mutex
		results []rpResult
		wg      sync.WaitGroup
	)
	stopLoad := time.Now().Add(loadFor)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(stopLoad); i++ {
				o := ops[i%len(ops)]
				r := rpPost(env, users[c].Token, o.query, o.vars, requestTimeout+10*time.Second)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // pacing, so the load stays modest
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond) // load before the outage (not an assertion)
	downAt := time.Now()
	primary.Stop(t)
	r := rpReadyz(t, env)
	if r.Code != http.StatusServiceUnavailable || r.Status != "unavailable" || r.Checks["database"] != "unreachable" {
		t.Errorf("readyz with PostgreSQL down: %+v, want 503 unavailable, database unreachable", r)
	}
	time.Sleep(time.Until(downAt.Add(outage))) // the outage lasts at least this long
	primary.Start(t)
	upAt := time.Now()
	rpEventually(t, 10*time.Second, "readyz is 200 once PostgreSQL is back", func() (bool, string) {
		r := rpReadyz(t, env)
		return r.Code == http.StatusOK && r.Checks["database"] == "ok", fmt.Sprintf("%+v", r)
	})
	wg.Wait()
	t.Logf("PostgreSQL down %s (stop at +%s); %d requests", upAt.Sub(downAt).Round(time.Millisecond),
		downAt.Sub(stopLoad.Add(-loadFor)).Round(time.Millisecond), len(results))

	slices.SortFunc(results, func(a, b rpResult) int { return a.start.Add(a.took).Compare(b.start.Add(b.took)) })
	var failed, failedInOutage, inOutage, bad int
	var slowest time.Duration
	kinds := map[string]int{} // how the failures looked, for the log
	for _, r := range results {
		slowest = max(slowest, r.took)
		if r.took > requestTimeout+slack {
			t.Errorf("a request took %s, more than REQUEST_TIMEOUT %s: %s", r.took, requestTimeout, r)
		}
		during := r.start.Before(upAt) && r.start.Add(r.took).After(downAt)
		if during {
			inOutage++
		}
		if r.ok() {
			continue
		}
		failed++
		if r.err == nil && len(r.res.Errors) > 0 {
			kinds[fmt.Sprintf("%d %s %q", r.status, r.res.Errors[0].Code(), r.res.Errors[0].Message)]++
		}
		if during {
			failedInOutage++
		}
		if problem := prCheckFailure(r); problem != "" {
			if bad++; bad <= 10 {
				t.Errorf("unclean failure (%s): %s", problem, r)
			}
		}
	}
	t.Logf("%d requests overlapped the outage; %d failed (%d of them in the outage); slowest %s; failures: %v",
		inOutage, failed, failedInOutage, slowest.Round(time.Millisecond), kinds)
	if inOutage < clients || failedInOutage == 0 {
		t.Fatalf("%d requests overlapped the outage, %d failed: the outage was not exercised", inOutage, failedInOutage)
	}
	trailing := 0
	for i := len(results) - 1; i >= 0 && results[i].ok(); i-- {
		trailing++
	}
	if trailing < 10 {
		t.Errorf("only the last %d requests of the load succeeded, want at least 10 in a row after the restart", trailing)
	}

	// And now, sequentially, every kind of request works for every client.
	for i := range 12 {
		u, o := users[i%clients], ops[i%len(ops)]
		if r := rpPost(env, u.Token, o.query, o.vars, 10*time.Second); !r.ok() {
			t.Fatalf("request %d after the restart failed: %s", i, r)
		}
	}
	for _, u := range users {
		if got := rpListTasks(t, u); !slices.Contains(got.Titles, "before restart") {
			t.Fatalf("%s's tasks after the restart: %+v", u.Email, got)
		}
	}
	if strings.Contains(env.Logs.String(), "panic") {
		t.Fatal("the server logged a panic")
	}
}
