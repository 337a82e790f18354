// Process-level test of a bulk operation under `taskgraph worker`: the worker is killed (SIGKILL)
// in the middle of a chunk, another one takes over, and the job completes with every task changed
// exactly once.
package main_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

func TestBulkWorkerKilledMidChunkCompletesEachTaskOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	const n = 3000
	if _, err := buildBinary(); err != nil {
		t.Fatal(err)
	}
	database := testsupport.NewDatabase(t)
	pool := database.Pool
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	queue, err := jobs.New(pool, jobs.Options{}) // insert-only
	if err != nil {
		t.Fatal(err)
	}
	defer queue.Close()
	store := db.New(pool, nil, db.WithEnqueuer(queue))
	owner, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "Owner", Email: "owner@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// n tasks in the past, one second apart; every fourth one is already HIGH (nothing to change).
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, title, priority, created_at)
		SELECT gen_random_uuid(), $1, 'task ' || g, CASE WHEN g % 4 = 0 THEN 2 ELSE 1 END,
		       now() - interval '1 hour' + g * interval '1 second'
		FROM generate_series(1, $2::int) g`, owner.ID, n); err != nil {
		t.Fatal(err)
	}
	need := n - n/4

	// Hold the first task of the third chunk: the first worker commits two chunks, then waits
	// inside the third one (rows of it locked, its transaction open) until it is killed.
	lockTx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lockTx.Rollback(context.Background()) }() // released explicitly below
	// (Only that row: a locking clause would also lock the rows an OFFSET skips.)
	if _, err := lockTx.Exec(ctx, `SELECT id FROM tasks
		WHERE id = (SELECT id FROM tasks ORDER BY created_at, id OFFSET 1000 LIMIT 1) FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	var jobID uuid.UUID
	err = store.InTx(ctx, func(s db.Stores) error {
		j, err := s.BackgroundJobs.Create(ctx, owner.ID, db.JobBulkUpdateTasks, userjobs.BulkParams{
			Patch:       &userjobs.BulkPatch{Priority: db.Optional[db.Priority]{Set: true, Value: db.PriorityHigh}},
			RequestedAt: time.Now(),
		}, 0)
		if err != nil {
			return err
		}
		jobID = j.ID
		return s.Jobs.Enqueue(ctx, userjobs.QueueEntry(j))
	})
	if err != nil {
		t.Fatal(err)
	}
	job := func() *db.BackgroundJob {
		t.Helper()
		j, err := store.Stores().BackgroundJobs.ByID(ctx, jobID)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}

	// WORKER_HTTP_ADDR: any free port, so workers never collide on the default one.
	first := startWorker(t, database.URL, map[string]string{"JOB_WORKERS": "2", "WORKER_HTTP_ADDR": "127.0.0.1:0"})
	testenv.WaitFor(t, 20*time.Second, "the first worker to commit two chunks and block in the third", func() bool {
		var waiting int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'taskgraph-jobs' AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting == 1 && job().Processed == 1000
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killedAt := time.Now()
	if j := job(); j.Status != db.JobRunning || j.Processed != 1000 || j.Total == nil || *j.Total != n {
		t.Fatalf("after SIGKILL: job %s, %d of %v processed; want RUNNING, 1000 of %d", j.Status, j.Processed, j.Total, n)
	}
	// Let the dead worker's blocked chunk through: its statement may still run, but its
	// transaction can never commit (its client is gone), so nothing of the third chunk stays.
	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the dead worker's transaction to end", func() bool {
		var left int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskgraph-jobs' AND xact_start IS NOT NULL`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	var changed, twice int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE version = 2), count(*) FILTER (WHERE version > 2) FROM tasks`).Scan(&changed, &twice); err != nil {
		t.Fatal(err)
	}
	if firstTwo := 1000 - 1000/4; changed != firstTwo || twice != 0 {
		t.Fatalf("after the kill: %d tasks changed (%d twice); want exactly the two committed chunks' %d", changed, twice, firstTwo)
	}
	// The dead worker led River; ending its lease lets the next worker lead (and rescue) at once.
	if _, err := pool.Exec(ctx, `DELETE FROM river_leader`); err != nil {
		t.Fatal(err)
	}
	// The second worker's leader rescues the stuck job when it starts, if its attempt started more
	// than JOB_RESCUE_AFTER (4s) before.
	var attemptedAt time.Time
	if err := pool.QueryRow(ctx, `SELECT attempted_at FROM river_job WHERE kind = $1`, userjobs.KindBulkUpdate).Scan(&attemptedAt); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(attemptedAt.Add(4500 * time.Millisecond)))
	second := startWorker(t, database.URL, map[string]string{
		"JOB_WORKERS": "2", "JOB_TIMEOUT": "1s", "LONG_JOB_TIMEOUT": "3s", "JOB_RESCUE_AFTER": "4s",
		"SHUTDOWN_TIMEOUT": "5s", "WORKER_HTTP_ADDR": "127.0.0.1:0",
	})
	testenv.WaitFor(t, 30*time.Second, "the job to finish on the second worker", func() bool { return job().Status.Finished() })

	j := job()
	var res userjobs.BulkResult
	if err := json.Unmarshal(j.Result, &res); err != nil || j.Status != db.JobSucceeded {
		t.Fatalf("job %s (%v): result %s", j.Status, err, j.Result)
	}
	if res != (userjobs.BulkResult{MatchedCount: n, AffectedCount: int32(need)}) || j.Attempt != 2 || j.Processed != n {
		t.Fatalf("job: result %+v, attempt %d, processed %d; want %d matched, %d affected, attempt 2, %d processed",
			res, j.Attempt, j.Processed, n, need, n)
	}
	var high, atTwo, over int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE priority = 2), count(*) FILTER (WHERE version = 2),
		count(*) FILTER (WHERE version > 2) FROM tasks`).Scan(&high, &atTwo, &over); err != nil {
		t.Fatal(err)
	}
	if high != n || atTwo != need || over != 0 {
		t.Fatalf("tasks: %d HIGH, %d changed once, %d changed more; want %d, %d, 0", high, atTwo, over, n, need)
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.done:
	case <-time.After(10 * time.Second):
		t.Fatal("worker still running 10s after SIGTERM")
	}
	t.Logf("job done %s after the kill", time.Since(killedAt).Round(time.Millisecond))
}
