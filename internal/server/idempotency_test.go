package server_test

// Idempotency keys: a retried mutation with the same Idempotency-Key answers the stored answer (same
// ids, one write, one job), the same key with another request is refused, a duplicate running at the
// same time (in this instance or another one on the same database) never runs twice, keys are scoped
// per client, expire, and work over a websocket through extensions.idempotencyKey.

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const idemCreate = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { id title } } }`

// idemPost sends one operation with an Idempotency-Key (none when key is "").
func idemPost(t *testing.T, env *testsupport.Env, token, key, query string, vars map[string]any) hresp {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		h.Set("Idempotency-Key", key)
	}
	return hdo(t, env, http.MethodPost, "/graphql", h, body)
}

func idemTaskID(t *testing.T, r hresp) string {
	t.Helper()
	var d struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	if len(r.Errors) > 0 || json.Unmarshal(r.Data, &d) != nil || d.CreateTask.Task.ID == "" {
		t.Fatalf("createTask answered %d %s %+v", r.Status, r.Data, r.Errors)
	}
	return d.CreateTask.Task.ID
}

func TestIdempotencyKeyReplaysTheStoredAnswer(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Idem")
	vars := map[string]any{"input": map[string]any{"title": "once"}}

	first := idemPost(t, env, u.Token, "k-1", idemCreate, vars)
	id := idemTaskID(t, first)
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the first answer is marked replayed")
	}
	again := idemPost(t, env, u.Token, "k-1", idemCreate, vars)
	if got := idemTaskID(t, again); got != id {
		t.Fatalf("retry created %s, first %s", got, id)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" || again.Status != http.StatusOK {
		t.Fatalf("retry: status %d, Idempotent-Replayed %q", again.Status, again.Header.Get("Idempotent-Replayed"))
	}
	if n := env.CountRows(t, "tasks"); n != 1 {
		t.Fatalf("%d tasks after a retry, want 1", n)
	}

	// The same key with another request: refused, nothing written.
	other := idemPost(t, env, u.Token, "k-1", idemCreate, map[string]any{"input": map[string]any{"title": "twice"}})
	if other.code() != "IDEMPOTENCY_KEY_REUSED" || other.Status != http.StatusUnprocessableEntity {
		t.Fatalf("reused key: %d %+v", other.Status, other.Errors)
	}
	// Keys are per client: another user's k-1 is a new request.
	v := env.Register(t, "Other")
	idemTaskID(t, idemPost(t, env, v.Token, "k-1", idemCreate, vars))
	// No key: every request runs.
	idemTaskID(t, idemPost(t, env, u.Token, "", idemCreate, vars))
	if n := env.CountRows(t, "tasks"); n != 3 {
		t.Fatalf("%d tasks, want 3", n)
	}

	for _, bad := range []string{"with space", strings.Repeat("a", 256), "é"} {
		r := idemPost(t, env, u.Token, bad, idemCreate, vars)
		if r.code() != "BAD_USER_INPUT" {
			t.Errorf("key %q: %d %+v", bad, r.Status, r.Errors)
		}
	}
	// A query ignores the key.
	if r := idemPost(t, env, u.Token, "k-1", `{ me { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("query with a key: %+v", r.Errors)
	}
}

