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

	"github.com/riverqueue/river"
)

// KindDueReminders is the periodic due-reminder sweep's kind, as stored in river_job.kind.
const KindDueReminders = "due_reminders"

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
