package resolvers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/jobs"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// startJob records a user-visible job and enqueues its queue entry in one transaction (both or
// neither), then tells the user's jobUpdated subscriptions.
func (r *Resolver) startJob(ctx context.Context, userID uuid.UUID, kind db.JobKind, params any) (*db.BackgroundJob, error) {
	var j *db.BackgroundJob
	err := r.DB.InTx(ctx, func(s db.Stores) error {
		var err error
		if j, err = s.BackgroundJobs.Create(ctx, userID, kind, params, r.JobMaxActive); err != nil {
			return err
		}
		return s.Jobs.Enqueue(ctx, jobs.QueueEntry(j))
	})
	if err != nil {
		return nil, err
	}
	r.Events.PublishJob(ctx, userID, j.ID)
	return j, nil
}

// bulkFilter validates the filter of a bulk operation: the user's own tasks only.
func bulkFilter(f db.TaskFilter) (*db.TaskFilter, error) {
	if f.AssignedToMe != nil && *f.AssignedToMe {
		return nil, apperr.Invalid("filter.assignedToMe", "bulk operations act on your own tasks only: leave assignedToMe out or false")
	}
	f.AssignedToMe = nil
	if err := validateTaskFilter(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// bulkPatch validates a BulkTaskPatch like updateTask's input and checks that a new assignee exists.
func (r *Resolver) bulkPatch(ctx context.Context, in model.BulkTaskPatch) (*jobs.BulkPatch, error) {
	var v apperr.Violations
	var p jobs.BulkPatch
	if in.Status != nil {
		p.Status = db.Optional[db.TaskStatus]{Set: true, Value: *in.Status}
	}
	if in.Priority != nil {
		p.Priority = db.Optional[db.Priority]{Set: true, Value: *in.Priority}
	}
	if due, set := in.DueAt.ValueOK(); set {
		dueAt(&v, "patch.dueAt", due)
		p.DueAt = db.Optional[*time.Time]{Set: true, Value: due}
	}
	if in.AddTags != nil {
		p.AddTags = tags(&v, "patch.addTags", in.AddTags)
	}
	if in.RemoveTags != nil {
		p.RemoveTags = tags(&v, "patch.removeTags", in.RemoveTags)
	}
	for _, t := range p.RemoveTags {
		if slices.Contains(p.AddTags, t) {
			v.Add("patch.removeTags", fmt.Sprintf("%q is in addTags too: add it or remove it, not both", t))
			break
		}
	}
	var id *uuid.UUID
	if gid, set := in.AssigneeID.ValueOK(); set {
		if gid != nil {
			kind, uid, err := globalid.Decode("patch.assigneeId", *gid)
			if err != nil {
				return nil, err
			}
			if kind != globalid.KindUser {
				return nil, apperr.FieldError(apperr.NotFound, "patch.assigneeId", "no user has this id")
			}
			id = &uid
		}
		p.AssigneeID = db.Optional[*uuid.UUID]{Set: true, Value: id}
	}
	if !p.Status.Set && !p.Priority.Set && !p.DueAt.Set && len(p.AddTags) == 0 && len(p.RemoveTags) == 0 && !p.AssigneeID.Set {
		v.Add("patch", "give at least one field to change")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if id != nil {
		if _, err := r.DB.Stores().Users.ByID(ctx, *id); err != nil {
			if apperr.CodeOf(err) == apperr.NotFound {
				return nil, apperr.FieldError(apperr.NotFound, "patch.assigneeId", "no user has this id")
			}
			return nil, err
		}
	}
	return &p, nil
}

// jobResult decodes a succeeded job's result for the JobResult union; nil until it succeeded.
func jobResult(j *db.BackgroundJob) (model.JobResult, error) {
	if j.Status != db.JobSucceeded || len(j.Result) == 0 {
		return nil, nil
	}
	var (
		out model.JobResult
		err error
	)
	switch j.Kind {
	case db.JobTaskExport:
		var res jobs.ExportResult
		err = json.Unmarshal(j.Result, &res)
		res.JobID = j.ID
		out = &res
	case db.JobTaskReport:
		var res jobs.TaskReport
		err = json.Unmarshal(j.Result, &res)
		out = &res
	case db.JobBulkUpdateTasks, db.JobBulkDeleteTasks:
		var res jobs.BulkResult
		err = json.Unmarshal(j.Result, &res)
		out = &res
	default:
		return nil, fmt.Errorf("job %s: no result type for kind %s", j.ID, j.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("job %s result: %w", j.ID, err)
	}
	return out, nil
}

// exportURL signs a download URL for an export that still exists; the URL never outlives the file.
func (r *Resolver) exportURL(res *jobs.ExportResult, now time.Time) (string, time.Time, bool) {
	if r.Downloads == nil || !now.Before(res.ExpiresAt) {
		return "", time.Time{}, false
	}
	u, exp := r.Downloads.URL(res.JobID, now, res.ExpiresAt)
	return u, exp, true
}

// gapClockMargin widens a job subscription's catch-up read after a gap: finished_at is the
// database's clock, the read's start this process's.
const gapClockMargin = time.Minute

// jobSource sends the viewer's jobs (or the one job `only`) as they are now: for every event about
// one, and after a gap in the events, every job that may have changed unseen.
type jobSource struct {
	r     *Resolver
	only  uuid.UUID // uuid.Nil: all of the viewer's jobs
	since time.Time // jobs that finished before it were sent (or were not missed)
}

func (s *jobSource) next(ctx context.Context, v policy.Actor, ev events.Event) ([]*db.BackgroundJob, error) {
	if ev.Kind == events.KindGap {
		if s.only == uuid.Nil {
			now := time.Now()
			changed, err := s.r.DB.Stores().BackgroundJobs.ActiveOrFinishedSince(ctx, v.UserID, s.since.Add(-gapClockMargin))
			if err != nil {
				return nil, fmt.Errorf("reload jobs after a gap: %w", err)
			}
			s.since = now
			return changed, nil
		}
		ev.ID = s.only
	}
	j, err := s.r.DB.Stores().BackgroundJobs.Get(ctx, v.UserID, ev.ID)
	if apperr.CodeOf(err) == apperr.NotFound {
		return nil, nil // deleted meanwhile (retention): nothing to show
	}
	if err != nil {
		return nil, fmt.Errorf("reload job %s: %w", ev.ID, err)
	}
	return []*db.BackgroundJob{j}, nil
}
