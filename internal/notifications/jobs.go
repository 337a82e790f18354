package notifications

// The jobs a task change causes. The tasks domain enqueues them in the write's own transaction
// (ForTaskChange); internal/jobs works them, writing the notification and its deliveries.

import (
	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
)

// Job kinds, as stored in river_job.kind.
const (
	KindNotifyAssigned      = "notify_assigned"
	KindNotifyStatusChanged = "notify_status_changed"
)

// notifyMaxAttempts bounds the retries of a notification job (River's backoff is attempt^4 seconds,
// so the last of 10 attempts comes about 4 hours after the first).
const notifyMaxAttempts = 10

// NotifyAssignedArgs: the task was assigned to AssigneeID by someone else; Version is the task's
// version after the change (it names the change, so each assignment notifies once).
type NotifyAssignedArgs struct {
	TaskID     uuid.UUID `json:"task_id"`
	AssigneeID uuid.UUID `json:"assignee_id"`
	Version    int32     `json:"version"`
}

// Kind implements river.JobArgs.
func (NotifyAssignedArgs) Kind() string { return KindNotifyAssigned }

// InsertOpts makes the job unique per change (a repeated enqueue of the same change is dropped).
func (NotifyAssignedArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: notifyMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// NotifyStatusChangedArgs: ActorID (the assignee) moved OwnerID's task to Status, making it Version.
type NotifyStatusChangedArgs struct {
	TaskID  uuid.UUID     `json:"task_id"`
	OwnerID uuid.UUID     `json:"owner_id"`
	ActorID uuid.UUID     `json:"actor_id"`
	Status  db.TaskStatus `json:"status"`
	Version int32         `json:"version"`
}

// Kind implements river.JobArgs.
func (NotifyStatusChangedArgs) Kind() string { return KindNotifyStatusChanged }

// InsertOpts makes the job unique per change.
func (NotifyStatusChangedArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: notifyMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ForTaskChange returns the jobs a task write causes, to enqueue in the write's transaction:
//   - TASK_ASSIGNED for the new assignee when the assignee changed to a user other than the actor;
//   - TASK_STATUS_CHANGED for the owner when the status changed and the actor is not the owner.
//
// before is the task as it was (locked) before the write (nil for a new task); after is the written row.
func ForTaskChange(actorID uuid.UUID, before *db.TaskBefore, after *db.Task) []db.Job {
	var out []db.Job
	var prevAssignee *uuid.UUID
	prevStatus := after.Status
	if before != nil {
		prevAssignee, prevStatus = before.AssigneeID, before.Status
	}
	if a := after.AssigneeID; a != nil && *a != actorID && (prevAssignee == nil || *prevAssignee != *a) {
		out = append(out, NotifyAssignedArgs{TaskID: after.ID, AssigneeID: *a, Version: after.Version})
	}
	if before != nil && after.Status != prevStatus && actorID != after.OwnerID {
		out = append(out, NotifyStatusChangedArgs{
			TaskID: after.ID, OwnerID: after.OwnerID, ActorID: actorID, Status: after.Status, Version: after.Version,
		})
	}
	return out
}
