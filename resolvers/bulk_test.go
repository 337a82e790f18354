package resolvers_test

// bulkUpdateTasks and bulkDeleteTasks through the real HTTP handler with River workers: what they
// touch (exactly the caller's matching tasks that existed at the request), each task changed once
// (under retries too), progress and results, cancellation at a chunk boundary, the notifications
// an assignment causes, input validation and the active-job limit.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

const (
	bkUpdate = `mutation($filter: TaskFilter!, $patch: BulkTaskPatch!) {
  bulkUpdateTasks(filter: $filter, patch: $patch) { ` + jbJobFields + ` } }`
	bkDelete = `mutation($filter: TaskFilter!) { bulkDeleteTasks(filter: $filter) { ` + jbJobFields + ` } }`
	bkTask   = `query($id: ID!) { task(id: $id) { id status priority version } }`
)

type bkResult struct{ MatchedCount, AffectedCount int }

func (j jbJob) bulkResult(t *testing.T) bkResult {
	t.Helper()
	var r bkResult
	if err := json.Unmarshal(j.Result, &r); err != nil {
		t.Fatalf("job result %s: %v", j.Result, err)
	}
	return r
}

// bkSeed inserts n tasks for owner, created in the past one second apart (oldest last): status by
// g%3 (TODO, IN_PROGRESS, DONE), priority by (g/2)%4 (LOW..URGENT), tags ["work","q1"] for even g
// and ["home"] for odd g.
func bkSeed(t *testing.T, env *testsupport.Env, owner uuid.UUID, n int) {
	t.Helper()
	env.DB.SeedTasks(t, `
		INSERT INTO tasks (id, owner_id, title, status, priority, tags, created_at)
		SELECT gen_random_uuid(), $1, 'task ' || g,
		       (ARRAY['TODO', 'IN_PROGRESS', 'DONE'])[1 + g % 3], (g / 2) % 4,
		       CASE WHEN g % 2 = 0 THEN ARRAY['work', 'q1'] ELSE ARRAY['home'] END,
		       now() - interval '1 hour' - g * interval '1 second'
		FROM generate_series(1, $2::int) g`, owner, n)
}

func bkCount(t *testing.T, env *testsupport.Env, where string, args ...any) int {
	t.Helper()
	var n int
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tasks WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func bkRequest(t *testing.T, u *testsupport.User, query string, vars map[string]any) jbJob {
	t.Helper()
	var out map[string]jbJob
	u.Do(t, query, vars).Decode(t, &out)
	for _, j := range out {
		return j
	}
	t.Fatal("no job in the answer")
	return jbJob{}
}

type bkTaskView struct {
	ID, Status, Priority string
	Version              int
}

func bkGetTask(t *testing.T, u *testsupport.User, id uuid.UUID) (bkTaskView, string) {
	t.Helper()
	res := u.Do(t, bkTask, map[string]any{"id": globalid.Encode(globalid.KindTask, id)})
	if len(res.Errors) > 0 {
		return bkTaskView{}, res.Errors[0].Code()
	}
	var out struct{ Task bkTaskView }
	res.Decode(t, &out)
	return out.Task, ""
}

// chunkLog records what the AfterChunk hook saw, per attempt.
type chunkLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *chunkLog) add(j *db.BackgroundJob, n int) {
	total := -1
	if j.Total != nil {
		total = int(*j.Total)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf("a%d/c%d:%d/%d", j.Attempt, n, j.Processed, total))
}

func (l *chunkLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.entries)
}

