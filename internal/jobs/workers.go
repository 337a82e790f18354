package jobs

import (
	"context"
	"github.com/google/uuid"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/db"
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
	river.WorkerDefaults[NotifyAssignedArgs]
	Store      *db.DB
	AfterWrite AfterWriteHook // nil in production
	Notified   func(ctx context.Context, userID uuid.UUID)
}

// Work implements river.Worker.
func (w *NotifyAssignedWorker) Work(ctx context.Context, job *river.Job[NotifyAssignedArgs]) error {
	a := job.Args
	err := notify(ctx, w.Store, w.Notified, a.AssigneeID, func(s db.Stores) (*uuid.UUID, error) {
		return s.Notifications.NotifyAssignedID(ctx, a.TaskID, a.AssigneeID, a.Version)
	})
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// notify writes one notification for userID with write (which returns nil when there is nothing to
// write) and its webhook deliveries in one transaction, then tells the Notified hook.
func notify(ctx context.Context, store *db.DB, notified func(context.Context, uuid.UUID), userID uuid.UUID,
	write func(db.Stores) (*uuid.UUID, error)) error {
	wrote := false
	err := store.InTx(ctx, func(s db.Stores) error {
		id, err := write(s)
		if err != nil || id == nil {
			return err
		}
		wrote = true
		return enqueueDeliveries(ctx, s, userID, *id)
	})
	if err != nil {
		return err
	}
	if wrote && notified != nil {
		notified(ctx, userID)
	}
	return nil
}

// NotifyStatusChangedWorker writes the TASK_STATUS_CHANGED notification for the task's owner,
// unless the task is gone.
type NotifyStatusChangedWorker struct {
	river.WorkerDefaults[NotifyStatusChangedArgs]
	Store      *db.DB
	AfterWrite AfterWriteHook // nil in production
	Notified   func(ctx context.Context, userID uuid.UUID)
}

// Work implements river.Worker.
func (w *NotifyStatusChangedWorker) Work(ctx context.Context, job *river.Job[NotifyStatusChangedArgs]) error {
	a := job.Args
	err := notify(ctx, w.Store, w.Notified, a.OwnerID, func(s db.Stores) (*uuid.UUID, error) {
		return s.Notifications.NotifyStatusChangedID(ctx, a.TaskID, a.OwnerID, a.ActorID, a.Status, a.Version)
	})
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}

// DueRemindersWorker writes TASK_DUE_SOON reminders for tasks due within Window (see
// db.NotificationStore.RemindDueSoon: once per task and due date, in chunks).
type DueRemindersWorker struct {
	river.WorkerDefaults[DueRemindersArgs]
	Store      *db.DB
	Window     time.Duration
	Logger     *slog.Logger
	AfterWrite AfterWriteHook // nil in production
}

// Work implements river.Worker.
func (w *DueRemindersWorker) Work(ctx context.Context, job *river.Job[DueRemindersArgs]) error {
	n, err := w.Store.Stores().Notifications.RemindDueSoon(ctx, w.Window, 0)
	if n > 0 && w.Logger != nil {
		w.Logger.InfoContext(ctx, "due reminders written", "count", n, "window", w.Window.String())
	}
	if err != nil {
		return err
	}
	return runHook(ctx, w.AfterWrite, job.JobRow)
}