func TestIdempotencyKeyRegisterAndJobs(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	// Anonymous: scoped to the client IP.
	reg := `mutation($input: RegisterInput!) { register(input: $input) { accessToken user { id } } }`
	vars := map[string]any{"input": map[string]any{"name": "R", "email": "r@example.com", "password": "password-123"}}
	a := idemPost(t, env, "", "reg-1", reg, vars)
	b := idemPost(t, env, "", "reg-1", reg, vars)
	if len(a.Errors) > 0 || string(a.Data) != string(b.Data) || b.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("register retry: %s %+v / %s %+v", a.Data, a.Errors, b.Data, b.Errors)
	}
	if n := env.CountRows(t, "users"); n != 1 {
		t.Fatalf("%d users, want 1", n)
	}
	// The stored answer holds tokens: it is sealed, never readable in the database.
	var readable int
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys
		WHERE position(convert_to('accessToken', 'UTF8') IN response) > 0`).Scan(&readable); err != nil || readable != 0 {
		t.Fatalf("%d stored answers readable (%v)", readable, err)
	}

	u := env.Register(t, "Jobs")
	for name, op := range map[string]struct {
		query string
		vars  map[string]any
	}{
		"export":     {`mutation { requestTaskExport(format: CSV) { id } }`, nil},
		"bulkDelete": {`mutation($f: TaskFilter!) { bulkDeleteTasks(filter: $f) { id } }`, map[string]any{"f": map[string]any{}}},
		"bulkUpdate": {`mutation($f: TaskFilter!) { bulkUpdateTasks(filter: $f, patch: {status: DONE}) { id } }`, map[string]any{"f": map[string]any{}}},
	} {
		before := env.CountRows(t, "jobs")
		queued := env.CountRows(t, "river_job")
		x := idemPost(t, env, u.Token, "job-"+name, op.query, op.vars)
		y := idemPost(t, env, u.Token, "job-"+name, op.query, op.vars)
		if len(x.Errors) > 0 || string(x.Data) != string(y.Data) {
			t.Fatalf("%s retry: %s %+v / %s %+v", name, x.Data, x.Errors, y.Data, y.Errors)
		}
		if n := env.CountRows(t, "jobs"); n != before+1 {
			t.Fatalf("%s: %d new jobs, want 1", name, n-before)
		}
		if n := env.CountRows(t, "river_job"); n != queued+1 {
			t.Fatalf("%s: %d new queue entries, want 1", name, n-queued)
		}
	}
}

func TestIdempotencyKeyExpiresAndFailedRunsRelease(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Exp")
	vars := map[string]any{"input": map[string]any{"title": "x"}}
	id := idemTaskID(t, idemPost(t, env, u.Token, "e-1", idemCreate, vars))
	env.Exec(t, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`)
	if again := idemTaskID(t, idemPost(t, env, u.Token, "e-1", idemCreate, vars)); again == id {
		t.Fatal("an expired key replayed its answer")
	}
	if n := env.CountRows(t, "tasks"); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
	// The retention sweep deletes expired keys only.
	env.Exec(t, `UPDATE idempotency_keys SET expires_at = now() - interval '1 second'`)
	idemTaskID(t, idemPost(t, env, u.Token, "e-live", idemCreate, vars))
	if n, err := env.Store.Stores().Idempotency.PurgeExpired(context.Background()); err != nil || n != 1 {
		t.Fatalf("purged %d keys (%v), want 1", n, err)
	}
	if n := env.CountRows(t, "idempotency_keys"); n != 1 {
		t.Fatalf("%d keys left, want the live one", n)
	}
	// A request that failed wrote nothing: its key is given up, so the corrected retry... is the same
	// request, which runs again (no answer is kept for it).
	bad := map[string]any{"input": map[string]any{"title": ""}}
	for range 2 {
		if r := idemPost(t, env, u.Token, "e-2", idemCreate, bad); r.code() != "BAD_USER_INPUT" {
			t.Fatalf("invalid createTask: %+v", r.Errors)
		}
	}
	if n := env.CountRows(t, "idempotency_keys"); n != 1 {
		t.Fatalf("%d keys kept, want only e-live (failed runs keep none)", n)
	}
}

// A run that outlived its lease and was taken over must not commit: the takeover's claim replaced
// its lease, and db.InTx checks the lease inside the write's transaction.
func TestIdempotencyClaimLostRollsBackTheWrite(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Lost")
	ctx := context.Background()
	st := env.Store.Stores()
	scope, key := "user:"+u.ID.String(), "lost-1"
	mine := uuid.New()
	ok, _, err := st.Idempotency.Claim(ctx, scope, key, []byte("h"), mine, 0, 3600e9)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	// Lease 0: already expired; the same request claims it over.
	taker := uuid.New()
	if ok, _, err := st.Idempotency.Claim(ctx, scope, key, []byte("h"), taker, 3600e9, 3600e9); err != nil || !ok {
		t.Fatalf("takeover: %v %v", ok, err)
	}
	claim := &db.IdempotencyClaim{Scope: scope, Key: key, Lease: mine}
	err = env.Store.InTx(db.WithIdempotencyClaim(ctx, claim), func(s db.Stores) error {
		_, err := s.Tasks.Create(ctx, u.ID, db.NewTask{Title: "stale run", Status: db.StatusTodo})
		return err
	})
	if err == nil || claim.Committed() {
		t.Fatal("a run whose claim was taken over committed")
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Fatalf("%d tasks written by the stale run", n)
	}
	// The holder's write commits with its record.
	holder := &db.IdempotencyClaim{Scope: scope, Key: key, Lease: taker}
	err = env.Store.InTx(db.WithIdempotencyClaim(ctx, holder), func(s db.Stores) error {
		_, err := s.Tasks.Create(ctx, u.ID, db.NewTask{Title: "holder", Status: db.StatusTodo})
		return err
	})
	if err != nil || !holder.Committed() {
		t.Fatalf("holder: %v", err)
	}
	var committed bool
	if err := env.DB.Pool.QueryRow(ctx, `SELECT committed_at IS NOT NULL FROM idempotency_keys`).Scan(&committed); err != nil || !committed {
		t.Fatalf("record not committed with the write: %v %v", committed, err)
	}
}