func TestBulkUpdateTasksChangesExactlyTheMatchingTasksOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	bkSeed(t, env, alice.ID, 6000)
	bkSeed(t, env, bob.ID, 600)
	// The filter: Alice's "work" tasks that are TODO or DONE (2000 of them). The patch makes them
	// DONE and URGENT: the 250 already DONE and URGENT match but need no change.
	scope := `owner_id = $1 AND 'work' = ANY(tags) AND status IN ('TODO', 'DONE')`
	matched := bkCount(t, env, scope, alice.ID)
	already := bkCount(t, env, scope+` AND status = 'DONE' AND priority = 3`, alice.ID)
	if matched != 2000 || already != 250 {
		t.Fatalf("seed: %d matching, %d already patched; want 2000, 250", matched, already)
	}
	// A task the patch will change, read (and cached) before the job.
	var watched uuid.UUID
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT id FROM tasks WHERE `+scope+` AND status = 'TODO' LIMIT 1`, alice.ID).Scan(&watched); err != nil {
		t.Fatal(err)
	}
	if v, code := bkGetTask(t, alice, watched); code != "" || v.Status != "TODO" || v.Version != 1 {
		t.Fatalf("watched task before: %+v %s", v, code)
	}

	job := bkRequest(t, alice, bkUpdate, map[string]any{
		"filter": map[string]any{"tag": " WORK ", "status": []string{"TODO", "DONE"}},
		"patch":  map[string]any{"status": "DONE", "priority": "URGENT"},
	})
	if job.Kind != "BULK_UPDATE_TASKS" || job.Status != "QUEUED" || job.TotalCount != nil || job.ProcessedCount != 0 {
		t.Fatalf("requested job = %+v", job)
	}
	// Tasks created after the request, matching the filter: left alone.
	for i := range 3 {
		env.CreateTask(t, alice.ID, db.NewTask{Title: fmt.Sprintf("late %d", i), Tags: []string{"work"}})
	}

	log := &chunkLog{}
	start := time.Now()
	jbStartWorkers(t, env, jobs.Options{
		Invalidator: db.Invalidators{env.App.Cache, env.App.Events},
		AfterChunk: func(_ context.Context, j *db.BackgroundJob, n int) error {
			log.add(j, n)
			return nil
		},
	})
	done := jbWaitFinished(t, alice, job.ID)
	t.Logf("%d tasks matched, %d changed, in %s (chunks: %s)", matched, matched-already, time.Since(start), log)
	if done.Status != "SUCCEEDED" || done.Progress != 1 || done.ProcessedCount != matched || done.TotalCount == nil ||
		*done.TotalCount != matched || done.Attempt != 1 || done.Error != nil {
		var attemptErrors []string
		_ = env.DB.Pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(e::text), '{}') FROM river_job, unnest(errors) e`).Scan(&attemptErrors)
		t.Fatalf("finished job = %+v; queue errors: %q", done, attemptErrors)
	}
	if r := done.bulkResult(t); r != (bkResult{MatchedCount: matched, AffectedCount: matched - already}) {
		t.Fatalf("result = %+v, want %d matched, %d affected", r, matched, matched-already)
	}
	// Progress grew chunk by chunk up to the total (the last, empty chunk found the end).
	if got, want := log.String(), "[a1/c1:500/2000 a1/c2:1000/2000 a1/c3:1500/2000 a1/c4:2000/2000 a1/c5:2000/2000]"; got != want {
		t.Errorf("chunks %s, want %s", got, want)
	}

	// Each changed task moved once (version 2); nothing else moved at all.
	if n := bkCount(t, env, scope+` AND status = 'DONE' AND priority = 3 AND version = 2`, alice.ID); n != matched-already {
		t.Errorf("%d tasks changed once, want %d", n, matched-already)
	}
	if n := bkCount(t, env, `version > 2 OR (version = 2 AND NOT (`+scope+`))`, alice.ID); n != 0 {
		t.Errorf("%d tasks changed twice or outside the filter", n)
	}
	if n := bkCount(t, env, `owner_id = $1 AND version = 1`, bob.ID); n != 600 {
		t.Errorf("Bob's tasks changed: %d of 600 untouched", n)
	}
	if n := bkCount(t, env, `owner_id = $1 AND title LIKE 'late %' AND status = 'TODO' AND version = 1`, alice.ID); n != 3 {
		t.Errorf("tasks created after the request changed: %d of 3 untouched", n)
	}
	// The cached copy was dropped: the read shows the change.
	if v, code := bkGetTask(t, alice, watched); code != "" || v.Status != "DONE" || v.Priority != "URGENT" || v.Version != 2 {
		t.Errorf("watched task after: %+v %s", v, code)
	}
	// No assignment, so no notification jobs.
	var notify int
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind LIKE 'notify\_%'`).Scan(&notify); err != nil || notify != 0 {
		t.Errorf("%d notification jobs (%v), want none", notify, err)
	}
}

// A job whose attempt fails after its second chunk (as a crash would) is retried and resumes at its
// third chunk: every task is changed exactly once and the counts cover each task once.
func TestBulkUpdateRetriedAttemptResumesAtItsCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice := env.Register(t, "Alice")
	bkSeed(t, env, alice.ID, 2300)
	need := bkCount(t, env, `owner_id = $1 AND status <> 'DONE'`, alice.ID)

	job := bkRequest(t, alice, bkUpdate, map[string]any{"filter": map[string]any{}, "patch": map[string]any{"status": "DONE"}})
	log := &chunkLog{}
	jbStartWorkers(t, env, jobs.Options{AfterChunk: func(_ context.Context, j *db.BackgroundJob, n int) error {
		log.add(j, n)
		if j.Attempt == 1 && n == 2 {
			return fmt.Errorf("injected crash after chunk %d", n)
		}
		return nil
	}})
	done := jbWaitFinished(t, alice, job.ID)
	if done.Status != "SUCCEEDED" || done.Attempt != 2 || done.Error != nil || done.ProcessedCount != 2300 {
		t.Fatalf("finished job = %+v (chunks %s)", done, log)
	}
	if r := done.bulkResult(t); r != (bkResult{MatchedCount: 2300, AffectedCount: need}) {
		t.Fatalf("result = %+v, want 2300 matched, %d affected", r, need)
	}
	if got, want := log.String(), "[a1/c1:500/2300 a1/c2:1000/2300 a2/c1:1500/2300 a2/c2:2000/2300 a2/c3:2300/2300]"; got != want {
		t.Fatalf("chunks %s, want %s (the retry resumes at the third chunk)", got, want)
	}
	if n := bkCount(t, env, `status = 'DONE' AND version = 2`); n != need {
		t.Errorf("%d tasks changed once, want %d", n, need)
	}
	if n := bkCount(t, env, `version > 2 OR (version = 2) <> (title IN (SELECT 'task ' || g FROM generate_series(1, 2300) g WHERE g % 3 <> 2))`); n != 0 {
		t.Errorf("%d tasks changed twice, or changed when already DONE / unchanged when not", n)
	}
	var attempt, errs int
	if err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT attempt, cardinality(errors) FROM river_job WHERE kind = $1`, userjobs.KindBulkUpdate).Scan(&attempt, &errs); err != nil {
		t.Fatal(err)
	}
	if attempt != 2 || errs != 1 {
		t.Errorf("queue entry: attempt %d with %d errors, want 2 and 1", attempt, errs)
	}
}

