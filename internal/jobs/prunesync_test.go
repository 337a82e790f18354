package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// The periodic sweep deletes task changes past the retention (and records how far it deleted, for
// SYNC_TOKEN_EXPIRED) and expired idempotency keys, and leaves the rest.
func TestPruneSyncDeletesOnlyWhatExpired(t *testing.T) {
	database := testsupport.NewDatabase(t)
	ctx := context.Background()
	store := db.New(database.Pool, nil)
	s := store.Stores()
	owner, err := s.Users.Create(ctx, db.NewUser{Name: "O", Email: "o@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.Tasks.Create(ctx, owner.ID, db.NewTask{Title: "t", Status: db.StatusTodo}); err != nil {
			t.Fatal(err)
		}
	}
	exec := func(sql string) {
		if _, err := database.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE task_changes SET changed_at = now() - interval '2 hours' WHERE seq = (SELECT min(seq) FROM task_changes)`)
	exec(`INSERT INTO idempotency_keys (scope, key, request_hash, lease, locked_until, expires_at) VALUES
		('ip:1', 'old', '\x00', gen_random_uuid(), now(), now() - interval '1 second'),
		('ip:1', 'new', '\x00', gen_random_uuid(), now(), now() + interval '1 hour')`)
	w := &jobs.PruneSyncWorker{Tasks: tasks.New(reads.NewRouter(store, nil), nil, nil), Store: store,
		Retention: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	job := &river.Job[jobs.PruneSyncArgs]{JobRow: &rivertype.JobRow{Attempt: 1}}
	// Changes below a transaction still running elsewhere wait for it: sweep until the old one went.
	testenv.WaitFor(t, 30*time.Second, "the old change to be pruned", func() bool {
		if err := w.Work(ctx, job); err != nil {
			t.Fatal(err)
		}
		return count(t, database, `SELECT count(*) FROM task_changes`) == 1
	})
	if n := count(t, database, `SELECT count(*) FROM task_changes_pruned WHERE max_xid > '0'`); n != 1 {
		t.Fatalf("pruned horizon rows = %d, want 1", n)
	}
	if n := count(t, database, `SELECT count(*) FROM idempotency_keys WHERE key = 'new'`); n != 1 || count(t, database, `SELECT count(*) FROM idempotency_keys`) != 1 {
		t.Fatal("the sweep did not delete exactly the expired key")
	}
}
