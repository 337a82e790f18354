package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
)

// reportWeeks is how many weeks of completions a report shows.
const reportWeeks = 12

// TaskReportWorker computes a TASK_REPORT job: statistics about the tasks its user owns.
type TaskReportWorker struct {
	river.WorkerDefaults[TaskReportArgs]
	tracker *tracker
}

// Timeout implements river.Worker: a long job's attempt gets LONG_JOB_TIMEOUT.
func (w *TaskReportWorker) Timeout(*river.Job[TaskReportArgs]) time.Duration {
	return w.tracker.timeout
}

// Work implements river.Worker.
func (w *TaskReportWorker) Work(ctx context.Context, job *river.Job[TaskReportArgs]) error {
	return w.tracker.run(ctx, job.JobRow, job.Args.JobID, func(ctx context.Context, a *Attempt) (any, *time.Time, error) {
		st, err := w.tracker.store.Stores().Tasks.Stats(ctx, a.Job.UserID, time.Now(), reportWeeks)
		if err != nil {
			return nil, nil, err
		}
		return reportOf(st), nil, nil
	})
}

// reportOf shapes statistics as the GraphQL TaskReport: every status and priority, zeros included.
func reportOf(st *db.TaskStats) TaskReport {
	r := TaskReport{GeneratedAt: st.At.UTC(), TotalCount: int32(st.Total), OverdueCount: int32(st.Overdue)}
	for _, s := range []db.TaskStatus{db.StatusTodo, db.StatusInProgress, db.StatusDone} {
		r.ByStatus = append(r.ByStatus, TaskStatusCount{Status: s, Count: int32(st.ByStatus[s])})
	}
	for _, p := range []db.Priority{db.PriorityLow, db.PriorityMedium, db.PriorityHigh, db.PriorityUrgent} {
		r.ByPriority = append(r.ByPriority, TaskPriorityCount{Priority: p, Count: int32(st.ByPriority[p])})
	}
	for i, start := range st.WeekStarts {
		r.CompletedPerWeek = append(r.CompletedPerWeek, WeeklyCount{WeekStart: start, Count: int32(st.CompletedPerWeek[i])})
	}
	return r
}

// PurgeJobsArgs is the periodic sweep that deletes finished jobs after JOB_RETENTION and export
// files after EXPORT_RETENTION.
type PurgeJobsArgs struct{}

// Kind implements river.JobArgs.
func (PurgeJobsArgs) Kind() string { return KindPurgeJobs }

// PurgeJobsWorker runs the sweep.
type PurgeJobsWorker struct {
	river.WorkerDefaults[PurgeJobsArgs]
	tracker   *tracker
	Retention time.Duration
}

// Work implements river.Worker.
func (w *PurgeJobsWorker) Work(ctx context.Context, _ *river.Job[PurgeJobsArgs]) error {
	retention := w.Retention
	if retention <= 0 {
		retention = 7 * 24 * time.Hour
	}
	jobs, files, err := w.tracker.store.Stores().BackgroundJobs.Purge(ctx, time.Now().Add(-retention))
	if err != nil {
		return err
	}
	if jobs > 0 || files > 0 {
		w.tracker.logger.InfoContext(ctx, "purged finished jobs and expired export files", "jobs", jobs, "files", files)
	}
	return nil
}
