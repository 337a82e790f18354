package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

// The workers of user-visible jobs are thin: each runs its kind's body through the domain's runner
// (internal/userjobs), which keeps the job's row, progress and checkpoints, and tells River what
// to do next.

// run is one attempt of the user-visible job jobID with body.
func run(ctx context.Context, r *userjobs.Runner, row *rivertype.JobRow, jobID uuid.UUID,
	body func(context.Context, *userjobs.Attempt) (any, *time.Time, error)) error {
	err := r.Run(ctx, userjobs.Try{Attempt: row.Attempt, MaxAttempts: row.MaxAttempts}, jobID, body)
	if errors.Is(err, userjobs.ErrStop) {
		return river.JobCancel(err) // failed for good: River must not retry it either
	}
	return err
}

// ExportTasksWorker writes a TASK_EXPORT job's file (userjobs.Runner.Export).
type ExportTasksWorker struct {
	river.WorkerDefaults[userjobs.ExportTasksArgs]
	Runner *userjobs.Runner
}

// Timeout implements river.Worker: a long job's attempt gets LONG_JOB_TIMEOUT.
func (w *ExportTasksWorker) Timeout(*river.Job[userjobs.ExportTasksArgs]) time.Duration {
	return w.Runner.Timeout()
}

// Work implements river.Worker.
func (w *ExportTasksWorker) Work(ctx context.Context, job *river.Job[userjobs.ExportTasksArgs]) error {
	return run(ctx, w.Runner, job.JobRow, job.Args.JobID, w.Runner.Export)
}

// TaskReportWorker computes a TASK_REPORT job (userjobs.Runner.Report).
type TaskReportWorker struct {
	river.WorkerDefaults[userjobs.TaskReportArgs]
	Runner *userjobs.Runner
}

// Timeout implements river.Worker: a long job's attempt gets LONG_JOB_TIMEOUT.
func (w *TaskReportWorker) Timeout(*river.Job[userjobs.TaskReportArgs]) time.Duration {
	return w.Runner.Timeout()
}

// Work implements river.Worker.
func (w *TaskReportWorker) Work(ctx context.Context, job *river.Job[userjobs.TaskReportArgs]) error {
	return run(ctx, w.Runner, job.JobRow, job.Args.JobID, w.Runner.Report)
}

// BulkUpdateWorker runs a BULK_UPDATE_TASKS job (userjobs.Runner.BulkUpdate).
type BulkUpdateWorker struct {
	river.WorkerDefaults[userjobs.BulkUpdateArgs]
	Runner *userjobs.Runner
}

// Timeout implements river.Worker: a long job's attempt gets LONG_JOB_TIMEOUT.
func (w *BulkUpdateWorker) Timeout(*river.Job[userjobs.BulkUpdateArgs]) time.Duration {
	return w.Runner.Timeout()
}

// Work implements river.Worker.
func (w *BulkUpdateWorker) Work(ctx context.Context, job *river.Job[userjobs.BulkUpdateArgs]) error {
	return run(ctx, w.Runner, job.JobRow, job.Args.JobID, w.Runner.BulkUpdate)
}

// BulkDeleteWorker runs a BULK_DELETE_TASKS job (userjobs.Runner.BulkDelete).
type BulkDeleteWorker struct {
	river.WorkerDefaults[userjobs.BulkDeleteArgs]
	Runner *userjobs.Runner
}

// Timeout implements river.Worker: a long job's attempt gets LONG_JOB_TIMEOUT.
func (w *BulkDeleteWorker) Timeout(*river.Job[userjobs.BulkDeleteArgs]) time.Duration {
	return w.Runner.Timeout()
}

// Work implements river.Worker.
func (w *BulkDeleteWorker) Work(ctx context.Context, job *river.Job[userjobs.BulkDeleteArgs]) error {
	return run(ctx, w.Runner, job.JobRow, job.Args.JobID, w.Runner.BulkDelete)
}

// KindPurgeJobs is the retention sweep's kind, as stored in river_job.kind.
const KindPurgeJobs = "purge_jobs"

// PurgeJobsArgs is the periodic sweep that deletes finished jobs after JOB_RETENTION and export
// files after EXPORT_RETENTION.
type PurgeJobsArgs struct{}

// Kind implements river.JobArgs.
func (PurgeJobsArgs) Kind() string { return KindPurgeJobs }

// PurgeJobsWorker runs the sweep (userjobs.Runner.Purge).
type PurgeJobsWorker struct {
	river.WorkerDefaults[PurgeJobsArgs]
	Runner    *userjobs.Runner
	Retention time.Duration
}

// Work implements river.Worker.
func (w *PurgeJobsWorker) Work(ctx context.Context, _ *river.Job[PurgeJobsArgs]) error {
	return w.Runner.Purge(ctx, w.Retention)
}

// KindPruneSync is the sweep of delta-sync history and idempotency keys, as stored in river_job.kind.
const KindPruneSync = "prune_sync"

// PruneSyncArgs is the periodic sweep that deletes task changes older than TASK_CHANGES_RETENTION
// (sync tokens that needed them then answer SYNC_TOKEN_EXPIRED) and idempotency keys past
// IDEMPOTENCY_KEY_TTL.
type PruneSyncArgs struct{}

// Kind implements river.JobArgs.
func (PruneSyncArgs) Kind() string { return KindPruneSync }

// PruneSyncWorker runs the sweep.
type PruneSyncWorker struct {
	river.WorkerDefaults[PruneSyncArgs]
	Tasks     *tasks.Service
	Store     *db.DB
	Retention time.Duration
	Logger    *slog.Logger
}

// Work implements river.Worker.
func (w *PruneSyncWorker) Work(ctx context.Context, _ *river.Job[PruneSyncArgs]) error {
	changes, err := w.Tasks.PruneChanges(ctx, w.Retention)
	if err != nil {
		return err
	}
	// Expired keys need no decision, only deleting: the store does it directly.
	keys, err := w.Store.Stores().Idempotency.PurgeExpired(ctx)
	if err != nil {
		return err
	}
	if changes > 0 || keys > 0 {
		w.Logger.InfoContext(ctx, "pruned task changes and idempotency keys", "changes", changes, "keys", keys)
	}
	return nil
}
