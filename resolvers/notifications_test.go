package resolvers_test

// Notifications and the job queue behind them, through the real HTTP handler with River working
// jobs in-process (as `taskgraph serve` does): who is notified of what, exactly once; reading,
// paging and marking them read; and that jobs are enqueued in the transaction of the write that
// causes them (a failed write leaves none, a committed one always has its job).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const (
	ntFields = `id kind message createdAt readAt task { id title }`
	ntQuery  = `query($first: Int, $after: String, $last: Int, $before: String, $unreadOnly: Boolean) {
  me { id unreadNotificationCount }
  notifications(first: $first, after: $after, last: $last, before: $before, unreadOnly: $unreadOnly) {
    totalCount
    edges { cursor node { ` + ntFields + ` } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`
	ntMarkRead = `mutation($input: MarkNotificationsReadInput!) { markNotificationsRead(input: $input) { markedCount unreadCount } }`
)

type ntNotification struct {
	ID, Kind, Message, CreatedAt string
	ReadAt                       *string
	Task                         *struct{ ID, Title string }
}

type ntPage struct {
	Me struct {
		ID                      string
		UnreadNotificationCount int
	}
	Notifications struct {
		TotalCount int
		Edges      []struct {
			Cursor string
			Node   ntNotification
		}
		PageInfo struct {
			HasNextPage, HasPreviousPage bool
			StartCursor, EndCursor       *string
		}
	}
}

func (p ntPage) nodes() []ntNotification {
	out := make([]ntNotification, len(p.Notifications.Edges))
	for i, e := range p.Notifications.Edges {
		out[i] = e.Node
	}
	return out
}

func ntList(t *testing.T, u *testsupport.User, vars map[string]any) ntPage {
	t.Helper()
	var p ntPage
	u.Do(t, ntQuery, vars).Decode(t, &p)
	return p
}

// ntAll returns all of u's notifications (newest first) after every notification job has finished.
func ntAll(t *testing.T, env *testsupport.Env, u *testsupport.User) []ntNotification {
	t.Helper()
	ntWaitJobsDone(t, env)
	p := ntList(t, u, map[string]any{"first": 100})
	if p.Notifications.TotalCount != len(p.Notifications.Edges) {
		t.Fatalf("totalCount %d, %d edges", p.Notifications.TotalCount, len(p.Notifications.Edges))
	}
	return p.nodes()
}

func ntOfKind(ns []ntNotification, kind string) []ntNotification {
	var out []ntNotification
	for _, n := range ns {
		if n.Kind == kind {
			out = append(out, n)
		}
	}
	return out
}

// ntJobCount counts the notification jobs (notify_*) in river_job, whatever their state.
func ntJobCount(t *testing.T, env *testsupport.Env) int {
	t.Helper()
	var n int
	if err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE kind LIKE 'notify\_%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// ntWaitJobsDone waits until every notification job has completed (the polling deadline is the
// test's bound on how long a notification may take).
func ntWaitJobsDone(t *testing.T, env *testsupport.Env) {
	t.Helper()
	testenv.WaitForState(t, 20*time.Second, "every notification job to complete", func() (bool, string) {
		rows, err := env.DB.Pool.Query(context.Background(),
			`SELECT kind || ':' || state FROM river_job WHERE kind LIKE 'notify\_%' AND state <> 'completed'`)
		if err != nil {
			t.Fatal(err)
		}
		pending, err := collectStrings(rows)
		if err != nil {
			t.Fatal(err)
		}
		return len(pending) == 0, fmt.Sprint(pending)
	})
}

func collectStrings(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close()
}) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func ntMark(t *testing.T, u *testsupport.User, input map[string]any) (marked, unread int) {
	t.Helper()
	var data struct {
		MarkNotificationsRead struct{ MarkedCount, UnreadCount int }
	}
	u.Do(t, ntMarkRead, map[string]any{"input": input}).Decode(t, &data)
	return data.MarkNotificationsRead.MarkedCount, data.MarkNotificationsRead.UnreadCount
}

