package resolvers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// jbJob is the Job fields the tests read.
type jbJob struct {
	ID             string
	Kind, Status   string
	Progress       float64
	ProcessedCount int
	TotalCount     *int
	Attempt        int
	CreatedAt      string
	StartedAt      *string
	FinishedAt     *string
	Error          *struct{ Code, Message string }
	Result         json.RawMessage
}

const jbJobFields = `id kind status progress processedCount totalCount attempt createdAt startedAt finishedAt
	error { code message }
	result {
		__typename
		... on TaskReport { generatedAt totalCount overdueCount
			byStatus { status count } byPriority { priority count } completedPerWeek { weekStart count } }
		... on BulkTasksResult { matchedCount affectedCount }
		... on TaskExport { format taskCount byteSize downloadUrl downloadUrlExpiresAt expiresAt }
	}`

// jbRequestReport asks for a report as u and returns the job the mutation answered.
func jbRequestReport(t *testing.T, u *testsupport.User) jbJob {
	t.Helper()
	var out struct{ RequestTaskReport jbJob }
	u.Do(t, `mutation { requestTaskReport { `+jbJobFields+` } }`, nil).Decode(t, &out)
	return out.RequestTaskReport
}

// jbNode reads a job through node(id) as u; ok false when the answer is an error (its code returned).
func jbNode(t *testing.T, u *testsupport.User, id string) (jbJob, string) {
	t.Helper()
	res := u.Do(t, `query($id: ID!) { node(id: $id) { ... on Job { `+jbJobFields+` } } }`, map[string]any{"id": id})
	if len(res.Errors) > 0 {
		return jbJob{}, res.Errors[0].Code()
	}
	var out struct{ Node jbJob }
	res.Decode(t, &out)
	return out.Node, ""
}

// jbWaitFinished polls the job until it is finished (or fails the test after 30 s).
func jbWaitFinished(t *testing.T, u *testsupport.User, id string) jbJob {
	t.Helper()
	var j jbJob
	testenv.WaitForState(t, 30*time.Second, "job "+id+" to finish", func() (bool, string) {
		var code string
		if j, code = jbNode(t, u, id); code != "" {
			t.Fatalf("node(%s): %s", id, code)
		}
		return j.Status == "SUCCEEDED" || j.Status == "FAILED" || j.Status == "CANCELLED", fmt.Sprintf("%+v", j)
	})
	return j
}

