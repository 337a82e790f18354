package jobs_test

// Bulk operations at the worker level: a chunk whose transaction fails before it commits leaves
// nothing and is redone once by the retry; an assignee deleted after the request fails the job
// for good; a bulk delete retried after a failed attempt deletes each task once.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

type bulkWorld struct {
	ctx      context.Context
	database *testsupport.Database
	store    *db.DB
	owner    uuid.UUID
}

// newBulkWorld makes a database with an owner of n tasks (created in the past; status TODO, every
// third one DONE) and a store that enqueues on an insert-only queue.
func newBulkWorld(t *testing.T, n int) *bulkWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	database := testsupport.NewDatabase(t)
	inserter, err := jobs.New(database.Pool, jobs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inserter.Close)
	store := db.New(database.Pool, nil, db.WithEnqueuer(inserter))
	owner, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "Owner", Email: "owner@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	database.SeedTasks(t, `
		INSERT INTO tasks (id, owner_id, title, status, created_at)
		SELECT gen_random_uuid(), $1, 'task ' || g, CASE WHEN g % 3 = 0 THEN 'DONE' ELSE 'TODO' END,
		       now() - interval '1 hour' - g * interval '1 second'
		FROM generate_series(1, $2::int) g`, owner.ID, n)
	return &bulkWorld{ctx: ctx, database: database, store: store, owner: owner.ID}
}

// request creates a bulk job for the owner as the mutations do: its row and queue entry together.
func (w *bulkWorld) request(t *testing.T, kind db.JobKind, params userjobs.BulkParams) uuid.UUID {
	t.Helper()
	params.RequestedAt = time.Now()
	var id uuid.UUID
	err := w.store.InTx(w.ctx, func(s db.Stores) error {
		j, err := s.BackgroundJobs.Create(w.ctx, w.owner, kind, params, 0)
		if err != nil {
			return err
		}
		id = j.ID
		return s.Jobs.Enqueue(w.ctx, userjobs.QueueEntry(j))
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *bulkWorld) work(t *testing.T, hook userjobs.ChunkHook) {
	t.Helper()
	q, err := jobs.New(w.database.Pool, jobs.Options{
		Work: true, Workers: 2, JobTimeout: time.Minute, RescueAfter: time.Hour, LongJobTimeout: time.Minute, AfterChunk: hook,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	if err := q.Start(w.ctx); err != nil {
		t.Fatal(err)
	}
}

func (w *bulkWorld) waitFinished(t *testing.T, id uuid.UUID) *db.BackgroundJob {
	t.Helper()
	var j *db.BackgroundJob
	testenv.WaitForState(t, 30*time.Second, "the job to finish", func() (bool, string) {
		var err error
		if j, err = w.store.Stores().BackgroundJobs.ByID(w.ctx, id); err != nil {
			t.Fatal(err)
		}
		return j.Status.Finished(), string(j.Status)
	})
	return j
}

func (w *bulkWorld) count(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := w.database.Pool.QueryRow(w.ctx, `SELECT count(*) FROM tasks WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (w *bulkWorld) result(t *testing.T, j *db.BackgroundJob) userjobs.BulkResult {
	t.Helper()
	if j.Status != db.JobSucceeded {
		t.Fatalf("job %s: %s %v", j.Status, derefOr(j.ErrorCode), derefOr(j.ErrorMessage))
	}
	var r userjobs.BulkResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func derefOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// The third chunk's transaction fails after its task UPDATE ran but before it commits (the job's
// progress write raises, as a lost connection or a crash there would end it). The retry resumes at
// that chunk: every task is changed once, and affectedCount counts each change once, which it
// could not if the failed chunk had left any change behind (the retry would find it made).
func TestBulkChunkFailingBeforeCommitIsRedoneOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	w := newBulkWorld(t, 1800)
	need := w.count(t, `status <> 'DONE'`)
	if _, err := w.database.Pool.Exec(w.ctx, `
		CREATE FUNCTION fail_third_chunk() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected failure inside the third chunk'; END $$;
		CREATE TRIGGER fail_third_chunk BEFORE UPDATE ON jobs FOR EACH ROW
		WHEN (OLD.processed = 1000 AND NEW.processed > 1000 AND NEW.attempt = 1)
		EXECUTE FUNCTION fail_third_chunk();`); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		chunks []string
	)
	w.work(t, func(_ context.Context, j *db.BackgroundJob, n int) error {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, fmt.Sprintf("a%d/c%d:%d", j.Attempt, n, j.Processed))
		return nil
	})
	id := w.request(t, db.JobBulkUpdateTasks, userjobs.BulkParams{
		Patch: &userjobs.BulkPatch{Status: db.Optional[db.TaskStatus]{Set: true, Value: db.StatusDone}},
	})
	j := w.waitFinished(t, id)
	if r := w.result(t, j); r != (userjobs.BulkResult{MatchedCount: 1800, AffectedCount: int32(need)}) || j.Attempt != 2 {
		t.Fatalf("result %+v after %d attempts; want 1800 matched, %d affected, 2 attempts", r, j.Attempt, need)
	}
	mu.Lock()
	got := fmt.Sprint(chunks)
	mu.Unlock()
	if want := "[a1/c1:500 a1/c2:1000 a2/c1:1500 a2/c2:1800]"; got != want {
		t.Fatalf("chunks %s, want %s", got, want)
	}
	if n := w.count(t, `status = 'DONE' AND version = 2`); n != need {
		t.Fatalf("%d tasks changed once, want %d", n, need)
	}
	if n := w.count(t, `version > 2`); n != 0 {
		t.Fatalf("%d tasks changed twice", n)
	}
	var errs []string
	if err := w.database.Pool.QueryRow(w.ctx, `SELECT array(SELECT e->>'error' FROM river_job, unnest(errors) e WHERE kind = $1)`,
		userjobs.KindBulkUpdate).Scan(&errs); err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "injected failure inside the third chunk") {
		t.Fatalf("queue entry errors %q, want the injected one", errs)
	}
}

