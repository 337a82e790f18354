package db

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// TaskStats is what the task report shows about one owner's tasks, as of At.
type TaskStats struct {
	At         time.Time
	Total      int
	ByStatus   map[TaskStatus]int
	ByPriority map[Priority]int
	Overdue    int
	// CompletedPerWeek[i] counts the tasks moved to DONE in week WeekStarts[i] (Monday 00:00 UTC),
	// oldest first, the current week last.
	WeekStarts       []time.Time
	CompletedPerWeek []int
}

// WeekStart is the Monday 00:00 UTC that starts t's week.
func WeekStart(t time.Time) time.Time {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
}

// Stats counts ownerID's tasks by status and priority, the overdue ones (not DONE, due before at)
// and the completions in each of the last weeks weeks. Two index-served statements
// (tasks_owner_status_idx and tasks_owner_completed_at_idx).
func (s TaskStore) Stats(ctx context.Context, ownerID uuid.UUID, at time.Time, weeks int) (*TaskStats, error) {
	st := &TaskStats{At: at, ByStatus: map[TaskStatus]int{}, ByPriority: map[Priority]int{}}
	var todo, inProgress, done, low, medium, high, urgent int
	err := s.q.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE status = 'TODO'), count(*) FILTER (WHERE status = 'IN_PROGRESS'),
		       count(*) FILTER (WHERE status = 'DONE'),
		       count(*) FILTER (WHERE priority = 0), count(*) FILTER (WHERE priority = 1),
		       count(*) FILTER (WHERE priority = 2), count(*) FILTER (WHERE priority = 3),
		       count(*) FILTER (WHERE status <> 'DONE' AND due_at < $2)
		FROM tasks WHERE owner_id = $1`, ownerID, at).
		Scan(&st.Total, &todo, &inProgress, &done, &low, &medium, &high, &urgent, &st.Overdue)
	if err != nil {
		return nil, mapError(err, "task statistics")
	}
	st.ByStatus[StatusTodo], st.ByStatus[StatusInProgress], st.ByStatus[StatusDone] = todo, inProgress, done
	st.ByPriority[PriorityLow], st.ByPriority[PriorityMedium] = low, medium
	st.ByPriority[PriorityHigh], st.ByPriority[PriorityUrgent] = high, urgent

	first := WeekStart(at).AddDate(0, 0, -7*(weeks-1))
	st.WeekStarts = make([]time.Time, weeks)
	st.CompletedPerWeek = make([]int, weeks)
	for i := range st.WeekStarts {
		st.WeekStarts[i] = first.AddDate(0, 0, 7*i)
	}
	rows, err := s.q.Query(ctx, `
		SELECT floor(extract(epoch FROM completed_at - $2) / 604800)::int AS week, count(*)
		FROM tasks WHERE owner_id = $1 AND completed_at >= $2 AND completed_at < $3
		GROUP BY 1`, ownerID, first, WeekStart(at).AddDate(0, 0, 7))
	if err != nil {
		return nil, mapError(err, "task statistics")
	}
	defer rows.Close()
	for rows.Next() {
		var week, n int
		if err := rows.Scan(&week, &n); err != nil {
			return nil, mapError(err, "task statistics")
		}
		if week >= 0 && week < weeks {
			st.CompletedPerWeek[week] = n
		}
	}
	return st, mapError(rows.Err(), "task statistics")
}