// jbStartWorkers works jobs on env's database from a queue of the test's own (for environments
// built with JOBS_IN_PROCESS=false, so the test decides when work starts).
func jbStartWorkers(t *testing.T, env *testsupport.Env, o jobs.Options) *jobs.Queue {
	t.Helper()
	o.Work, o.Workers, o.JobTimeout, o.RescueAfter = true, 4, time.Minute, time.Hour
	if o.Invalidator == nil {
		o.Invalidator = env.App.Events
	}
	q, err := jobs.New(env.DB.Pool, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return q
}

func TestTaskReportCountsTheOwnersTasks(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "true"})
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	ctx := context.Background()
	past, future := time.Now().Add(-48*time.Hour), time.Now().Add(48*time.Hour)
	type seed struct {
		status   db.TaskStatus
		priority db.Priority
		due      *time.Time
	}
	seeds := []seed{
		{db.StatusTodo, db.PriorityLow, &past},          // overdue
		{db.StatusTodo, db.PriorityHigh, &future},       // due later
		{db.StatusInProgress, db.PriorityUrgent, &past}, // overdue
		{db.StatusInProgress, db.PriorityMedium, nil},
		{db.StatusDone, db.PriorityMedium, &past}, // done: not overdue
		{db.StatusDone, db.PriorityHigh, nil},
		{db.StatusDone, db.PriorityHigh, nil},
	}
	var doneIDs []uuid.UUID
	for i, s := range seeds {
		task := env.CreateTask(t, alice.ID, db.NewTask{Title: fmt.Sprintf("t%d", i), Status: s.status, Priority: s.priority, DueAt: s.due})
		if s.status == db.StatusDone {
			doneIDs = append(doneIDs, task.ID)
		}
	}
	// Not Alice's own: Bob's task, and Bob's task assigned to Alice.
	env.CreateTask(t, bob.ID, db.NewTask{Title: "bob's", Status: db.StatusDone})
	env.CreateTask(t, bob.ID, db.NewTask{Title: "for alice", AssigneeID: &alice.ID, DueAt: &past})

	// Completion times: the trigger stamps them; move two into earlier weeks (one out of range).
	now := time.Now().UTC()
	thisWeek := db.WeekStart(now)
	for i, at := range []time.Time{thisWeek.AddDate(0, 0, -14).Add(time.Hour), thisWeek.AddDate(0, 0, -7*13)} {
		if _, err := env.DB.Pool.Exec(ctx, `UPDATE tasks SET completed_at = $2 WHERE id = $1`, doneIDs[i+1], at); err != nil {
			t.Fatal(err)
		}
	}

	job := jbRequestReport(t, alice)
	if job.Kind != "TASK_REPORT" || job.Result != nil && string(job.Result) != "null" {
		t.Fatalf("requested job = %+v", job)
	}
	done := jbWaitFinished(t, alice, job.ID)
	if done.Status != "SUCCEEDED" || done.Progress != 1 || done.Attempt != 1 || done.FinishedAt == nil || done.StartedAt == nil || done.Error != nil {
		t.Fatalf("finished job = %+v", done)
	}
	var rep struct {
		Typename     string `json:"__typename"`
		GeneratedAt  time.Time
		TotalCount   int
		OverdueCount int
		ByStatus     []struct {
			Status string
			Count  int
		}
		ByPriority []struct {
			Priority string
			Count    int
		}
		CompletedPerWeek []struct {
			WeekStart time.Time
			Count     int
		}
	}
	if err := json.Unmarshal(done.Result, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Typename != "TaskReport" || rep.TotalCount != 7 || rep.OverdueCount != 2 {
		t.Fatalf("report = %+v, want TaskReport of 7 tasks, 2 overdue", rep)
	}
	if got := fmt.Sprint(rep.ByStatus); got != "[{TODO 2} {IN_PROGRESS 2} {DONE 3}]" {
		t.Errorf("byStatus = %s", got)
	}
	if got := fmt.Sprint(rep.ByPriority); got != "[{LOW 1} {MEDIUM 2} {HIGH 3} {URGENT 1}]" {
		t.Errorf("byPriority = %s", got)
	}
	if len(rep.CompletedPerWeek) != 12 {
		t.Fatalf("completedPerWeek has %d weeks, want 12", len(rep.CompletedPerWeek))
	}
	for i, w := range rep.CompletedPerWeek {
		want := 0
		switch i {
		case 11:
			want = 1 // completed now
		case 9:
			want = 1 // two weeks ago
		}
		if !w.WeekStart.Equal(thisWeek.AddDate(0, 0, -7*(11-i))) || w.WeekStart.Weekday() != time.Monday || w.Count != want {
			t.Errorf("week %d = %v %d, want %v %d", i, w.WeekStart, w.Count, thisWeek.AddDate(0, 0, -7*(11-i)), want)
		}
	}
}

