package jobs_test

// Email delivery of notifications through the real River workers and a real SMTP server on
// loopback (emailtest): what arrives, retries on 4xx, the end of the job on 5xx, no email job
// without SMTP_URL, and no password in any log or job error.

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/email"
	"github.com/taskgraph/taskgraph/internal/email/emailtest"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// ntfEnv is a database, a working queue on it and the stores that enqueue through it.
type ntfEnv struct {
	db    *testsupport.Database
	store *db.DB
	queue *jobs.Queue
	logs  *testsupport.LogBuffer

	mu       sync.Mutex
	notified []uuid.UUID // recipients of the notification events the database announced, in order
	markers  int         // marker events heard (see reminders_test.go)
}

// ntfStart starts a queue working jobs on a fresh database; adjust tweaks its options (SMTP, ...).
// Retries come at once and the due-reminder sweep runs at start and then only when enqueued.
func ntfStart(t *testing.T, adjust func(*jobs.Options)) *ntfEnv {
	t.Helper()
	e := &ntfEnv{db: testsupport.NewDatabase(t), logs: &testsupport.LogBuffer{}}
	o := jobs.Options{
		Work: true, Workers: 4, JobTimeout: 20 * time.Second, RescueAfter: time.Hour, StopTimeout: 5 * time.Second,
		DueSoonWindow: time.Hour, DueReminderInterval: time.Hour,
		Logger:              slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		WebhookAllowPrivate: true, SMTPFrom: "Taskgraph <noreply@taskgraph.test>",
	}
	if adjust != nil {
		adjust(&o)
	}
	q, err := jobs.New(e.db.Pool, o)
	if err != nil {
		t.Fatal(err)
	}
	e.queue = q
	e.store = db.New(e.db.Pool, nil, db.WithEnqueuer(q))
	// Record the notification events the database announces (its trigger, at every commit), as
	// live subscriptions on any instance hear them.
	bus := events.New(e.db.Pool, nil)
	busCtx, stopBus := context.WithCancel(context.Background())
	t.Cleanup(stopBus)
	go bus.Run(busCtx)
	<-bus.Ready()
	sub := bus.Subscribe(func(ev events.Event) bool { return ev.Kind == events.KindNotification }, 1024)
	go func() {
		for {
			select {
			case <-busCtx.Done():
				return
			case ev := <-sub.C:
				e.mu.Lock()
				if ev.Change == "marker" {
					e.markers++
				} else {
					e.notified = append(e.notified, ev.UserIDs...)
				}
				e.mu.Unlock()
			}
		}
	}()
	if err := q.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return e
}

func (e *ntfEnv) heardMarkers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.markers
}

func (e *ntfEnv) notifiedUsers() []uuid.UUID {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]uuid.UUID(nil), e.notified...)
}

