package jobs_test

// Due-soon reminders go out like every other notification: by webhook, by email and to live
// subscriptions (the Notified hook), each once, however many sweeps run.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/email/emailtest"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// hookReceiver is a loopback webhook endpoint recording the bodies it gets.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) payloads(t *testing.T) []jobs.WebhookPayload {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]jobs.WebhookPayload, len(r.bodies))
	for i, b := range r.bodies {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			t.Fatalf("delivery %d: %v: %s", i, err, b)
		}
	}
	return out
}

func TestDueSoonReminderGoesOutOnceEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	srv := emailtest.NewServer(t, emailtest.Options{})
	e := ntfStart(t, smtpOn(srv))
	ctx := context.Background()
	owner, ada := e.user(t, "Owner"), e.user(t, "Ada")
	hooks := newHookReceiver(t)
	if _, err := e.store.Stores().Webhooks.Create(ctx, owner.ID, hooks.URL+"/hook", make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	// Live subscriptions hear of notifications through the events bus (the database's trigger
	// announces each insert at commit, every instance LISTENs): Ada's subscriber must hear of her
	// reminder once.
	bus := events.New(e.db.Pool, nil)
	busCtx, stopBus := context.WithCancel(ctx)
	defer stopBus()
	go bus.Run(busCtx)
	<-bus.Ready()
	sub := bus.Subscribe(func(ev events.Event) bool { return ev.Kind == events.KindNotification && ev.HasUser(ada.ID) }, 16)
	defer sub.Close()

	due := time.Now().Add(30 * time.Minute)
	if _, err := e.store.Stores().Tasks.Create(ctx, owner.ID, db.NewTask{Title: "Pay rent", Status: db.StatusTodo,
		AssigneeID: &ada.ID, DueAt: &due}); err != nil {
		t.Fatal(err)
	}

	// Two sweeps that see the task, besides the one the queue runs at start (which may or may not).
	for range 2 {
		if err := e.store.InTx(ctx, func(s db.Stores) error { return s.Jobs.Enqueue(ctx, jobs.DueRemindersArgs{}) }); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "three sweeps, one webhook delivery and two emails", func() bool {
		return equal(e.jobStates(t, jobs.KindDueReminders), "completed/1", "completed/1", "completed/1") &&
			equal(e.jobStates(t, jobs.KindDeliverWebhook), "completed/1") &&
			equal(e.jobStates(t, jobs.KindDeliverEmail), "completed/1", "completed/1")
	})
	testenv.WaitFor(t, 20*time.Second, "Ada's subscriber to hear of her reminder", func() bool { return len(sub.C) > 0 })
	// A marker published after every sweep committed arrives after anything they announced
	// (notifications are delivered in commit order): once it is heard, a duplicate would have been.
	bus.Publish(ctx, events.Event{Kind: events.KindNotification, UserIDs: []uuid.UUID{ada.ID}, Change: "marker"})
	testenv.WaitFor(t, 20*time.Second, "the marker", func() bool { return len(sub.C) >= 2 })
	if ev := <-sub.C; ev.Change == "marker" {
		t.Fatal("Ada's subscriber heard the marker before her reminder")
	}
	if ev := <-sub.C; ev.Change != "marker" {
		t.Fatalf("Ada's subscriber heard a second notification event %+v before the marker", ev)
	}

	got := hooks.payloads(t)
	if len(got) != 1 || got[0].Kind != db.NotificationTaskDueSoon || got[0].TaskID == nil {
		t.Fatalf("webhook deliveries %+v; want one TASK_DUE_SOON with its task", got)
	}
	mails := srv.Received()
	var to []string
	for _, m := range mails {
		to = append(to, m.To...)
	}
	slices.Sort(to)
	if !equal(to, "ada@example.com", "owner@example.com") {
		t.Fatalf("emails to %v; want one each to ada@ and owner@", to)
	}
	testenv.WaitFor(t, 20*time.Second, "the environment's listener to hear the marker", func() bool { return e.heardMarkers() == 1 })
	notified := e.notifiedUsers()
	if len(notified) != 2 || !slices.Contains(notified, owner.ID) || !slices.Contains(notified, ada.ID) {
		t.Fatalf("Notified %v; want the owner %s and the assignee %s once each", notified, owner.ID, ada.ID)
	}
}

