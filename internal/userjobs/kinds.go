package userjobs

import (
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
)

// User-visible jobs (GraphQL Job): exports, reports and bulk operations. Each has a row in the jobs
// table (db.BackgroundJob: status, progress, checkpoint, result), created by the mutation together
// with its River queue entry below, which names only the row: everything the job needs is in the
// row's params, fixed at request time.

// River job kinds of the user-visible jobs.
const (
	KindExportTasks = "export_tasks"
	KindTaskReport  = "task_report"
	KindBulkUpdate  = "bulk_update_tasks"
	KindBulkDelete  = "bulk_delete_tasks"
)

// userJobMaxAttempts bounds the attempts of a user-visible job. Each attempt resumes from the last
// checkpoint, so retries cost only the chunk that failed.
const userJobMaxAttempts = 5

// userJobInsertOpts: one queue entry per job row (a repeated enqueue is dropped).
func userJobInsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: userJobMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// ExportTasksArgs runs the TASK_EXPORT job JobID.
type ExportTasksArgs struct {
	JobID uuid.UUID `json:"job_id"`
}

// Kind implements river.JobArgs.
func (ExportTasksArgs) Kind() string { return KindExportTasks }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ExportTasksArgs) InsertOpts() river.InsertOpts { return userJobInsertOpts() }

// TaskReportArgs runs the TASK_REPORT job JobID.
type TaskReportArgs struct {
	JobID uuid.UUID `json:"job_id"`
}

// Kind implements river.JobArgs.
func (TaskReportArgs) Kind() string { return KindTaskReport }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (TaskReportArgs) InsertOpts() river.InsertOpts { return userJobInsertOpts() }

// BulkUpdateArgs runs the BULK_UPDATE_TASKS job JobID.
type BulkUpdateArgs struct {
	JobID uuid.UUID `json:"job_id"`
}

// Kind implements river.JobArgs.
func (BulkUpdateArgs) Kind() string { return KindBulkUpdate }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (BulkUpdateArgs) InsertOpts() river.InsertOpts { return userJobInsertOpts() }

// BulkDeleteArgs runs the BULK_DELETE_TASKS job JobID.
type BulkDeleteArgs struct {
	JobID uuid.UUID `json:"job_id"`
}

// Kind implements river.JobArgs.
func (BulkDeleteArgs) Kind() string { return KindBulkDelete }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (BulkDeleteArgs) InsertOpts() river.InsertOpts { return userJobInsertOpts() }

// QueueEntry is the River job that runs the user-visible job j; enqueue it in the transaction that
// created j.
func QueueEntry(j *db.BackgroundJob) db.Job {
	switch j.Kind {
	case db.JobTaskExport:
		return ExportTasksArgs{JobID: j.ID}
	case db.JobTaskReport:
		return TaskReportArgs{JobID: j.ID}
	case db.JobBulkUpdateTasks:
		return BulkUpdateArgs{JobID: j.ID}
	case db.JobBulkDeleteTasks:
		return BulkDeleteArgs{JobID: j.ID}
	}
	panic("jobs: no queue entry for job kind " + string(j.Kind))
}

// ExportFormat is an export's file format; the GraphQL ExportFormat enum is bound to it.
type ExportFormat string

const (
	ExportCSV  ExportFormat = "CSV"
	ExportJSON ExportFormat = "JSON"
)

// ExportParams is what requestTaskExport asked for.
type ExportParams struct {
	Format ExportFormat `json:"format"`
	// Filter as given (AssignedToMe true exports the tasks assigned to the user).
	Filter *db.TaskFilter `json:"filter,omitempty"`
}

// ExportResult is a finished export (GraphQL TaskExport). The download URL is signed when asked for.
type ExportResult struct {
	Format    ExportFormat `json:"format"`
	TaskCount int32        `json:"taskCount"`
	ByteSize  int32        `json:"byteSize"`
	// Chunks is how many export_chunks rows hold the file.
	Chunks    int32     `json:"chunks"`
	ExpiresAt time.Time `json:"expiresAt"`
	// JobID is the job the file belongs to (set by the resolver, for signing its URL).
	JobID uuid.UUID `json:"-"`
}

// IsJobResult marks a member of the GraphQL JobResult union.
func (ExportResult) IsJobResult() {}

// TaskReport is a finished report (GraphQL TaskReport).
type TaskReport struct {
	GeneratedAt      time.Time           `json:"generatedAt"`
	TotalCount       int32               `json:"totalCount"`
	ByStatus         []TaskStatusCount   `json:"byStatus"`
	ByPriority       []TaskPriorityCount `json:"byPriority"`
	OverdueCount     int32               `json:"overdueCount"`
	CompletedPerWeek []WeeklyCount       `json:"completedPerWeek"`
}

// IsJobResult marks a member of the GraphQL JobResult union.
func (TaskReport) IsJobResult() {}

// TaskStatusCount is one status of a report.
type TaskStatusCount struct {
	Status db.TaskStatus `json:"status"`
	Count  int32         `json:"count"`
}

// TaskPriorityCount is one priority of a report.
type TaskPriorityCount struct {
	Priority db.Priority `json:"priority"`
	Count    int32       `json:"count"`
}

// WeeklyCount is one week of a report (weeks start Monday 00:00 UTC).
type WeeklyCount struct {
	WeekStart time.Time `json:"weekStart"`
	Count     int32     `json:"count"`
}

// BulkParams is what bulkUpdateTasks or bulkDeleteTasks asked for. Only tasks the user owns that
// match Filter and were created at or before RequestedAt are touched.
type BulkParams struct {
	Filter      *db.TaskFilter `json:"filter,omitempty"`
	Patch       *BulkPatch     `json:"patch,omitempty"` // bulkUpdateTasks only
	RequestedAt time.Time      `json:"requestedAt"`
}

// BulkPatch is a validated BulkTaskPatch; only Set fields change (db.Optional).
type BulkPatch struct {
	Status     db.Optional[db.TaskStatus] `json:"status"`
	Priority   db.Optional[db.Priority]   `json:"priority"`
	DueAt      db.Optional[*time.Time]    `json:"dueAt"`
	AddTags    []string                   `json:"addTags,omitempty"`
	RemoveTags []string                   `json:"removeTags,omitempty"`
	AssigneeID db.Optional[*uuid.UUID]    `json:"assigneeId"`
}

// BulkResult is a finished bulk operation (GraphQL BulkTasksResult).
type BulkResult struct {
	MatchedCount  int32 `json:"matchedCount"`
	AffectedCount int32 `json:"affectedCount"`
}

// IsJobResult marks a member of the GraphQL JobResult union.
func (BulkResult) IsJobResult() {}

// Store is the patch as the store applies it.
func (p *BulkPatch) Store() db.BulkTaskPatch {
	return db.BulkTaskPatch{
		Status: p.Status, Priority: p.Priority, DueAt: p.DueAt,
		AddTags: p.AddTags, RemoveTags: p.RemoveTags, AssigneeID: p.AssigneeID,
	}
}