func TestAssigningATaskNotifiesTheAssigneeOnce(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "true"})
	a, b, c := env.Register(t, "Alice"), env.Register(t, "Bob"), env.Register(t, "Carol")

	task := asCreateTask(t, a, map[string]any{"title": "Write the report", "assigneeId": b.GlobalID})
	got := ntAll(t, env, b)
	if len(got) != 1 {
		t.Fatalf("B has %d notifications, want exactly 1: %+v", len(got), got)
	}
	n := got[0]
	if n.Kind != "TASK_ASSIGNED" || n.Message != "Alice assigned you “Write the report”" || n.ReadAt != nil ||
		n.Task == nil || n.Task.ID != task.ID {
		t.Fatalf("B's notification = %+v, want an unread TASK_ASSIGNED about %s", n, task.ID)
	}
	if kind, _, err := globalid.Decode("id", n.ID); err != nil || kind != globalid.KindNotification {
		t.Fatalf("notification id %q: kind %q, %v", n.ID, kind, err)
	}
	if p := ntList(t, b, nil); p.Me.UnreadNotificationCount != 1 || p.Notifications.TotalCount != 1 {
		t.Fatalf("B: unread %d, total %d; want 1, 1", p.Me.UnreadNotificationCount, p.Notifications.TotalCount)
	}
	for _, u := range []*testsupport.User{a, c} {
		if ns := ntAll(t, env, u); len(ns) != 0 {
			t.Fatalf("a user not assigned anything has notifications: %+v", ns)
		}
	}

	// No notification for: assigning to yourself, an edit that leaves the assignee alone, assigning
	// the same assignee again.
	jobsBefore := ntJobCount(t, env)
	asCreateTask(t, a, map[string]any{"title": "mine", "assigneeId": a.GlobalID})
	asUpdateTask(t, a, task.ID, map[string]any{"title": "Write the annual report"})
	asUpdateTask(t, a, task.ID, map[string]any{"assigneeId": b.GlobalID})
	if n := ntJobCount(t, env); n != jobsBefore {
		t.Fatalf("notification jobs %d -> %d after writes that notify nobody", jobsBefore, n)
	}

	// Reassigning notifies the new assignee.
	asUpdateTask(t, a, task.ID, map[string]any{"assigneeId": c.GlobalID})
	cs := ntAll(t, env, c)
	if len(cs) != 1 || cs[0].Kind != "TASK_ASSIGNED" || cs[0].Message != "Alice assigned you “Write the annual report”" {
		t.Fatalf("C's notifications = %+v, want one TASK_ASSIGNED", cs)
	}
	// B's notification stays, but its task is no longer B's to see.
	if bs := ntAll(t, env, b); len(bs) != 1 || bs[0].Task != nil {
		t.Fatalf("B's notifications after reassignment = %+v, want the one, with task null", bs)
	}

	// node(id) answers a notification to its user only; anyone else gets the missing-object answer.
	nodeQ := `query($id: ID!) { node(id: $id) { id ... on Notification { kind message } } }`
	var nodeData struct{ Node struct{ ID, Kind string } }
	b.Do(t, nodeQ, map[string]any{"id": n.ID}).Decode(t, &nodeData)
	if nodeData.Node.ID != n.ID || nodeData.Node.Kind != "TASK_ASSIGNED" {
		t.Fatalf("node(B's notification) as B = %+v", nodeData.Node)
	}
	missing := globalid.Encode(globalid.KindNotification, uuid.New())
	azSameError(t, c.Do(t, nodeQ, map[string]any{"id": n.ID}), c.Do(t, nodeQ, map[string]any{"id": missing}))

	// The unread count is the user's own business.
	res := b.Do(t, `query($id: ID!) { task(id: $id) { owner { unreadNotificationCount } } }`, map[string]any{"id": asCreateTask(t, a, map[string]any{"title": "x", "assigneeId": b.GlobalID}).ID})
	if e := auOneError(t, res, "FORBIDDEN"); fmt.Sprint(e.Path) != "[task owner unreadNotificationCount]" {
		t.Errorf("FORBIDDEN at %v", e.Path)
	}
	ntWaitJobsDone(t, env)

	// markNotificationsRead: foreign, missing and non-notification ids are ignored like each other.
	bs := ntAll(t, env, b)
	if len(bs) != 2 {
		t.Fatalf("B has %d notifications, want 2", len(bs))
	}
	marked, unread := ntMark(t, b, map[string]any{"ids": []string{cs[0].ID, missing, task.ID, bs[1].ID}})
	if marked != 1 || unread != 1 {
		t.Fatalf("mark one of B's (plus foreign ids): marked %d, unread %d; want 1, 1", marked, unread)
	}
	if p := ntList(t, c, nil); p.Me.UnreadNotificationCount != 1 || p.nodes()[0].ReadAt != nil {
		t.Fatalf("C's notification was touched by B's markNotificationsRead: %+v", p)
	}
	if marked, unread = ntMark(t, b, map[string]any{"ids": []string{bs[1].ID}}); marked != 0 || unread != 1 {
		t.Fatalf("marking a read one again: marked %d, unread %d; want 0, 1", marked, unread)
	}
	unreadOnly := ntList(t, b, map[string]any{"unreadOnly": true})
	if ids := unreadOnly.nodes(); len(ids) != 1 || ids[0].ID != bs[0].ID || unreadOnly.Notifications.TotalCount != 1 {
		t.Fatalf("unreadOnly = %+v, want only %s", ids, bs[0].ID)
	}
	if all := ntList(t, b, nil).nodes(); all[1].ReadAt == nil || all[0].ReadAt != nil {
		t.Fatalf("readAt after marking = %+v", all)
	}
	if marked, unread = ntMark(t, b, map[string]any{"all": true}); marked != 1 || unread != 0 {
		t.Fatalf("mark all: marked %d, unread %d; want 1, 0", marked, unread)
	}
	if p := ntList(t, c, nil); p.Me.UnreadNotificationCount != 1 {
		t.Fatalf("B's markNotificationsRead(all) touched C's: unread %d", p.Me.UnreadNotificationCount)
	}
	auOneError(t, b.Do(t, ntMarkRead, map[string]any{"input": map[string]any{}}), "BAD_USER_INPUT")
	auOneError(t, b.Do(t, ntMarkRead, map[string]any{"input": map[string]any{"ids": []string{"not-an-id"}}}), "BAD_USER_INPUT")
	auOneError(t, env.Anonymous().Do(t, ntMarkRead, map[string]any{"input": map[string]any{"all": true}}), "UNAUTHENTICATED")

	// A deleted task leaves its notifications, with task null.
	a.Do(t, asDelete, map[string]any{"id": task.ID}).Decode(t, &struct{}{})
	if cs := ntAll(t, env, c); len(cs) != 1 || cs[0].Task != nil || cs[0].Message == "" {
		t.Fatalf("after the task was deleted: %+v, want the notification with task null", cs)
	}
}