func TestBulkDeleteTasksDeletesExactlyTheMatchingTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil) // workers in-process, as `taskgraph serve` runs them
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	bkSeed(t, env, alice.ID, 1300)
	bkSeed(t, env, bob.ID, 100)
	scope := `owner_id = $1 AND status = 'TODO' AND 'home' = ANY(tags)`
	matched := bkCount(t, env, scope, alice.ID)
	var doomed uuid.UUID
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT id FROM tasks WHERE `+scope+` LIMIT 1`, alice.ID).Scan(&doomed); err != nil {
		t.Fatal(err)
	}
	counts := func() int {
		var out struct {
			Me struct{ TaskCounts struct{ Total int } }
		}
		alice.Do(t, `{ me { taskCounts { total } } }`, nil).Decode(t, &out)
		return out.Me.TaskCounts.Total
	}
	// Read (and cache) the task and the counts first.
	if _, code := bkGetTask(t, alice, doomed); code != "" || counts() != 1300 {
		t.Fatalf("before: task %s, counts %d", code, counts())
	}

	job := bkRequest(t, alice, bkDelete, map[string]any{"filter": map[string]any{"status": []string{"TODO"}, "tag": "home"}})
	done := jbWaitFinished(t, alice, job.ID)
	if done.Kind != "BULK_DELETE_TASKS" || done.Status != "SUCCEEDED" || done.ProcessedCount != matched || done.TotalCount == nil || *done.TotalCount != matched {
		t.Fatalf("finished job = %+v", done)
	}
	if r := done.bulkResult(t); r != (bkResult{MatchedCount: matched, AffectedCount: matched}) {
		t.Fatalf("result = %+v, want %d matched and deleted", r, matched)
	}
	if n := bkCount(t, env, scope, alice.ID); n != 0 {
		t.Errorf("%d matching tasks left", n)
	}
	if n := bkCount(t, env, `owner_id = $1`, alice.ID); n != 1300-matched {
		t.Errorf("Alice has %d tasks, want %d", n, 1300-matched)
	}
	if n := bkCount(t, env, `owner_id = $1`, bob.ID); n != 100 {
		t.Errorf("Bob has %d tasks, want 100", n)
	}
	if _, code := bkGetTask(t, alice, doomed); code != "NOT_FOUND" {
		t.Errorf("deleted task reads as %q, want NOT_FOUND (cache dropped)", code)
	}
	if c := counts(); c != 1300-matched {
		t.Errorf("taskCounts.total = %d, want %d (cache dropped)", c, 1300-matched)
	}
}

func TestBulkOperationsRefuseBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice := env.Register(t, "Alice")
	bkSeed(t, env, alice.ID, 10)
	ghost := globalid.Encode(globalid.KindUser, uuid.New())
	aTask := globalid.Encode(globalid.KindTask, uuid.New())
	cases := []struct {
		name, query string
		filter      map[string]any
		patch       map[string]any
		code, field string
	}{
		{"empty patch", bkUpdate, map[string]any{}, map[string]any{}, "BAD_USER_INPUT", "patch"},
		{"empty tag lists", bkUpdate, map[string]any{}, map[string]any{"addTags": []string{}, "removeTags": []string{}}, "BAD_USER_INPUT", "patch"},
		{"assignedToMe", bkUpdate, map[string]any{"assignedToMe": true}, map[string]any{"status": "DONE"}, "BAD_USER_INPUT", "filter.assignedToMe"},
		{"bad tag", bkUpdate, map[string]any{}, map[string]any{"addTags": []string{"ok", "not ok!"}}, "BAD_USER_INPUT", "patch.addTags[1]"},
		{"bad removed tag", bkUpdate, map[string]any{}, map[string]any{"removeTags": []string{""}}, "BAD_USER_INPUT", "patch.removeTags[0]"},
		{"a tag added and removed", bkUpdate, map[string]any{}, map[string]any{"addTags": []string{"x", "y"}, "removeTags": []string{"Y"}}, "BAD_USER_INPUT", "patch.removeTags"},
		{"due date out of range", bkUpdate, map[string]any{}, map[string]any{"dueAt": "1999-12-31T00:00:00Z"}, "BAD_USER_INPUT", "patch.dueAt"},
		{"bad filter", bkUpdate, map[string]any{"tag": "no good"}, map[string]any{"status": "DONE"}, "BAD_USER_INPUT", "filter.tag"},
		{"unknown assignee", bkUpdate, map[string]any{}, map[string]any{"assigneeId": ghost}, "NOT_FOUND", "patch.assigneeId"},
		{"malformed assignee", bkUpdate, map[string]any{}, map[string]any{"assigneeId": "not-an-id"}, "BAD_USER_INPUT", "patch.assigneeId"},
		// As in updateTask: another kind of id names no user.
		{"assignee is a task's id", bkUpdate, map[string]any{}, map[string]any{"assigneeId": aTask}, "NOT_FOUND", "patch.assigneeId"},
		{"delete with assignedToMe", bkDelete, map[string]any{"assignedToMe": true}, nil, "BAD_USER_INPUT", "filter.assignedToMe"},
		{"delete with a bad filter", bkDelete, map[string]any{"search": ""}, nil, "BAD_USER_INPUT", "filter.search"},
	}
	for _, tc := range cases {
		vars := map[string]any{"filter": tc.filter}
		if tc.patch != nil {
			vars["patch"] = tc.patch
		}
		res := alice.Do(t, tc.query, vars)
		if len(res.Errors) != 1 || res.Errors[0].Code() != tc.code || res.Errors[0].Field() != tc.field {
			t.Errorf("%s: errors %+v, want one %s on %s", tc.name, res.Errors, tc.code, tc.field)
		}
	}
	var jobRows, queued int
	if err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM river_job WHERE kind LIKE 'bulk\_%')`).Scan(&jobRows, &queued); err != nil {
		t.Fatal(err)
	}
	if jobRows != 0 || queued != 0 || bkCount(t, env, `version > 1`) != 0 || bkCount(t, env, `true`) != 10 {
		t.Fatalf("refused requests left %d job rows, %d queue entries, or changed tasks", jobRows, queued)
	}
}