// Duplicates sent at once to two instances on one database: exactly one runs; every other answer is
// the stored answer or a retryable IDEMPOTENCY_KEY_IN_USE.
func TestIdempotencyKeyConcurrentDuplicatesRunOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances and concurrent requests")
	}
	a := testsupport.NewEnv(t, nil)
	b := testsupport.NewEnvOn(t, a.DB, nil)
	u := a.Register(t, "Race")
	for round := range 5 {
		key := uuid.NewString()
		vars := map[string]any{"input": map[string]any{"title": key}}
		var wg sync.WaitGroup
		answers := make([]hresp, 8)
		for i := range answers {
			env := a
			if i%2 == 1 {
				env = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = idemPost(t, env, u.Token, key, idemCreate, vars)
			}()
		}
		wg.Wait()
		ids := map[string]bool{}
		for _, r := range answers {
			switch {
			case r.code() == "IDEMPOTENCY_KEY_IN_USE":
				if r.Status != http.StatusConflict || r.Header.Get("Retry-After") == "" {
					t.Fatalf("in use: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
				}
			default:
				ids[idemTaskID(t, r)] = true
			}
		}
		var n int
		if err := a.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tasks WHERE title = $1`, key).Scan(&n); err != nil || n != 1 {
			t.Fatalf("round %d: %d tasks (%v), want 1", round, n, err)
		}
		if len(ids) > 1 {
			t.Fatalf("round %d: answers name %d tasks", round, len(ids))
		}
		// A retry after the race answers the one task.
		final := idemTaskID(t, idemPost(t, b, u.Token, key, idemCreate, vars))
		for id := range ids {
			if id != final {
				t.Fatalf("round %d: retry answered %s, race %s", round, final, id)
			}
		}
	}
}

// On a websocket the key travels in the subscribe message's extensions (the upgrade request's headers
// belong to the connection, not to one mutation).
func TestIdempotencyKeyOverWebsocket(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "WS")
	ws := testsupport.DialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
	ws.MustAck()
	send := func(id, key string) string {
		payload, _ := json.Marshal(map[string]any{"query": idemCreate,
			"variables":  map[string]any{"input": map[string]any{"title": "ws"}},
			"extensions": map[string]any{"idempotencyKey": key}})
		ws.Send(testsupport.WSMessage{ID: id, Type: "subscribe", Payload: payload})
		for {
			m, ok := ws.Next(10e9)
			if !ok {
				t.Fatalf("operation %s: no answer", id)
			}
			if m.ID == id && m.Type == "next" {
				var r struct {
					Data struct {
						CreateTask struct{ Task struct{ ID string } }
					}
				}
				if err := json.Unmarshal(m.Payload, &r); err != nil || r.Data.CreateTask.Task.ID == "" {
					t.Fatalf("operation %s: %s", id, m.Payload)
				}
				return r.Data.CreateTask.Task.ID
			}
		}
	}
	first := send("1", "ws-key")
	if again := send("2", "ws-key"); again != first {
		t.Fatalf("websocket retry created %s, first %s", again, first)
	}
	if other := send("3", "ws-key-2"); other == first {
		t.Fatal("another key replayed the first answer")
	}
	if n := env.CountRows(t, "tasks"); n != 2 {
		t.Fatalf("%d tasks, want 2", n)
	}
}