func TestStatusChangeByTheAssigneeNotifiesTheOwner(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "true"})
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	task := asCreateTask(t, a, map[string]any{"title": "Fix the build", "assigneeId": b.GlobalID})

	asUpdateTask(t, b, task.ID, map[string]any{"status": "IN_PROGRESS"})
	as := ntAll(t, env, a)
	if len(as) != 1 || as[0].Kind != "TASK_STATUS_CHANGED" || as[0].Message != "Bob moved “Fix the build” to IN_PROGRESS" ||
		as[0].Task == nil || as[0].Task.ID != task.ID {
		t.Fatalf("A's notifications = %+v, want one TASK_STATUS_CHANGED", as)
	}

	// The owner changing the status, and the assignee "changing" it to what it is, notify nobody: no
	// job is even enqueued.
	before := ntJobCount(t, env)
	asUpdateTask(t, a, task.ID, map[string]any{"status": "DONE"})
	asUpdateTask(t, b, task.ID, map[string]any{"status": "DONE"})
	if n := ntJobCount(t, env); n != before {
		t.Fatalf("notification jobs %d -> %d after status writes that notify nobody", before, n)
	}
	if as := ntAll(t, env, a); len(as) != 1 {
		t.Fatalf("A has %d notifications, want still 1: %+v", len(as), as)
	}
	if bs := ntAll(t, env, b); len(ntOfKind(bs, "TASK_STATUS_CHANGED")) != 0 {
		t.Fatalf("B was told about status changes: %+v", bs)
	}

	// Each real change by the assignee is its own notification.
	asUpdateTask(t, b, task.ID, map[string]any{"status": "TODO"})
	if as := ntAll(t, env, a); len(as) != 2 || as[0].Message != "Bob moved “Fix the build” to TODO" {
		t.Fatalf("A's notifications = %+v, want the newest first: moved to TODO", as)
	}
}