func TestCompletedAtFollowsTheStatus(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Dora")
	task := env.CreateTask(t, u.ID, db.NewTask{Title: "x"})
	completedAt := func() *time.Time {
		var at *time.Time
		if err := env.DB.Pool.QueryRow(context.Background(), `SELECT completed_at FROM tasks WHERE id = $1`, task.ID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	gid := globalid.Encode(globalid.KindTask, task.ID)
	set := func(fields map[string]any) {
		u.Do(t, `mutation($id: ID!, $in: UpdateTaskInput!) { updateTask(id: $id, input: $in) { task { id } } }`,
			map[string]any{"id": gid, "in": fields}).Decode(t, &struct{}{})
	}
	if completedAt() != nil {
		t.Fatal("a TODO task has a completion time")
	}
	set(map[string]any{"status": "DONE"})
	first := completedAt()
	if first == nil {
		t.Fatal("moving to DONE did not stamp completed_at")
	}
	set(map[string]any{"title": "renamed while done"})
	if at := completedAt(); at == nil || !at.Equal(*first) {
		t.Fatalf("an edit of a DONE task moved completed_at: %v -> %v", first, at)
	}
	set(map[string]any{"status": "IN_PROGRESS"})
	if completedAt() != nil {
		t.Fatal("reopening kept completed_at")
	}
}

func TestJobsAreVisibleToTheirUserOnly(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	alice, bob := env.Register(t, "Alice"), env.Register(t, "Bob")
	job := jbRequestReport(t, alice)
	if job.Status != "QUEUED" || job.Attempt != 0 || job.Progress != 0 || job.StartedAt != nil {
		t.Fatalf("new job = %+v, want QUEUED and untouched", job)
	}
	if kind, _, err := globalid.Decode("id", job.ID); err != nil || kind != globalid.KindJob {
		t.Fatalf("job id %q: %v %v", job.ID, kind, err)
	}
	if _, code := jbNode(t, bob, job.ID); code != "NOT_FOUND" {
		t.Fatalf("Bob reads Alice's job: %q, want NOT_FOUND", code)
	}
	res := bob.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { status } }`, map[string]any{"id": job.ID})
	if codes := res.Codes(); len(codes) != 1 || codes[0] != "NOT_FOUND" {
		t.Fatalf("Bob cancels Alice's job: %v", codes)
	}
	if j, _ := jbNode(t, alice, job.ID); j.Status != "QUEUED" {
		t.Fatalf("after Bob's cancel the job is %s", j.Status)
	}
	list := func(u *testsupport.User) (ids []string, total int) {
		var out struct {
			Jobs struct {
				TotalCount int
				Edges      []struct{ Node struct{ ID string } }
			}
		}
		u.Do(t, `{ jobs(first: 10) { totalCount edges { node { id } } } }`, nil).Decode(t, &out)
		for _, e := range out.Jobs.Edges {
			ids = append(ids, e.Node.ID)
		}
		return ids, out.Jobs.TotalCount
	}
	second := jbRequestReport(t, alice)
	if ids, total := list(alice); total != 2 || fmt.Sprint(ids) != fmt.Sprint([]string{second.ID, job.ID}) {
		t.Fatalf("Alice's jobs = %v (total %d), want newest first [%s %s]", ids, total, second.ID, job.ID)
	}
	if ids, total := list(bob); total != 0 || len(ids) != 0 {
		t.Fatalf("Bob's jobs = %v (total %d), want none", ids, total)
	}
}

func TestJobLimitAndCancelBeforeItRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false", "JOB_MAX_ACTIVE": "2"})
	u := env.Register(t, "Eve")
	ctx := context.Background()
	counts := func() (rows, queued int) {
		if err := env.DB.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM river_job WHERE kind = 'task_report')`).
			Scan(&rows, &queued); err != nil {
			t.Fatal(err)
		}
		return rows, queued
	}
	first, second := jbRequestReport(t, u), jbRequestReport(t, u)
	res := u.Do(t, `mutation { requestTaskReport { id } }`, nil)
	if codes := res.Codes(); len(codes) != 1 || codes[0] != "RATE_LIMITED" {
		t.Fatalf("third active job: %v, want RATE_LIMITED", codes)
	}
	if rows, queued := counts(); rows != 2 || queued != 2 {
		t.Fatalf("after a refused request: %d job rows, %d queue entries; want 2, 2", rows, queued)
	}

	var out struct{ CancelJob jbJob }
	u.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { `+jbJobFields+` } }`, map[string]any{"id": first.ID}).Decode(t, &out)
	if c := out.CancelJob; c.Status != "CANCELLED" || c.FinishedAt == nil || c.Attempt != 0 {
		t.Fatalf("cancelled job = %+v", c)
	}
	cancelledAt := *out.CancelJob.FinishedAt
	third := jbRequestReport(t, u) // a slot is free again
	// Cancelling a finished job changes nothing.
	u.Do(t, `mutation($id: ID!) { cancelJob(id: $id) { `+jbJobFields+` } }`, map[string]any{"id": first.ID}).Decode(t, &out)
	if out.CancelJob.Status != "CANCELLED" || *out.CancelJob.FinishedAt != cancelledAt {
		t.Fatalf("second cancel = %+v", out.CancelJob)
	}

	jbStartWorkers(t, env, jobs.Options{})
	for _, id := range []string{second.ID, third.ID} {
		if j := jbWaitFinished(t, u, id); j.Status != "SUCCEEDED" {
			t.Fatalf("job %s = %+v", id, j)
		}
	}
	// The cancelled job's queue entry ran too, and did nothing: never started.
	testenv.WaitForState(t, 10*time.Second, "every report queue entry to complete", func() (bool, string) {
		var pending int
		if err := env.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'task_report' AND state <> 'completed'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		return pending == 0, fmt.Sprintf("%d pending", pending)
	})
	if j, _ := jbNode(t, u, first.ID); j.Status != "CANCELLED" || j.Attempt != 0 || j.Result != nil && string(j.Result) != "null" {
		t.Fatalf("the cancelled job ran: %+v", j)
	}
}

func TestPurgeDeletesOldJobsAndExpiredFiles(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false", "JOB_MAX_ACTIVE": "4"})
	u := env.Register(t, "Finn")
	ctx := context.Background()
	old, recent, expired := jbRequestReport(t, u), jbRequestReport(t, u), jbRequestReport(t, u)
	failed := jbRequestReport(t, u)
	id := func(gid string) uuid.UUID {
		_, x, err := globalid.Decode("id", gid)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	exec := func(sql string, args ...any) {
		if _, err := env.DB.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE jobs SET status = 'SUCCEEDED', finished_at = now() - interval '8 days' WHERE id = $1`, id(old.ID))
	exec(`UPDATE jobs SET status = 'SUCCEEDED', finished_at = now() - interval '1 hour', expires_at = now() + interval '1 hour' WHERE id = $1`, id(recent.ID))
	exec(`UPDATE jobs SET status = 'SUCCEEDED', finished_at = now() - interval '2 days', expires_at = now() - interval '1 hour' WHERE id = $1`, id(expired.ID))
	exec(`UPDATE jobs SET status = 'FAILED', finished_at = now() - interval '1 hour' WHERE id = $1`, id(failed.ID))
	for _, j := range []string{old.ID, recent.ID, expired.ID, failed.ID} {
		exec(`INSERT INTO export_chunks (job_id, seq, data) VALUES ($1, 0, 'a'), ($1, 1, 'b')`, id(j))
	}
	jobsGone, files, err := env.Store.Stores().BackgroundJobs.Purge(ctx, time.Now().Add(-7*24*time.Hour))
	if err != nil || jobsGone != 1 || files != 2 {
		t.Fatalf("Purge = %d jobs, %d files, %v; want 1, 2 (the expired and the failed export's)", jobsGone, files, err)
	}
	if _, code := jbNode(t, u, old.ID); code != "NOT_FOUND" {
		t.Fatalf("the old job is still there (%q)", code)
	}
	var chunks map[string]int = map[string]int{}
	rows, err := env.DB.Pool.Query(ctx, `SELECT job_id::text, count(*) FROM export_chunks GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var j string
		var n int
		if err := rows.Scan(&j, &n); err != nil {
			t.Fatal(err)
		}
		chunks[j] = n
	}
	if len(chunks) != 1 || chunks[id(recent.ID).String()] != 2 {
		t.Fatalf("export chunks left = %v, want only the recent job's 2", chunks)
	}
}
