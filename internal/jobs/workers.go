package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/internal/notifications"
)

// AfterWriteHook runs after a worker's write and before it reports success; an error fails the
// attempt (River retries it). Tests use it to fail an attempt whose write already happened.
type AfterWriteHook func(ctx context.Context, job *rivertype.JobRow) error

func runHook(ctx context.Context, h AfterWriteHook, job *rivertype.JobRow) error {
	if h == nil {
		return nil
	}
	return h(ctx, job)
}

// The notification workers are thin: they hand their job to the notifications domain, which writes
// the notification (once per change) and enqueues its deliveries in one transaction.

// NotifyAssignedWorker writes the TASK_ASSIGNED notification, unless the task is gone or no longer
// assigned to that user by the time the job runs.
type NotifyAssignedWorker struct {
	river.WorkerDefaults[notifications.NotifyAssignedArgs]
	Notifications *notifications.Service
	AfterWrite    AfterWriteHook // nil in production
}

// Work implements river.Worker.
func (w *NotifyAssignedWorker) Work(ctx context.Context, job *river.Job[notifications.NotifyAssignedArgs]) error {
	if err := w.Notifications.WriteAssigned(ctx, job.Args); err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// NotifyStatusChangedWorker writes the TASK_STATUS_CHANGED notification for the task's owner,
// unless the task is gone.
type NotifyStatusChangedWorker struct {
	river.WorkerDefaults[notifications.NotifyStatusChangedArgs]
	Notifications *notifications.Service
	AfterWrite    AfterWriteHook // nil in production
}

// Work implements river.Worker.
func (w *NotifyStatusChangedWorker) Work(ctx context.Context, job *river.Job[notifications.NotifyStatusChangedArgs]) error {
	if err := w.Notifications.WriteStatusChanged(ctx, job.Args); err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// DueRemindersWorker writes TASK_DUE_SOON reminders for tasks due within Window (once per task and
// due date), a chunk of tasks per transaction that also enqueues the chunk's deliveries.
type DueRemindersWorker struct {
	river.WorkerDefaults[DueRemindersArgs]
	Notifications *notifications.Service
	Window        time.Duration
	Chunk         int // tasks per transaction; 0: db.DueReminderChunk
	Logger        *slog.Logger
	AfterWrite    AfterWriteHook // nil in production
}

// Work implements river.Worker.
func (w *DueRemindersWorker) Work(ctx context.Context, job *river.Job[DueRemindersArgs]) error {
	n, err := w.Notifications.RemindDue(ctx, w.Window, w.Chunk)
	// Chunks before a failed one are committed with their deliveries; the retry (or the next sweep)
	// finds only what is left.
	if n > 0 && w.Logger != nil {
		w.Logger.InfoContext(ctx, "due reminders written", "count", n, "window", w.Window.String())
	}
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}