// cancelJob while a bulk update runs: the chunk in progress rolls back, the job stops at the chunk
// boundary, and the tasks after it are untouched.
func TestCancelBulkUpdateStopsAtAChunkBoundary(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice := env.Register(t, "Alice")
	bkSeed(t, env, alice.ID, 1700)
	job := bkRequest(t, alice, bkUpdate, map[string]any{"filter": map[string]any{}, "patch": map[string]any{"addTags": []string{"bulk"}}})

	reached, release := make(chan struct{}), make(chan struct{})
	var chunks atomic.Int32
	jbStartWorkers(t, env, jobs.Options{AfterChunk: func(ctx context.Context, _ *db.BackgroundJob, n int) error {
		chunks.Store(int32(n))
		if n == 1 {
			close(reached)
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
		}
		return nil
	}})
	select {
	case <-reached:
	case <-time.After(20 * time.Second):
		t.Fatal("the first chunk never committed")
	}
	var out struct{ CancelJob jbJob }
	alice.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { `+jbJobFields+` } }`, map[string]any{"id": job.ID}).Decode(t, &out)
	if c := out.CancelJob; c.Status != "CANCELLED" || c.ProcessedCount != 500 || c.TotalCount == nil || *c.TotalCount != 1700 {
		t.Fatalf("cancelled job = %+v", c)
	}
	close(release)
	testenv.WaitForState(t, 20*time.Second, "the bulk job's worker to stop", func() (bool, string) {
		var state string
		if err := env.DB.Pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE kind = $1`, userjobs.KindBulkUpdate).Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state == "completed", state
	})
	j, _ := jbNode(t, alice, job.ID)
	if j.Status != "CANCELLED" || j.ProcessedCount != 500 || j.Result != nil && string(j.Result) != "null" || chunks.Load() != 1 {
		t.Fatalf("job after its worker stopped = %+v (%d chunks committed)", j, chunks.Load())
	}
	// Exactly the first 500 tasks in creation order changed; the chunk being worked on when the job
	// was cancelled rolled back.
	if n := bkCount(t, env, `'bulk' = ANY(tags) AND version = 2`); n != 500 {
		t.Fatalf("%d tasks changed, want the first chunk's 500", n)
	}
	if n := bkCount(t, env, `version = 1 AND created_at < (SELECT max(created_at) FROM tasks WHERE version = 2)`); n != 0 {
		t.Fatalf("%d unchanged tasks among the first chunk", n)
	}
}