// ntJobRow is a notification job as River stored it.
type ntJobRow struct {
	Kind, State string
	Args        map[string]any
	SameTx      bool // inserted by the transaction that wrote the task's current row version
}

func ntJobs(t *testing.T, env *testsupport.Env) []ntJobRow {
	t.Helper()
	rows, err := env.DB.Pool.Query(context.Background(), `
		SELECT j.kind, j.state::text, j.args, j.xmin::text = t.xmin::text
		FROM river_job j JOIN tasks t ON t.id = (j.args->>'task_id')::uuid
		WHERE j.kind LIKE 'notify\_%' ORDER BY j.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []ntJobRow
	for rows.Next() {
		var r ntJobRow
		var raw []byte
		if err := rows.Scan(&r.Kind, &r.State, &raw, &r.SameTx); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &r.Args); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// With no workers running (JOBS_IN_PROCESS=false, as on API instances next to `taskgraph worker`),
// the job rows show exactly what each mutation enqueued, and in which transaction.
func TestNotificationJobsCommitOrVanishWithTheWrite(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	a, b, c := env.Register(t, "Alice"), env.Register(t, "Bob"), env.Register(t, "Carol")

	task := asCreateTask(t, a, map[string]any{"title": "Plan the trip", "assigneeId": b.GlobalID})
	taskID := asTaskID(t, task.ID)
	js := ntJobs(t, env)
	if len(js) != 1 || js[0].Kind != notifications.KindNotifyAssigned || js[0].State != "available" || !js[0].SameTx ||
		js[0].Args["task_id"] != taskID.String() || js[0].Args["assignee_id"] != b.ID.String() || js[0].Args["version"] != float64(1) {
		t.Fatalf("after createTask: jobs %+v, want one available notify_assigned inserted with the task", js)
	}

	// Failed writes enqueue nothing and change nothing.
	row := asSnapshot(t, env, taskID)
	failures := []struct {
		name string
		u    *testsupport.User
		q    string
		vars map[string]any
		code string
	}{
		{"stale expectedVersion", a, asUpdate, map[string]any{"id": task.ID, "input": map[string]any{"assigneeId": c.GlobalID, "expectedVersion": 7}}, "CONFLICT"},
		{"assignee changing more than the status", b, asUpdate, map[string]any{"id": task.ID, "input": map[string]any{"status": "DONE", "title": "mine now"}}, "FORBIDDEN"},
		{"stranger changing the status", c, asUpdate, map[string]any{"id": task.ID, "input": map[string]any{"status": "DONE"}}, "NOT_FOUND"},
		{"create with an unknown assignee", a, asCreate, map[string]any{"input": map[string]any{"title": "t", "assigneeId": globalid.Encode(globalid.KindUser, uuid.New())}}, "NOT_FOUND"},
	}
	tasksBefore := env.CountRows(t, "tasks")
	for _, f := range failures {
		auOneError(t, f.u.Do(t, f.q, f.vars), f.code)
		if n := ntJobCount(t, env); n != 1 {
			t.Fatalf("%s (%s): %d notification jobs, want still 1", f.name, f.code, n)
		}
	}
	if got := asSnapshot(t, env, taskID); !reflect.DeepEqual(got, row) || env.CountRows(t, "tasks") != tasksBefore {
		t.Fatalf("a failed write changed the task: %+v -> %+v", row, got)
	}

	// A successful status change by the assignee: exactly one more job, from the same transaction.
	asUpdateTask(t, b, task.ID, map[string]any{"status": "IN_PROGRESS", "expectedVersion": 1})
	js = ntJobs(t, env)
	if len(js) != 2 || js[1].Kind != notifications.KindNotifyStatusChanged || !js[1].SameTx || js[1].State != "available" ||
		js[1].Args["owner_id"] != a.ID.String() || js[1].Args["actor_id"] != b.ID.String() ||
		js[1].Args["status"] != "IN_PROGRESS" || js[1].Args["version"] != float64(2) {
		t.Fatalf("after the assignee's status change: jobs %+v", js)
	}
	if n := env.CountRows(t, "notifications"); n != 0 {
		t.Fatalf("%d notifications written with no worker running", n)
	}
}

// A worker that fails after writing (a lost acknowledgement, a crash before completing) is retried
// by River with backoff; the retry finds the notification already there and writes nothing.
func TestRetriedNotificationJobWritesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: retries notification jobs in workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "false"})
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")

	var (
		mu       sync.Mutex
		attempts = map[string][]int{}
	)
	opts := jobs.FromConfig(env.Config, true)
	opts.AfterWrite = func(_ context.Context, job *rivertype.JobRow) error {
		if !strings.HasPrefix(job.Kind, "notify_") {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		attempts[job.Kind] = append(attempts[job.Kind], job.Attempt)
		if job.Attempt == 1 {
			return errors.New("injected failure after the write")
		}
		return nil
	}
	q, err := jobs.New(env.DB.Pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	task := asCreateTask(t, a, map[string]any{"title": "Retry me", "assigneeId": b.GlobalID})
	asUpdateTask(t, b, task.ID, map[string]any{"status": "DONE"})
	ntWaitJobsDone(t, env)

	for _, r := range ntJobs(t, env) {
		if r.State != "completed" {
			t.Errorf("job %s is %s", r.Kind, r.State)
		}
	}
	var errs, maxAttempt int
	if err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT coalesce(sum(cardinality(errors)), 0), max(attempt) FROM river_job WHERE kind LIKE 'notify\_%'`).Scan(&errs, &maxAttempt); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := fmt.Sprint(attempts)
	mu.Unlock()
	if errs != 2 || maxAttempt != 2 || got != "map[notify_assigned:[1 2] notify_status_changed:[1 2]]" {
		t.Fatalf("attempts %s, %d recorded errors, max attempt %d; want each job failed once and succeeded on attempt 2", got, errs, maxAttempt)
	}
	if bs := ntAll(t, env, b); len(bs) != 1 || bs[0].Kind != "TASK_ASSIGNED" {
		t.Fatalf("B's notifications = %+v, want exactly one TASK_ASSIGNED", bs)
	}
	if as := ntAll(t, env, a); len(as) != 1 || as[0].Kind != "TASK_STATUS_CHANGED" {
		t.Fatalf("A's notifications = %+v, want exactly one TASK_STATUS_CHANGED", as)
	}
}

