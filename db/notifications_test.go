package db_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestRemindDueSoonOncePerDueDate drives the due-reminder sweep directly, with chunks smaller than the
// work so the keyset loop runs several times, and concurrently with itself.
func TestRemindDueSoonOncePerDueDate(t *testing.T) {
	database := testsupport.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := database.Pool
	store := db.New(pool, nil)
	owner, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "O", Email: "o@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	assignee, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "A", Email: "a@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// 7 open tasks due within the hour (every other one assigned), and tasks that must not be reminded:
	// done, due later, overdue, undated.
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, status, due_at)
		SELECT gen_random_uuid(), $1, CASE WHEN g % 2 = 0 THEN $2::uuid END, 'due ' || g, 'TODO',
		       now() + g * interval '5 minutes'
		FROM generate_series(1, 7) g`, owner.ID, assignee.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, title, status, due_at) VALUES
		  (gen_random_uuid(), $1, 'done', 'DONE', now() + interval '10 minutes'),
		  (gen_random_uuid(), $1, 'later', 'IN_PROGRESS', now() + interval '3 hours'),
		  (gen_random_uuid(), $1, 'overdue', 'TODO', now() - interval '1 minute'),
		  (gen_random_uuid(), $1, 'undated', 'TODO', NULL)`, owner.ID); err != nil {
		t.Fatal(err)
	}
	reminders := store.Stores().Notifications
	written, err := reminders.RemindDueSoon(ctx, time.Hour, 2)
	if err != nil || len(written) != 7+3 {
		t.Fatalf("first sweep wrote %d, %v; want 10 (7 owners, 3 assignees)", len(written), err)
	}
	// The sweep answers each reminder it wrote with its recipient, as stored.
	perUser := map[uuid.UUID]int{}
	for _, w := range written {
		var userID uuid.UUID
		if err := pool.QueryRow(ctx, `SELECT user_id FROM notifications WHERE id = $1 AND kind = 'TASK_DUE_SOON'`, w.ID).Scan(&userID); err != nil {
			t.Fatalf("reminder %s: %v", w.ID, err)
		}
		if userID != w.UserID {
			t.Errorf("reminder %s answered for %s, stored for %s", w.ID, w.UserID, userID)
		}
		perUser[w.UserID]++
	}
	if perUser[owner.ID] != 7 || perUser[assignee.ID] != 3 {
		t.Errorf("reminders per user %v; want 7 for the owner, 3 for the assignee", perUser)
	}
	if again, err := reminders.RemindDueSoon(ctx, time.Hour, 2); err != nil || len(again) != 0 {
		t.Fatalf("second sweep wrote %d, %v; want 0", len(again), err)
	}

	// Moving two due dates earns two new reminders each (owner and, for one, assignee), however many
	// sweeps run at once.
	if _, err := pool.Exec(ctx, `UPDATE tasks SET due_at = due_at + interval '1 minute' WHERE title IN ('due 1', 'due 2')`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	counts := make([]int, 6)
	for i := range counts {
		wg.Go(func() {
			w, err := store.Stores().Notifications.RemindDueSoon(ctx, time.Hour, 1)
			if err != nil {
				t.Error(err)
			}
			counts[i] = len(w)
		})
	}
	wg.Wait()
	sum := 0
	for _, n := range counts {
		sum += n
	}
	if sum != 3 {
		t.Fatalf("concurrent sweeps wrote %v (total %d), want 3 in all", counts, sum)
	}
	var total, perTaskMax int
	if err := pool.QueryRow(ctx, `
		SELECT sum(c), max(c) FROM (
		  SELECT count(*) AS c FROM notifications WHERE kind = 'TASK_DUE_SOON' GROUP BY user_id, task_id, dedupe_key) x`).
		Scan(&total, &perTaskMax); err != nil {
		t.Fatal(err)
	}
	if total != 13 || perTaskMax != 1 {
		t.Fatalf("%d reminders, at most %d per user, task and due date; want 13, 1", total, perTaskMax)
	}
}

