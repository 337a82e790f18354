// Process-level test of `taskgraph worker`: a worker is killed (SIGKILL) while it is in the middle
// of jobs, another one takes over, and every job still has its effect exactly once.
package main_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// workerProc is a running `taskgraph worker`.
type workerProc struct {
	cmd     *exec.Cmd
	logs    *lockedBuffer
	done    chan struct{}
	exitErr error
}

// startWorker runs `taskgraph worker` on databaseURL with extra settings and waits until its
// workers have started. It is killed when the test ends if it is still running.
func startWorker(t *testing.T, databaseURL string, extra map[string]string) *workerProc {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "worker")
	// Any free port for the health endpoints, so that workers can run side by side (extra may override).
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DATABASE_URL=" + databaseURL, "LOG_LEVEL=info",
		"WORKER_HTTP_ADDR=127.0.0.1:0"}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &workerProc{cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s worker: %v", bin, err)
	}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("worker %d log (last 40 lines):\n%s", cmd.Process.Pid, tail(p.logs.String(), 40))
		}
	})
	testenv.WaitFor(t, 20*time.Second, "the worker to start its job workers", func() bool {
		select {
		case <-p.done:
			t.Fatalf("worker exited before starting (%v):\n%s", p.exitErr, p.logs.String())
		default:
		}
		return strings.Contains(p.logs.String(), `"msg":"job workers started"`)
	})
	return p
}

func countJobs(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(),
		`SELECT count(*) FROM river_job WHERE kind = 'notify_assigned' AND `+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWorkerKilledMidJobLosesNothingAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	const n = 50
	start := time.Now()
	if _, err := buildBinary(); err != nil {
		t.Fatal(err)
	}
	built := time.Now()
	database := testsupport.NewDatabase(t)
	pool := database.Pool
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// n tasks owned by one user and assigned to another, and a notify_assigned job for each.
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
	assignee, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "Assignee", Email: "assignee@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := pool.Query(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title)
		SELECT gen_random_uuid(), $1, $2, 'task ' || g FROM generate_series(1, $3::int) g
		RETURNING id`, owner.ID, assignee.ID, n)
	taskIDs, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil || len(taskIDs) != n {
		t.Fatalf("create tasks: %d, %v", len(taskIDs), err)
	}

	// Hold the tasks' rows locked: writing a notification checks its task_id foreign key, which waits
	// for the lock, so the first worker's jobs stay in the middle of their work until it is killed.
	lockTx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lockTx.Rollback(context.Background()) }() // released explicitly below
	if _, err := lockTx.Exec(ctx, `SELECT id FROM tasks FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(s db.Stores) error {
		var js []db.Job
		for _, id := range taskIDs {
			js = append(js, notifications.NotifyAssignedArgs{TaskID: id, AssigneeID: assignee.ID, Version: 1})
		}
		return s.Jobs.Enqueue(ctx, js...)
	})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}

	first := startWorker(t, database.URL, map[string]string{"JOB_WORKERS": "10"})
	testenv.WaitFor(t, 15*time.Second, "the first worker to be running 10 jobs", func() bool {
		return countJobs(t, pool, "state = 'running'") == 10
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	killedAt := time.Now()
	stuck := countJobs(t, pool, "state = 'running'")
	if stuck != 10 || countJobs(t, pool, "state = 'completed'") != 0 {
		t.Fatalf("after SIGKILL: %d jobs running, %d completed; want 10 stuck, none completed",
			stuck, countJobs(t, pool, "state = 'completed'"))
	}
	// Let the dead worker's blocked statements through: some of them may still write their
	// notification after their process is gone, and the retried jobs must not write it again.
	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// The dead worker was River's leader; its lease would run out 15s later. Ending it now lets the
	// next worker lead (and so rescue stuck jobs) at once instead.
	if _, err := pool.Exec(ctx, `DELETE FROM river_leader`); err != nil {
		t.Fatal(err)
	}
	// The stuck jobs become rescuable JOB_RESCUE_AFTER (2s) after they started.
	time.Sleep(time.Until(killedAt.Add(2500 * time.Millisecond)))

	second := startWorker(t, database.URL, map[string]string{
		"JOB_WORKERS": "10", "JOB_TIMEOUT": "1s", "LONG_JOB_TIMEOUT": "1s", "JOB_RESCUE_AFTER": "2s", "SHUTDOWN_TIMEOUT": "5s",
	})
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("all %d jobs to complete", n), func() bool {
		return countJobs(t, pool, "state = 'completed'") == n
	})

	var total, distinct, wrongUser int
	if err := pool.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT task_id), count(*) FILTER (WHERE user_id <> $1 OR kind <> 'TASK_ASSIGNED')
		FROM notifications`, assignee.ID).Scan(&total, &distinct, &wrongUser); err != nil {
		t.Fatal(err)
	}
	if total != n || distinct != n || wrongUser != 0 {
		t.Fatalf("notifications: %d rows for %d distinct tasks (%d not TASK_ASSIGNED to the assignee); want exactly %d, one per task",
			total, distinct, wrongUser, n)
	}
	if rescued := countJobs(t, pool, "attempt >= 2 AND cardinality(errors) >= 1"); rescued < stuck {
		t.Errorf("%d jobs were retried after an error, want at least the %d that were stuck", rescued, stuck)
	}

	// SIGTERM stops the second worker cleanly.
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.done:
	case <-time.After(10 * time.Second):
		t.Fatal("worker still running 10s after SIGTERM")
	}
	var exitErr *exec.ExitError
	if second.exitErr != nil && !errors.As(second.exitErr, &exitErr) {
		t.Fatal(second.exitErr)
	}
	if second.exitErr != nil {
		t.Errorf("worker exited with %v after SIGTERM, want 0:\n%s", second.exitErr, tail(second.logs.String(), 20))
	}
	if !strings.Contains(second.logs.String(), `"msg":"job workers stopped"`) {
		t.Errorf("worker log lacks \"job workers stopped\":\n%s", tail(second.logs.String(), 20))
	}
	t.Logf("build %s, test %s", built.Sub(start).Round(time.Millisecond), time.Since(built).Round(time.Millisecond))
}