// Assigning tasks in bulk notifies the new assignee once per task newly assigned to them; tasks
// already theirs, and assignments to the owner themself, notify nobody.
func TestBulkAssignmentNotifiesOncePerTask(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	alice, bob, carol := env.Register(t, "Alice"), env.Register(t, "Bob"), env.Register(t, "Carol")
	bkSeed(t, env, alice.ID, 700)
	env.Exec(t, `UPDATE tasks SET assignee_id = CASE WHEN random() < 0.5 THEN $1::uuid ELSE $2::uuid END
		WHERE owner_id = $3 AND (substring(title FROM 6)::int) % 5 = 0`, bob.ID, carol.ID, alice.ID)
	fresh := bkCount(t, env, `owner_id = $1 AND assignee_id IS DISTINCT FROM $2`, alice.ID, bob.ID)

	assign := func(to string) bkResult {
		job := bkRequest(t, alice, bkUpdate, map[string]any{"filter": map[string]any{}, "patch": map[string]any{"assigneeId": to}})
		done := jbWaitFinished(t, alice, job.ID)
		if done.Status != "SUCCEEDED" {
			t.Fatalf("job = %+v", done)
		}
		ntWaitJobsDone(t, env)
		return done.bulkResult(t)
	}
	assigned := func() (total, distinct int) {
		if err := env.DB.Pool.QueryRow(context.Background(), `
			SELECT count(*), count(DISTINCT task_id) FROM notifications WHERE user_id = $1 AND kind = 'TASK_ASSIGNED'`, bob.ID).
			Scan(&total, &distinct); err != nil {
			t.Fatal(err)
		}
		return total, distinct
	}
	if r := assign(bob.GlobalID); r != (bkResult{MatchedCount: 700, AffectedCount: fresh}) {
		t.Fatalf("assign to Bob: %+v, want 700 matched, %d affected", r, fresh)
	}
	if total, distinct := assigned(); total != fresh || distinct != fresh {
		t.Fatalf("Bob has %d TASK_ASSIGNED notifications for %d tasks, want one for each of %d", total, distinct, fresh)
	}
	var other int
	if err := env.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications WHERE user_id <> $1`, bob.ID).Scan(&other); err != nil || other != 0 {
		t.Fatalf("%d notifications for others (%v), want none", other, err)
	}
	var list struct{ Tasks struct{ TotalCount int } }
	bob.Do(t, `{ tasks(filter: {assignedToMe: true}) { totalCount } }`, nil).Decode(t, &list)
	if list.Tasks.TotalCount != 700 {
		t.Fatalf("Bob is assigned %d tasks, want 700", list.Tasks.TotalCount)
	}

	// The same again changes nothing and notifies nobody; assigning to herself notifies nobody either.
	if r := assign(bob.GlobalID); r.AffectedCount != 0 {
		t.Fatalf("assigning again affected %d tasks", r.AffectedCount)
	}
	if r := assign(alice.GlobalID); r.AffectedCount != 700 {
		t.Fatalf("assigning to Alice affected %d tasks, want 700", r.AffectedCount)
	}
	if total, _ := assigned(); total != fresh || env.CountRows(t, "notifications") != fresh {
		t.Fatalf("notifications after repeats: Bob %d, all %d; want %d", total, env.CountRows(t, "notifications"), fresh)
	}
	if n := bkCount(t, env, `version > 3`); n != 0 {
		t.Fatalf("%d tasks changed more than twice", n)
	}
}

// Bulk operations count towards JOB_MAX_ACTIVE like every job.
func TestBulkJobsCountTowardsTheActiveLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works bulk jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice := env.Register(t, "Alice")
	bkSeed(t, env, alice.ID, 10)
	update := map[string]any{"filter": map[string]any{}, "patch": map[string]any{"status": "DONE"}}
	var ids []string
	for _, req := range []struct {
		query string
		vars  map[string]any
	}{{bkUpdate, update}, {bkDelete, map[string]any{"filter": map[string]any{}}}, {bkUpdate, update}} {
		ids = append(ids, bkRequest(t, alice, req.query, req.vars).ID)
	}
	for _, req := range []struct {
		query string
		vars  map[string]any
	}{{bkUpdate, update}, {bkDelete, map[string]any{"filter": map[string]any{}}}} {
		res := alice.Do(t, req.query, req.vars)
		if codes := res.Codes(); !slices.Equal(codes, []string{"RATE_LIMITED"}) {
			t.Fatalf("a fourth active job: %v, want RATE_LIMITED", codes)
		}
	}
	var jobRows, queued int
	if err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM river_job WHERE kind LIKE 'bulk\_%')`).Scan(&jobRows, &queued); err != nil {
		t.Fatal(err)
	}
	if jobRows != 3 || queued != 3 {
		t.Fatalf("%d job rows, %d queue entries; want 3, 3", jobRows, queued)
	}
	// Cancelling one frees a slot.
	alice.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { id } }`, map[string]any{"id": ids[0]}).Decode(t, &struct{}{})
	bkRequest(t, alice, bkUpdate, update)
}
