package userjobs

import (
	"context"
	"time"

	"github.com/taskgraph/taskgraph/db"
)

// reportWeeks is how many weeks of completions a report shows.
const reportWeeks = 12

// Report is the body of a TASK_REPORT attempt (Run): statistics about the tasks its user owns.
func (t *Runner) Report(ctx context.Context, a *Attempt) (any, *time.Time, error) {
	st, err := t.store.Stores().Tasks.Stats(ctx, a.Job.UserID, time.Now(), reportWeeks)
	if err != nil {
		return nil, nil, err
	}
	return reportOf(st), nil, nil
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

// defaultJobRetention applies when Purge is given no retention.
const defaultJobRetention = 7 * 24 * time.Hour

// Purge deletes the jobs that finished more than retention ago (JOB_RETENTION) and the export files
// past their expiry, and logs what it removed.
func (t *Runner) Purge(ctx context.Context, retention time.Duration) error {
	if retention <= 0 {
		retention = defaultJobRetention
	}
	jobs, files, err := t.store.Stores().BackgroundJobs.Purge(ctx, time.Now().Add(-retention))
	if err != nil {
		return err
	}
	if jobs > 0 || files > 0 {
		t.logger.InfoContext(ctx, "purged finished jobs and expired export files", "jobs", jobs, "files", files)
	}
	return nil
}