// The assignee is deleted between the request and the work: no retry can help, so the job fails
// at once with a message for the user, and the chunk that hit it left nothing.
func TestBulkAssignToDeletedUserFailsForGood(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	w := newBulkWorld(t, 700)
	gone, err := w.store.Stores().Users.Create(w.ctx, db.NewUser{Name: "Gone", Email: "gone@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	id := w.request(t, db.JobBulkUpdateTasks, userjobs.BulkParams{
		Patch: &userjobs.BulkPatch{AssigneeID: db.Optional[*uuid.UUID]{Set: true, Value: &gone.ID}},
	})
	if _, err := w.database.Pool.Exec(w.ctx, `DELETE FROM users WHERE id = $1`, gone.ID); err != nil {
		t.Fatal(err)
	}
	w.work(t, nil)
	j := w.waitFinished(t, id)
	if j.Status != db.JobFailed || derefOr(j.ErrorCode) != "BAD_USER_INPUT" || derefOr(j.ErrorMessage) != "the assignee no longer exists" ||
		j.Processed != 0 || j.Attempt != 1 {
		t.Fatalf("job = %s %s %q, processed %d, attempt %d", j.Status, derefOr(j.ErrorCode), derefOr(j.ErrorMessage), j.Processed, j.Attempt)
	}
	if n := w.count(t, `version > 1 OR assignee_id IS NOT NULL`); n != 0 {
		t.Fatalf("%d tasks changed", n)
	}
	var notify int
	if err := w.database.Pool.QueryRow(w.ctx, `SELECT count(*) FROM river_job WHERE kind = $1`, notifications.KindNotifyAssigned).Scan(&notify); err != nil || notify != 0 {
		t.Fatalf("%d notification jobs (%v), want none", notify, err)
	}
}

// A bulk delete whose attempt fails after its first chunk deletes the rest on the retry, each task
// once, and counts every deletion once.
func TestBulkDeleteRetriedAttemptDeletesEachTaskOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	w := newBulkWorld(t, 1200)
	todo := w.count(t, `status = 'TODO'`)
	var (
		mu     sync.Mutex
		chunks []string
	)
	w.work(t, func(_ context.Context, j *db.BackgroundJob, n int) error {
		mu.Lock()
		defer mu.Unlock()
		chunks = append(chunks, fmt.Sprintf("a%d/c%d:%d", j.Attempt, n, j.Processed))
		if j.Attempt == 1 && n == 1 {
			return fmt.Errorf("injected crash after chunk 1")
		}
		return nil
	})
	id := w.request(t, db.JobBulkDeleteTasks, userjobs.BulkParams{Filter: &db.TaskFilter{Status: []db.TaskStatus{db.StatusTodo}}})
	j := w.waitFinished(t, id)
	if r := w.result(t, j); r != (userjobs.BulkResult{MatchedCount: int32(todo), AffectedCount: int32(todo)}) || j.Attempt != 2 {
		t.Fatalf("result %+v after %d attempts; want %d matched and deleted, 2 attempts", r, j.Attempt, todo)
	}
	mu.Lock()
	got := fmt.Sprint(chunks)
	mu.Unlock()
	if want := fmt.Sprintf("[a1/c1:500 a2/c1:%d]", todo); got != want {
		t.Fatalf("chunks %s, want %s", got, want)
	}
	if n, done := w.count(t, `status = 'TODO'`), w.count(t, `status = 'DONE'`); n != 0 || done != 1200-todo {
		t.Fatalf("%d TODO tasks left, %d DONE; want 0, %d", n, done, 1200-todo)
	}
}
