package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/db"
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

// NotifyAssignedWorker writes the TASK_ASSIGNED notification, unless the task is gone or no longer
// assigned to that user by the time the job runs.
type NotifyAssignedWorker struct {
	river.WorkerDefaults[notifications.NotifyAssignedArgs]
	Store      *db.DB
	AfterWrite AfterWriteHook // nil in production
	Deliveries Deliveries
}

// Work implements river.Worker.
func (w *NotifyAssignedWorker) Work(ctx context.Context, job *river.Job[notifications.NotifyAssignedArgs]) error {
	a := job.Args
	err := notify(ctx, w.Store, w.Deliveries, a.AssigneeID, func(s db.Stores) (*uuid.UUID, error) {
		return s.Notifications.NotifyAssignedID(ctx, a.TaskID, a.AssigneeID, a.Version)
	})
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// notify writes one notification for userID with write (which returns nil when there is nothing to
// write) and its deliveries in one transaction. Live subscribers hear of it from the database (the
// notifications trigger announces every insert at commit).
func notify(ctx context.Context, store *db.DB, d Deliveries, userID uuid.UUID,
	write func(db.Stores) (*uuid.UUID, error)) error {
	var written []db.NotificationRef
	err := store.InTx(ctx, func(s db.Stores) error {
		id, err := write(s)
		if err != nil || id == nil {
			return err
		}
		written = []db.NotificationRef{{ID: *id, UserID: userID}}
		return d.Enqueue(ctx, s, written)
	})
	if err != nil {
		return err
	}
	return nil
}

// NotifyStatusChangedWorker writes the TASK_STATUS_CHANGED notification for the task's owner,
// unless the task is gone.
type NotifyStatusChangedWorker struct {
	river.WorkerDefaults[notifications.NotifyStatusChangedArgs]
	Store      *db.DB
	AfterWrite AfterWriteHook // nil in production
	Deliveries Deliveries
}

// Work implements river.Worker.
func (w *NotifyStatusChangedWorker) Work(ctx context.Context, job *river.Job[notifications.NotifyStatusChangedArgs]) error {
	a := job.Args
	err := notify(ctx, w.Store, w.Deliveries, a.OwnerID, func(s db.Stores) (*uuid.UUID, error) {
		return s.Notifications.NotifyStatusChangedID(ctx, a.TaskID, a.OwnerID, a.ActorID, a.Status, a.Version)
	})
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// DueRemindersWorker writes TASK_DUE_SOON reminders for tasks due within Window (see
// db.NotificationStore.RemindDueChunk: once per task and due date), a chunk of tasks per
// transaction that also enqueues the chunk's deliveries.
type DueRemindersWorker struct {
	river.WorkerDefaults[DueRemindersArgs]
	Store      *db.DB
	Window     time.Duration
	Chunk      int // tasks per transaction; 0: db.DueReminderChunk
	Logger     *slog.Logger
	AfterWrite AfterWriteHook // nil in production
	Deliveries Deliveries
}

// Work implements river.Worker.
func (w *DueRemindersWorker) Work(ctx context.Context, job *river.Job[DueRemindersArgs]) error {
	sweep, err := w.Store.Stores().Notifications.StartDueSweep(ctx, w.Window, w.Chunk)
	if err != nil {
		return err
	}
	total := 0
	for !sweep.Done() {
		var written []db.NotificationRef
		err := w.Store.InTx(ctx, func(s db.Stores) error {
			var err error
			if written, err = s.Notifications.RemindDueChunk(ctx, sweep); err != nil {
				return err
			}
			return w.Deliveries.Enqueue(ctx, s, written)
		})
		if err != nil {
			// The chunks before this one are committed with their deliveries; the retry (or the next
			// sweep) finds only what is left.
			w.logWritten(ctx, total)
			return err
		}
		total += len(written)
	}
	w.logWritten(ctx, total)
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

func (w *DueRemindersWorker) logWritten(ctx context.Context, n int) {
	if n > 0 && w.Logger != nil {
		w.Logger.InfoContext(ctx, "due reminders written", "count", n, "window", w.Window.String())
	}
}