func (e *ntfEnv) user(t *testing.T, name string) *db.User {
	t.Helper()
	u, err := e.store.Stores().Users.Create(context.Background(), db.NewUser{
		Name: name, Email: strings.ToLower(name) + "@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// assign creates owner's task assigned to assignee and enqueues its TASK_ASSIGNED job, as
// createTask does.
func (e *ntfEnv) assign(t *testing.T, owner, assignee *db.User, title string) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	task, err := e.store.Stores().Tasks.Create(ctx, owner.ID, db.NewTask{Title: title, Status: db.StatusTodo, AssigneeID: &assignee.ID})
	if err != nil {
		t.Fatal(err)
	}
	err = e.store.InTx(ctx, func(s db.Stores) error {
		return s.Jobs.Enqueue(ctx, notifications.NotifyAssignedArgs{TaskID: task.ID, AssigneeID: assignee.ID, Version: task.Version})
	})
	if err != nil {
		t.Fatal(err)
	}
	return task.ID
}

// jobStates lists the jobs of kind as "state/attempt", oldest first.
func (e *ntfEnv) jobStates(t *testing.T, kind string) []string {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(),
		`SELECT state || '/' || attempt FROM river_job WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *ntfEnv) jobErrors(t *testing.T) string {
	t.Helper()
	var s string
	if err := e.db.Pool.QueryRow(context.Background(),
		`SELECT coalesce(string_agg(errors::text, ' '), '') FROM river_job`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func equal(a []string, b ...string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

func smtpOn(srv *emailtest.Server) func(*jobs.Options) {
	return func(o *jobs.Options) {
		o.SMTPURL, o.SMTPTLS, o.EmailRootCAs = srv.URL(""), email.TLSNone, srv.RootCAs
	}
}

func TestNotificationEmailArrives(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	srv := emailtest.NewServer(t, emailtest.Options{})
	e := ntfStart(t, smtpOn(srv))
	owner, ada := e.user(t, "Owner"), e.user(t, "Ada")
	e.assign(t, owner, ada, "Ship it")

	testenv.WaitFor(t, 20*time.Second, "the email job to complete", func() bool { return equal(e.jobStates(t, jobs.KindDeliverEmail), "completed/1") })
	got := srv.Received()
	if len(got) != 1 {
		t.Fatalf("received %d emails, want 1", len(got))
	}
	m := got[0]
	var notificationID uuid.UUID
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id FROM notifications WHERE user_id = $1`, ada.ID).Scan(&notificationID); err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 1 || m.To[0] != "ada@example.com" || m.From != "noreply@taskgraph.test" {
		t.Errorf("envelope from %q to %q; want noreply@taskgraph.test to ada@example.com", m.From, m.To)
	}
	if want := "[Taskgraph] Owner assigned you “Ship it”"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if !strings.HasPrefix(m.Text, "Owner assigned you “Ship it”\r\n") ||
		!strings.Contains(m.Text, globalid.Encode(globalid.KindNotification, notificationID)) {
		t.Errorf("text %q: want the message first, and the notification's id", m.Text)
	}
	if want := "<notification." + notificationID.String() + "@taskgraph.test>"; m.Header.Get("Message-Id") != want {
		t.Errorf("Message-ID %q, want %q", m.Header.Get("Message-Id"), want)
	}
}

// 451 twice (after the message's content arrived: to the sender an ambiguous end), then accepted:
// delivered once, on attempt 3, every attempt with the same Message-ID.
func TestNotificationEmailRetriedAfter4xx(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	tempFail := emailtest.Reply(451, "try again later")
	srv := emailtest.NewServer(t, emailtest.Options{DataReplies: []error{tempFail, tempFail}})
	e := ntfStart(t, smtpOn(srv))
	e.assign(t, e.user(t, "Owner"), e.user(t, "Ada"), "Ship it")

	testenv.WaitFor(t, 20*time.Second, "the email job to complete", func() bool { return equal(e.jobStates(t, jobs.KindDeliverEmail), "completed/3") })
	if n := len(srv.Received()); n != 1 {
		t.Fatalf("accepted %d emails, want exactly 1", n)
	}
	data := srv.Data()
	if len(data) != 3 {
		t.Fatalf("%d sends, want 3", len(data))
	}
	for _, m := range data[1:] {
		if id := m.Header.Get("Message-Id"); id == "" || id != data[0].Header.Get("Message-Id") {
			t.Fatalf("Message-IDs differ between attempts: %q, %q", data[0].Header.Get("Message-Id"), id)
		}
	}
}

func TestNotificationEmailEndsOn5xx(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	srv := emailtest.NewServer(t, emailtest.Options{Replies: []error{emailtest.Reply(550, "no such user")}})
	e := ntfStart(t, smtpOn(srv))
	e.assign(t, e.user(t, "Owner"), e.user(t, "Ada"), "Ship it")

	testenv.WaitFor(t, 20*time.Second, "the email job to be cancelled", func() bool { return equal(e.jobStates(t, jobs.KindDeliverEmail), "cancelled/1") })
	// Cancelled is final: no retry can follow, so the counts are final too.
	if n, attempts := len(srv.Received()), srv.Attempts(); n != 0 || attempts != 1 {
		t.Fatalf("%d emails accepted after %d attempts; want none after 1", n, attempts)
	}
	if !strings.Contains(e.jobErrors(t), "550") {
		t.Errorf("the job's errors do not record the 550: %s", e.jobErrors(t))
	}
}

func TestNoEmailJobWithoutSMTP(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	e := ntfStart(t, nil)
	ada := e.user(t, "Ada")
	e.assign(t, e.user(t, "Owner"), ada, "Ship it")

	testenv.WaitFor(t, 20*time.Second, "the notification job to complete", func() bool { return equal(e.jobStates(t, notifications.KindNotifyAssigned), "completed/1") })
	if n := ntfCount(t, e, `SELECT count(*) FROM notifications WHERE user_id = $1`, ada.ID); n != 1 {
		t.Fatalf("%d notifications, want 1", n)
	}
	if states := e.jobStates(t, jobs.KindDeliverEmail); len(states) != 0 {
		t.Fatalf("deliver_email jobs %v without SMTP_URL, want none", states)
	}
}

// The SMTP password reaches neither the logs nor the jobs' recorded errors, even when the server
// refuses it.
func TestSMTPPasswordNeverLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	const password = "smtp-pa55-secret"
	srv := emailtest.NewServer(t, emailtest.Options{StartTLS: true, Users: map[string]string{"mailer": "another-password"}})
	e := ntfStart(t, func(o *jobs.Options) {
		o.SMTPURL, o.EmailRootCAs = srv.URL("mailer:"+password), srv.RootCAs
	})
	e.assign(t, e.user(t, "Owner"), e.user(t, "Ada"), "Ship it")

	testenv.WaitFor(t, 20*time.Second, "two failed attempts", func() bool {
		s := e.jobStates(t, jobs.KindDeliverEmail)
		return len(s) == 1 && !strings.HasSuffix(s[0], "/0") && !strings.HasSuffix(s[0], "/1")
	})
	logs := e.logs.String()
	if !strings.Contains(logs, "mailer:xxxxx@") || !strings.Contains(logs, "notification email failed") {
		t.Fatalf("logs lack the masked SMTP URL or the failure:\n%s", logs)
	}
	if strings.Contains(logs, password) || strings.Contains(e.jobErrors(t), password) {
		t.Fatalf("the SMTP password reached the logs or the job errors")
	}
	if len(srv.Received()) != 0 {
		t.Fatal("mail was accepted with a wrong password")
	}
}

func ntfCount(t *testing.T, e *ntfEnv, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