// The sweep, driven directly in chunks of one task, enqueues each chunk's deliveries with it, and a
// repeat enqueues nothing; a chunk whose deliveries cannot be enqueued leaves no reminder behind.
func TestDueReminderDeliveriesCommitWithTheirChunk(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: works jobs in River workers")
	}
	t.Parallel()
	database := testsupport.NewDatabase(t)
	ctx := context.Background()
	queue, err := jobs.New(database.Pool, jobs.Options{}) // insert-only: the jobs stay to be counted
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	store := db.New(database.Pool, nil, db.WithEnqueuer(queue))
	s := store.Stores()
	owner, err := s.Users.Create(ctx, db.NewUser{Name: "O", Email: "o@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ada, err := s.Users.Create(ctx, db.NewUser{Name: "A", Email: "a@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Webhooks.Create(ctx, owner.ID, "https://example.com/"+uuid.NewString(), make([]byte, 32)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 { // 3 tasks: the first assigned to Ada
		due := time.Now().Add(time.Duration(10+i) * time.Minute)
		nt := db.NewTask{Title: "t", Status: db.StatusTodo, DueAt: &due}
		if i == 0 {
			nt.AssigneeID = &ada.ID
		}
		if _, err := s.Tasks.Create(ctx, owner.ID, nt); err != nil {
			t.Fatal(err)
		}
	}

	// Live subscribers hear of notifications from the database's trigger, at each commit.
	bus := events.New(database.Pool, nil)
	busCtx, stopBus := context.WithCancel(ctx)
	defer stopBus()
	go bus.Run(busCtx)
	<-bus.Ready()
	sub := bus.Subscribe(func(ev events.Event) bool { return ev.Kind == events.KindNotification }, 64)
	defer sub.Close()

	// Without a job queue the first chunk's enqueue fails: its reminders roll back with it.
	withoutQueue := notifications.New(reads.NewRouter(db.New(database.Pool, nil), nil)).WithDeliveries(jobs.Deliveries{Email: true})
	broken := &jobs.DueRemindersWorker{Notifications: withoutQueue, Window: time.Hour, Chunk: 1}
	if err := broken.Work(ctx, sweepJob()); !errors.Is(err, db.ErrNoJobQueue) {
		t.Fatalf("sweep without a queue: %v, want ErrNoJobQueue", err)
	}
	if n := count(t, database, `SELECT count(*) FROM notifications`); n != 0 {
		t.Fatalf("%d reminders committed without their deliveries; want none", n)
	}

	notes := notifications.New(reads.NewRouter(store, nil)).WithDeliveries(jobs.Deliveries{Email: true})
	w := &jobs.DueRemindersWorker{Notifications: notes, Window: time.Hour, Chunk: 1}
	for range 2 {
		if err := w.Work(ctx, sweepJob()); err != nil {
			t.Fatal(err)
		}
	}
	// 4 reminders (3 for the owner, 1 for Ada); 2 webhooks × 3 owner reminders; an email each.
	if n := count(t, database, `SELECT count(*) FROM notifications WHERE kind = 'TASK_DUE_SOON'`); n != 4 {
		t.Fatalf("%d reminders, want 4", n)
	}
	if n := count(t, database, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`); n != 6 {
		t.Errorf("%d webhook deliveries, want 6", n)
	}
	if n := count(t, database, `
		SELECT count(*) FROM river_job j JOIN notifications n ON n.id = (j.args->>'notification_id')::uuid
		WHERE j.kind = 'deliver_email' AND n.user_id = (j.args->>'user_id')::uuid`); n != 4 {
		t.Errorf("%d email deliveries matching their notification's recipient, want 4", n)
	}
	// Once per recipient per chunk: the owner in each of the 3 chunks, Ada in the first; nothing for
	// the rolled-back chunk. A marker published now arrives after everything committed before it.
	bus.Publish(ctx, events.Event{Kind: events.KindNotification, Change: "marker"})
	var calls []uuid.UUID
	for heard := false; !heard; {
		select {
		case ev := <-sub.C:
			if heard = ev.Change == "marker"; !heard {
				calls = append(calls, ev.UserIDs...)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the marker never arrived; heard %v", calls)
		}
	}
	slices.SortFunc(calls, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	want := []uuid.UUID{owner.ID, owner.ID, owner.ID, ada.ID}
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(calls, want) {
		t.Errorf("notification events for %v, want %v", calls, want)
	}
}

func sweepJob() *river.Job[jobs.DueRemindersArgs] {
	return &river.Job[jobs.DueRemindersArgs]{JobRow: &rivertype.JobRow{Attempt: 1}}
}

func count(t *testing.T, database *testsupport.Database, sql string) int {
	t.Helper()
	var n int
	if err := database.Pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
