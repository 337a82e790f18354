package db_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// exportSetup is a database with a user owning n tasks created 1 ms apart (oldest first), one in
// three assigned to a second user, and no statistics gathered yet (as right after a bulk import).
func exportSetup(t *testing.T, n int) (context.Context, *db.DB, *sqlRecorder, uuid.UUID, uuid.UUID, time.Time) {
	t.Helper()
	database := testsupport.NewDatabase(t)
	rec := &sqlRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, err := db.OpenPool(ctx, database.URL, db.PoolOptions{MaxConns: 2, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := db.New(pool, nil)
	owner, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "Ex", Email: "ex@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	assignee, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "As", Email: "as@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, status, tags, created_at)
		SELECT gen_random_uuid(), $1, CASE WHEN g % 3 = 0 THEN $2::uuid END, 'task ' || g,
		       (ARRAY['TODO','IN_PROGRESS','DONE'])[1 + g % 3], ARRAY['t' || g % 5], $3::timestamptz + g * interval '1 millisecond'
		FROM generate_series(1, $4::int) g`, owner.ID, assignee.ID, base, n); err != nil {
		t.Fatal(err)
	}
	return ctx, store, rec, owner.ID, assignee.ID, base
}

func titles(t *testing.T, store *db.DB, q db.ExportQuery, after *db.ExportKey, limit int) ([]string, *db.ExportKey) {
	t.Helper()
	var out []string
	var last *db.ExportKey
	for task, err := range store.Stores().Tasks.ExportRows(context.Background(), q, after, limit) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, task.Title)
		last = &db.ExportKey{CreatedAt: task.CreatedAt, ID: task.ID}
	}
	return out, last
}

func TestExportRowsPagesInCreationOrderUpToTheRequest(t *testing.T) {
	ctx, store, _, owner, assignee, base := exportSetup(t, 50)
	q := db.ExportQuery{Tasks: db.TaskScope{UserID: owner}, CreatedUpTo: base.Add(40 * time.Millisecond)} // tasks 1..40
	var all []string
	var after *db.ExportKey
	for {
		page, last := titles(t, store, q, after, 15)
		all = append(all, page...)
		if len(page) < 15 {
			break
		}
		after = last
	}
	if len(all) != 40 || all[0] != "task 1" || all[14] != "task 15" || all[15] != "task 16" || all[39] != "task 40" {
		t.Fatalf("paged export = %v", all)
	}
	if n, err := store.Stores().Tasks.CountForExport(ctx, q); err != nil || n != 40 {
		t.Fatalf("CountForExport = %d, %v; want 40", n, err)
	}

	// assignedToMe with a filter: the tasks assigned to the second user (g % 3 == 0, all of them
	// TODO) whoever owns them; and none of their own.
	yes := true
	aq := db.ExportQuery{Tasks: db.TaskScope{UserID: assignee, Assigned: true}, CreatedUpTo: base.Add(time.Hour), Filter: &db.TaskFilter{AssignedToMe: &yes, Status: []db.TaskStatus{db.StatusTodo}}}
	got, _ := titles(t, store, aq, nil, 100)
	if len(got) != 16 || got[0] != "task 3" || got[15] != "task 48" {
		t.Fatalf("assigned export = %v", got)
	}
	if own, _ := titles(t, store, db.ExportQuery{Tasks: db.TaskScope{UserID: assignee}, CreatedUpTo: base.Add(time.Hour)}, nil, 100); len(own) != 0 {
		t.Fatalf("the assignee's own export holds %v", own)
	}

	// Breaking out ends the page early and frees the connection (MaxConns is 2: a leak would
	// block the next query).
	for range 5 {
		for _, err := range store.Stores().Tasks.ExportRows(ctx, q, nil, 15) {
			if err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if got, _ := titles(t, store, q, nil, 1); len(got) != 1 {
		t.Fatalf("after breaking out: %v", got)
	}
}

// Each page is read in index order without sorting, even before statistics exist: otherwise every
// page of an export sorts all the rows after it (quadratic for a large user).
func TestExportRowsReadsInIndexOrderWithoutStatistics(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: seeds thousands of rows to read query plans")
	}
	ctx, store, rec, owner, assignee, base := exportSetup(t, 20_000)
	yes := true
	search := "task 1"
	after := &db.ExportKey{CreatedAt: base.Add(5 * time.Second), ID: uuid.Nil}
	cases := []struct {
		name  string
		q     db.ExportQuery
		index string
	}{
		{"own tasks", db.ExportQuery{Tasks: db.TaskScope{UserID: owner}, CreatedUpTo: time.Now()}, "tasks_owner_created_at_idx"},
		{"own, filtered", db.ExportQuery{Tasks: db.TaskScope{UserID: owner}, CreatedUpTo: time.Now(),
			Filter: &db.TaskFilter{Status: []db.TaskStatus{db.StatusDone}, Search: &search}}, "tasks_owner_created_at_idx"},
		{"assigned to me", db.ExportQuery{Tasks: db.TaskScope{UserID: assignee, Assigned: true}, CreatedUpTo: time.Now(), Filter: &db.TaskFilter{AssignedToMe: &yes}}, "tasks_assignee_created_at_idx"},
	}
	for _, c := range cases {
		rec.mu.Lock()
		rec.sql, rec.args = nil, nil
		rec.mu.Unlock()
		if _, last := titles(t, store, c.q, after, 1000); last == nil {
			t.Fatalf("%s: no rows", c.name)
		}
		// Replay what the store ran (its settings, then EXPLAIN of its query) in one transaction.
		rec.mu.Lock()
		sqls, args := append([]string(nil), rec.sql...), append([][]any(nil), rec.args...)
		rec.mu.Unlock()
		tx, err := store.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var plan string
		for i, sql := range sqls {
			switch s := strings.TrimSpace(sql); {
			case strings.HasPrefix(s, "SET"):
				if _, err := tx.Exec(ctx, s); err != nil {
					t.Fatal(err)
				}
			case strings.HasPrefix(s, "SELECT"):
				var raw []byte
				if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+s, args[i]...).Scan(&raw); err != nil {
					t.Fatalf("%s: EXPLAIN: %v", c.name, err)
				}
				var v any
				_ = json.Unmarshal(raw, &v)
				b, _ := json.Marshal(v)
				plan = string(b)
			}
		}
		_ = tx.Rollback(ctx)
		if plan == "" {
			t.Fatalf("%s: no SELECT recorded in %q", c.name, sqls)
		}
		if strings.Contains(plan, `"Node Type":"Sort"`) || !strings.Contains(plan, `"Index Name":"`+c.index+`"`) {
			t.Errorf("%s: plan sorts or misses %s:\n%s", c.name, c.index, plan)
		}
	}
}

func TestReadChunkIntoReusesTheBuffer(t *testing.T) {
	ctx, store, _, owner, _, _ := exportSetup(t, 0)
	job := uuid.New()
	pool := store.Pool()
	if _, err := pool.Exec(ctx, `INSERT INTO jobs (id, user_id, kind) VALUES ($1, $2, 'TASK_EXPORT')`, job, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, 0, 'hello world'), ($1, 1, 'bye')`, job); err != nil {
		t.Fatal(err)
	}
	s := store.Stores().BackgroundJobs
	buf := make([]byte, 0, 64)
	got, ok, err := s.ReadChunkInto(ctx, job, 0, buf)
	if err != nil || !ok || string(got) != "hello world" || &got[:1][0] != &buf[:1][0] {
		t.Fatalf("chunk 0 = %q, %v, %v (same memory: %v)", got, ok, err, &got[:1][0] == &buf[:1][0])
	}
	got, ok, err = s.ReadChunkInto(ctx, job, 1, got)
	if err != nil || !ok || string(got) != "bye" || &got[0] != &buf[:1][0] {
		t.Fatalf("chunk 1 = %q, %v, %v", got, ok, err)
	}
	if _, ok, err := s.ReadChunkInto(ctx, job, 2, got); ok || err != nil {
		t.Fatalf("chunk 2: %v, %v; want none", ok, err)
	}
	// Larger than the buffer: a new one.
	if got, ok, err := s.ReadChunkInto(ctx, job, 0, make([]byte, 0, 4)); err != nil || !ok || string(got) != "hello world" {
		t.Fatalf("into a small buffer: %q, %v, %v", got, ok, err)
	}
}
