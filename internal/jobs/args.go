// Package jobs is Taskgraph's background job queue: the job kinds, their workers and the River
// client that inserts and works them. Jobs live in PostgreSQL (River's river_job table), are inserted
// in the same transaction as the write that causes them (db.Stores.Jobs inside db.DB.InTx), are
// retried with backoff when they fail, and may run on any process: `taskgraph serve` works them
// in-process unless JOBS_IN_PROCESS=false, and `taskgraph worker` processes work them on their own.
//
// Every worker is idempotent: a job may run more than once (a retry after an error, or after its
// process died mid-job and River rescued it), so each write carries a unique key that makes a
// repeat a no-op.
package jobs

import (
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
)

// Job kinds, as stored in river_job.kind.
const (
	KindNotifyAssigned      = "notify_assigned"
	KindNotifyStatusChanged = "notify_status_changed"
	KindDueReminders        = "due_reminders"
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

// DueRemindersArgs is the periodic sweep for tasks due soon; it carries nothing, the window is the
// worker's (DUE_SOON_WINDOW).
type DueRemindersArgs struct{}

// Kind implements river.JobArgs.
func (DueRemindersArgs) Kind() string { return KindDueReminders }

// dueRemindersInsertOpts: one sweep per interval, even when a leader change makes two processes
// schedule it; a failed sweep is retried a few times, and the next one catches up anyway.
func dueRemindersInsertOpts(interval time.Duration) *river.InsertOpts {
	return &river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByPeriod: interval}}
}

// Notifications returns the jobs a task write causes, to enqueue in the write's transaction:
//   - TASK_ASSIGNED for the new assignee when the assignee changed to a user other than the actor;
//   - TASK_STATUS_CHANGED for the owner when the status changed and the actor is not the owner.
//
// before is the task as LockBefore read it (nil for a new task); after is the written row.
func Notifications(actorID uuid.UUID, before *db.TaskBefore, after *db.Task) []db.Job {
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
