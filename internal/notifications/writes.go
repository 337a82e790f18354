package notifications

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

// Deliverer enqueues the deliveries of written notifications (webhooks, email), inside the
// transaction that wrote them, so that they exist if and only if the notifications do.
// internal/jobs implements it.
type Deliverer interface {
	Enqueue(ctx context.Context, st db.Stores, written []db.NotificationRef) error
}

// WithDeliveries returns the service writing notifications with their deliveries through d (the
// workers' service; the API's writes none).
func (s *Service) WithDeliveries(d Deliverer) *Service {
	c := *s
	c.deliver = d
	return &c
}

// write writes one notification with write (which answers nil when there is nothing to write: the
// task is gone, or no longer assigned to that user) and its deliveries, in one transaction. Live
// subscribers hear of it from the database (the notifications trigger announces it at commit).
func (s *Service) write(ctx context.Context, recipient uuid.UUID, write func(st db.Stores) (*uuid.UUID, error)) error {
	return s.reads.DB().InTx(ctx, func(st db.Stores) error {
		id, err := write(st)
		if err != nil || id == nil {
			return err
		}
		return s.enqueue(ctx, st, []db.NotificationRef{{ID: *id, UserID: recipient}})
	})
}

func (s *Service) enqueue(ctx context.Context, st db.Stores, written []db.NotificationRef) error {
	if s.deliver == nil || len(written) == 0 {
		return nil
	}
	return s.deliver.Enqueue(ctx, st, written)
}

// WriteAssigned writes the TASK_ASSIGNED notification a NotifyAssigned job stands for (once per
// change: a repeat writes nothing), unless the task is gone or no longer assigned to that user.
func (s *Service) WriteAssigned(ctx context.Context, a NotifyAssignedArgs) error {
	return s.write(ctx, a.AssigneeID, func(st db.Stores) (*uuid.UUID, error) {
		return st.Notifications.NotifyAssignedID(ctx, a.TaskID, a.AssigneeID, a.Version)
	})
}

// WriteStatusChanged writes the TASK_STATUS_CHANGED notification for the task's owner, unless the
// task is gone.
func (s *Service) WriteStatusChanged(ctx context.Context, a NotifyStatusChangedArgs) error {
	return s.write(ctx, a.OwnerID, func(st db.Stores) (*uuid.UUID, error) {
		return st.Notifications.NotifyStatusChangedID(ctx, a.TaskID, a.OwnerID, a.ActorID, a.Status, a.Version)
	})
}

// RemindDue writes TASK_DUE_SOON reminders for the open tasks due within window (once per task and
// due date), chunk tasks per transaction, each with its deliveries, and returns how many it wrote.
// On an error the chunks before it stay committed; a retry finds only what is left.
func (s *Service) RemindDue(ctx context.Context, window time.Duration, chunk int) (int, error) {
	sweep, err := s.reads.Primary().Notifications.StartDueSweep(ctx, window, chunk)
	if err != nil {
		return 0, err
	}
	total := 0
	for !sweep.Done() {
		var written []db.NotificationRef
		err := s.reads.DB().InTx(ctx, func(st db.Stores) error {
			var err error
			if written, err = st.Notifications.RemindDueChunk(ctx, sweep); err != nil {
				return err
			}
			return s.enqueue(ctx, st, written)
		})
		if err != nil {
			return total, err
		}
		total += len(written)
	}
	return total, nil
}