// The periodic due-reminder job (every second here) reminds the owner and the assignee of each open
// task due within the window once per due date, however often it runs.
func TestDueRemindersOncePerTaskAndDueDate(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works reminder sweeps in background workers")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"DUE_SOON_WINDOW": "1h", "DUE_REMINDER_INTERVAL": "1s"})
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	at := func(d time.Duration) string {
		return time.Now().Add(d).UTC().Truncate(time.Second).Format(time.RFC3339)
	}

	soonDue := at(30 * time.Minute)
	soon := asCreateTask(t, a, map[string]any{"title": "soon", "dueAt": soonDue, "assigneeId": b.GlobalID})
	alone := asCreateTask(t, a, map[string]any{"title": "alone", "dueAt": at(50 * time.Minute)})
	asCreateTask(t, a, map[string]any{"title": "later", "dueAt": at(2 * time.Hour)})
	asCreateTask(t, a, map[string]any{"title": "done", "dueAt": at(10 * time.Minute), "status": "DONE"})
	asCreateTask(t, a, map[string]any{"title": "overdue", "dueAt": at(-time.Hour)})
	asCreateTask(t, a, map[string]any{"title": "undated"})

	reminders := func(u *testsupport.User) []string {
		p := ntList(t, u, map[string]any{"first": 100})
		var out []string
		for _, n := range ntOfKind(p.nodes(), "TASK_DUE_SOON") {
			if n.Task == nil {
				t.Fatalf("reminder without its task: %+v", n)
			}
			out = append(out, n.Task.Title+" "+n.Message)
		}
		slices.Sort(out)
		return out
	}
	completedSweeps := func() int {
		var n int
		if err := env.DB.Pool.QueryRow(context.Background(),
			`SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'completed'`, jobs.KindDueReminders).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// waitSweeps waits until the periodic job has run to completion n more times.
	waitSweeps := func(n int) {
		t.Helper()
		start := completedSweeps()
		testenv.WaitForState(t, 20*time.Second, fmt.Sprintf("%d more due-reminder sweeps", n), func() (bool, string) {
			got := completedSweeps()
			return got >= start+n, fmt.Sprint(got - start)
		})
	}

	waitSweeps(3)
	wantA := []string{
		"alone “alone” is due " + asRFC3339(t, alone.DueAt),
		"soon “soon” is due " + asRFC3339(t, soon.DueAt),
	}
	wantB := []string{"soon “soon” is due " + soonDue}
	if got := reminders(a); !slices.Equal(got, wantA) {
		t.Fatalf("A's reminders = %q, want %q", got, wantA)
	}
	if got := reminders(b); !slices.Equal(got, wantB) {
		t.Fatalf("B's reminders = %q, want %q", got, wantB)
	}

	// A new due date is a new reminder; going back to a date already reminded of is not.
	newDue := at(40 * time.Minute)
	asUpdateTask(t, a, soon.ID, map[string]any{"dueAt": newDue})
	waitSweeps(2)
	asUpdateTask(t, a, soon.ID, map[string]any{"dueAt": soonDue})
	waitSweeps(2)
	wantA = append(wantA, "soon “soon” is due "+newDue)
	wantB = append(wantB, "soon “soon” is due "+newDue)
	slices.Sort(wantA)
	slices.Sort(wantB)
	if got := reminders(a); !slices.Equal(got, wantA) {
		t.Fatalf("A's reminders after moving the due date = %q, want %q", got, wantA)
	}
	if got := reminders(b); !slices.Equal(got, wantB) {
		t.Fatalf("B's reminders after moving the due date = %q, want %q", got, wantB)
	}
}

func asRFC3339(t *testing.T, s *string) string {
	t.Helper()
	if s == nil {
		t.Fatal("no dueAt")
	}
	d, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		t.Fatal(err)
	}
	return d.UTC().Format(time.RFC3339)
}