// TestNotifyIsIdempotent: the same change notifies once however often its job runs, and nothing is
// written for a task that is gone or (TASK_ASSIGNED) no longer assigned to that user.
func TestNotifyIsIdempotent(t *testing.T) {
	database := testsupport.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := db.New(database.Pool, cursor.NewCodec([]byte("notify-test-secret-notify-test-secret")))
	s := store.Stores()
	owner, err := s.Users.Create(ctx, db.NewUser{Name: "O", Email: "o@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Users.Create(ctx, db.NewUser{Name: "B", Email: "b@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	task, err := s.Tasks.Create(ctx, owner.ID, db.NewTask{Title: "t", Status: db.StatusTodo, AssigneeID: &b.ID})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false} {
		if wrote, err := s.Notifications.NotifyAssigned(ctx, task.ID, b.ID, 1); err != nil || wrote != want {
			t.Fatalf("NotifyAssigned run %d: %v, %v; want %v", i+1, wrote, err, want)
		}
		if wrote, err := s.Notifications.NotifyStatusChanged(ctx, task.ID, owner.ID, b.ID, db.StatusDone, 2); err != nil || wrote != want {
			t.Fatalf("NotifyStatusChanged run %d: %v, %v; want %v", i+1, wrote, err, want)
		}
	}
	// A later change (another version) is a new notification; a user who is not the assignee gets none.
	if wrote, _ := s.Notifications.NotifyAssigned(ctx, task.ID, b.ID, 3); !wrote {
		t.Error("a new assignment (version 3) wrote nothing")
	}
	if wrote, _ := s.Notifications.NotifyAssigned(ctx, task.ID, owner.ID, 4); wrote {
		t.Error("TASK_ASSIGNED written for a user who is not the assignee")
	}
	if err := s.Tasks.Delete(ctx, task.ID, owner.ID); err != nil {
		t.Fatal(err)
	}
	if wrote, err := s.Notifications.NotifyStatusChanged(ctx, task.ID, owner.ID, b.ID, db.StatusTodo, 5); err != nil || wrote {
		t.Errorf("NotifyStatusChanged for a deleted task: %v, %v; want nothing written", wrote, err)
	}
	// The notifications of the deleted task remain, with task_id null.
	conn, err := s.Notifications.List(ctx, b.ID, false, db.PageArgs{})
	if err != nil || len(conn.Edges) != 2 || conn.Edges[0].Node.TaskID != nil {
		t.Fatalf("B's notifications after the delete: %+v, %v", conn, err)
	}
	if got := conn.Edges[0].Node.Payload; got.Title != "t" || got.ActorName != "O" {
		t.Errorf("payload = %+v, want the title and the owner's name", got)
	}
	// Marking read is scoped to the user: the owner cannot mark B's, B can.
	ids := []uuid.UUID{conn.Edges[0].Node.ID, conn.Edges[1].Node.ID}
	if n, err := s.Notifications.MarkRead(ctx, owner.ID, ids, false); err != nil || n != 0 {
		t.Errorf("owner marked %d of B's notifications (%v)", n, err)
	}
	if n, err := s.Notifications.MarkRead(ctx, b.ID, ids, false); err != nil || n != 2 {
		t.Errorf("B marked %d (%v), want 2", n, err)
	}
	if n, err := s.Notifications.UnreadCount(ctx, b.ID); err != nil || n != 0 {
		t.Errorf("B's unread count = %d, %v", n, err)
	}
}

// TestNotificationQueriesUseTheirIndexes checks with EXPLAIN (sequential scans off) that the
// notification list, its unread variant, the unread count and the due-reminder sweep use the
// indexes meant for them.
func TestNotificationQueriesUseTheirIndexes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: seeds thousands of rows to read query plans")
	}
	database := testsupport.NewDatabase(t)
	rec := &sqlRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := db.OpenPool(ctx, database.URL, db.PoolOptions{MaxConns: 2, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := db.New(pool, cursor.NewCodec([]byte("index-test-secret-index-test-secret")))
	if _, err := pool.Exec(ctx, `
		INSERT INTO users (id, name, email, password_hash)
		SELECT gen_random_uuid(), 'u' || g, 'u' || g || '@example.com', 'x' FROM generate_series(1, 50) g;
		INSERT INTO tasks (id, owner_id, title, status, due_at)
		SELECT gen_random_uuid(), u.id, 't', (ARRAY['TODO','IN_PROGRESS','DONE'])[1 + g % 3],
		       now() + g * interval '1 minute'
		FROM users u, generate_series(1, 400) g;
		INSERT INTO notifications (user_id, kind, task_id, dedupe_key, created_at, read_at)
		SELECT t.owner_id, 'TASK_DUE_SOON', t.id, 'k', now() - random() * interval '30 days',
		       CASE WHEN random() < 0.9 THEN now() END
		FROM tasks t;
		ANALYZE users; ANALYZE tasks; ANALYZE notifications`); err != nil {
		t.Fatal(err)
	}
	var user uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT id FROM users LIMIT 1`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	first := 5
	cases := []struct {
		name, stmt, index string
		run               func() error
	}{
		{"list", "SELECT id,", "notifications_user_created_at_idx", func() error {
			_, err := store.Stores().Notifications.List(ctx, user, false, db.PageArgs{First: &first})
			return err
		}},
		{"list after a cursor", "SELECT id,", "notifications_user_created_at_idx", func() error {
			c, err := store.Stores().Notifications.List(ctx, user, false, db.PageArgs{First: &first})
			if err == nil {
				_, err = store.Stores().Notifications.List(ctx, user, false, db.PageArgs{First: &first, After: c.PageInfo.EndCursor})
			}
			return err
		}},
		{"unread list", "SELECT id,", "notifications_user_unread_idx", func() error {
			_, err := store.Stores().Notifications.List(ctx, user, true, db.PageArgs{First: &first})
			return err
		}},
		{"unread count", "SELECT count(*)", "notifications_user_unread_idx", func() error {
			_, err := store.Stores().Notifications.UnreadCount(ctx, user)
			return err
		}},
		{"due-reminder sweep", "WITH due AS", "tasks_open_due_at_idx", func() error {
			_, err := store.Stores().Notifications.RemindDueSoon(ctx, time.Hour, 0)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
			sql, args := rec.last(t, tc.stmt)
			plan := explain(ctx, t, pool, sql, args)
			if !strings.Contains(plan, tc.index) {
				t.Fatalf("plan for %q does not use %s:\n%s", sql, tc.index, plan)
			}
		})
	}
}

// TestWebhookDeliveriesFanOut: every webhook of each recipient, and nothing for users without one.
func TestWebhookDeliveriesFanOut(t *testing.T) {
	database := testsupport.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := db.New(database.Pool, nil).Stores()
	var users [3]*db.User
	for i := range users {
		u, err := s.Users.Create(ctx, db.NewUser{Name: "U", Email: uuid.NewString() + "@example.com", PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		users[i] = u
	}
	secret := make([]byte, 32)
	hooks := map[uuid.UUID]uuid.UUID{} // webhook -> user
	for i, n := range []int{2, 1, 0} {
		for range n {
			h, err := s.Webhooks.Create(ctx, users[i].ID, "https://example.com/"+uuid.NewString(), secret)
			if err != nil {
				t.Fatal(err)
			}
			hooks[h.ID] = users[i].ID
		}
	}
	written := []db.NotificationRef{
		{ID: uuid.New(), UserID: users[0].ID}, {ID: uuid.New(), UserID: users[0].ID},
		{ID: uuid.New(), UserID: users[1].ID}, {ID: uuid.New(), UserID: users[2].ID},
	}
	got, err := s.Notifications.WebhookDeliveries(ctx, written)
	if err != nil {
		t.Fatal(err)
	}
	recipient := map[uuid.UUID]uuid.UUID{}
	for _, w := range written {
		recipient[w.ID] = w.UserID
	}
	seen := map[db.WebhookDelivery]bool{}
	for _, d := range got {
		if hooks[d.WebhookID] != recipient[d.NotificationID] || seen[d] {
			t.Errorf("delivery %+v: webhook of %s, notification for %s (or twice)", d, hooks[d.WebhookID], recipient[d.NotificationID])
		}
		seen[d] = true
	}
	if len(got) != 2+2+1 {
		t.Fatalf("%d deliveries, want 5 (2 notifications × 2 webhooks, 1 × 1, none for the user without webhooks)", len(got))
	}
	if none, err := s.Notifications.WebhookDeliveries(ctx, nil); err != nil || len(none) != 0 {
		t.Fatalf("no notifications: %v, %v", none, err)
	}
}
