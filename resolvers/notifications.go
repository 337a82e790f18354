package resolvers

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/loaders"
)

// createTaskNotifying creates the task and, in the same transaction, enqueues the notification its
// assignee gets (when assigned to someone other than the creator): both commit or neither does.
func (r *Resolver) createTaskNotifying(ctx context.Context, actorID uuid.UUID, nt db.NewTask) (*db.Task, error) {
	var t *db.Task
	err := r.DB.InTx(ctx, func(s db.Stores) error {
		var err error
		if t, err = s.Tasks.Create(ctx, actorID, nt); err != nil {
			return err
		}
		return s.Jobs.Enqueue(ctx, jobs.Notifications(actorID, nil, t)...)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// updateTaskNotifying applies the patch and, in the same transaction, enqueues the notifications the
// change causes (a new assignee; a status change by someone other than the owner). A failed update
// (NOT_FOUND, FORBIDDEN, CONFLICT) enqueues nothing.
func (r *Resolver) updateTaskNotifying(ctx context.Context, actorID, taskID uuid.UUID, patch db.TaskPatch, expected *int32) (*db.Task, error) {
	var t *db.Task
	err := r.DB.InTx(ctx, func(s db.Stores) error {
		var (
			before *db.TaskBefore
			err    error
		)
		// Only status and assignee changes notify anyone: other updates skip the extra read.
		if patch.Status.Set || patch.AssigneeID.Set {
			if before, err = s.Tasks.LockBefore(ctx, actorID, taskID); err != nil {
				return err
			}
		}
		if t, err = s.Tasks.Update(ctx, actorID, taskID, patch, expected); err != nil {
			return err
		}
		if before == nil {
			return nil
		}
		return s.Jobs.Enqueue(ctx, jobs.Notifications(actorID, before, t)...)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// maxMarkReadIDs bounds markNotificationsRead's ids, like nodes(ids).
const maxMarkReadIDs = db.MaxPageSize

// markReadInput validates markNotificationsRead's input. Ids of anything but a notification are
// ignored like the ids of other users' notifications: the answer never tells whether they exist.
func markReadInput(in model.MarkNotificationsReadInput) (ids []uuid.UUID, all bool, err error) {
	all = in.All != nil && *in.All
	if all {
		return nil, true, nil
	}
	var v apperr.Violations
	if in.Ids == nil {
		v.Add("input.ids", "give ids, or all: true")
	}
	if len(in.Ids) > maxMarkReadIDs {
		v.Add("input.ids", "at most 100 ids per call (or all: true)")
	}
	if err := v.Err(); err != nil {
		return nil, false, err
	}
	for _, gid := range in.Ids {
		kind, id, err := globalid.Decode("input.ids", gid)
		if err != nil {
			return nil, false, err
		}
		if kind == globalid.KindNotification {
			ids = append(ids, id)
		}
	}
	return ids, false, nil
}

// notificationTask is the task a notification is about, or null when it is gone or the viewer may
// no longer see it (reassigned): such a task answers exactly like a deleted one.
func (r *Resolver) notificationTask(ctx context.Context, n *db.Notification) (*db.Task, error) {
	if n.TaskID == nil {
		return nil, nil
	}
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	t, err := loaders.For(ctx, r.DB).TaskByID.Load(ctx, *n.TaskID)()
	if errors.Is(err, apperr.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !t.VisibleTo(v.UserID) {
		return nil, nil
	}
	return t, nil
}

// notificationMessage renders a notification's one-line summary (see db.Notification.Message).
func notificationMessage(n *db.Notification) string { return n.Message() }