func TestNotificationsPageNewestFirst(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"JOBS_IN_PROCESS": "true"})
	a, b := env.Register(t, "Alice"), env.Register(t, "Bob")
	for i := range 5 {
		asCreateTask(t, a, map[string]any{"title": fmt.Sprintf("task %d", i), "assigneeId": b.GlobalID})
		ntWaitJobsDone(t, env) // one at a time, so creation order is notification order
	}
	all := ntAll(t, env, b)
	var titles []string
	for _, n := range all {
		titles = append(titles, n.Task.Title)
	}
	if fmt.Sprint(titles) != "[task 4 task 3 task 2 task 1 task 0]" {
		t.Fatalf("order = %v, want newest first", titles)
	}

	// Forward in pages of two, then backward from the end: the same order, no gaps.
	var fwd []string
	var after any
	for range 3 {
		p := ntList(t, b, map[string]any{"first": 2, "after": after})
		for _, n := range p.nodes() {
			fwd = append(fwd, n.ID)
		}
		if p.Notifications.TotalCount != 5 {
			t.Fatalf("totalCount %d", p.Notifications.TotalCount)
		}
		if !p.Notifications.PageInfo.HasNextPage {
			break
		}
		after = *p.Notifications.PageInfo.EndCursor
	}
	var ids []string
	for _, n := range all {
		ids = append(ids, n.ID)
	}
	if !slices.Equal(fwd, ids) {
		t.Fatalf("forward pages %v, want %v", fwd, ids)
	}
	last := ntList(t, b, map[string]any{"last": 2})
	if got := last.nodes(); len(got) != 2 || got[0].ID != ids[3] || got[1].ID != ids[4] || !last.Notifications.PageInfo.HasPreviousPage {
		t.Fatalf("last 2 = %+v", got)
	}

	// Cursors belong to their list: the unread list and another user refuse them.
	cursor := ntList(t, b, map[string]any{"first": 1}).Notifications.PageInfo.EndCursor
	auOneError(t, b.Do(t, ntQuery, map[string]any{"first": 1, "after": *cursor, "unreadOnly": true}), "BAD_USER_INPUT")
	auOneError(t, a.Do(t, ntQuery, map[string]any{"first": 1, "after": *cursor}), "BAD_USER_INPUT")
	auOneError(t, b.Do(t, ntQuery, map[string]any{"first": 101}), "BAD_USER_INPUT")
	auOneError(t, env.Anonymous().Do(t, `{ notifications { totalCount } }`, nil), "UNAUTHENTICATED")
}
