// Package userjobs owns the jobs users request and follow — task exports, reports and bulk updates
// and deletes: validating a request, the per-user limit on active jobs, recording the job together
// with its queue entry in one transaction, cancelling, listing, results, signed download URLs and the
// live jobUpdated feed. Every job and its export file are their requester's alone (internal/policy).
// internal/jobs works them.
package userjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/validate"
)

// Service runs the job operations.
type Service struct {
	reads     *reads.Router
	maxActive int         // JOB_MAX_ACTIVE: a user's queued and running jobs (0: no cap)
	downloads *Signer     // nil: exports have no download URL
	bus       *events.Bus // nil: no live feed
}

// New builds the job service.
func New(r *reads.Router, maxActive int, downloads *Signer, bus *events.Bus) *Service {
	return &Service{reads: r, maxActive: maxActive, downloads: downloads, bus: bus}
}

// start records the job and enqueues its queue entry in one transaction (both or neither). The
// database announces the new job to the user's jobUpdated subscribers at commit.
func (s *Service) start(ctx context.Context, a policy.Actor, kind db.JobKind, params any) (*db.BackgroundJob, error) {
	var j *db.BackgroundJob
	err := s.reads.DB().InTx(ctx, func(st db.Stores) error {
		var err error
		if j, err = st.BackgroundJobs.Create(ctx, a.UserID, kind, params, s.maxActive); err != nil {
			return err
		}
		return st.Jobs.Enqueue(ctx, QueueEntry(j))
	})
	if err != nil {
		return nil, err
	}
	return j, nil
}

// RequestExport starts an export of the tasks the filter selects (the actor's own, or assigned to
// them) in format. Filter errors are named under "filter".
func (s *Service) RequestExport(ctx context.Context, a policy.Actor, format ExportFormat, filter *db.TaskFilter) (*db.BackgroundJob, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	f, err := tasks.ValidateFilter(filter)
	if err != nil {
		return nil, apperr.Under("filter", err)
	}
	return s.start(ctx, a, db.JobTaskExport, ExportParams{Format: format, Filter: f})
}

// RequestReport starts a report on the actor's tasks.
func (s *Service) RequestReport(ctx context.Context, a policy.Actor) (*db.BackgroundJob, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	return s.start(ctx, a, db.JobTaskReport, struct{}{})
}

// BulkPatchInput is a bulkUpdateTasks patch as the client sent it; only Set fields (and non-empty
// tag lists) change.
type BulkPatchInput struct {
	Status     *db.TaskStatus
	Priority   *db.Priority
	DueAt      db.Optional[*time.Time]
	AddTags    []string
	RemoveTags []string
	AssigneeID db.Optional[*uuid.UUID]
}

// validate checks the patch like updateTask's input (field names are the patch's own) and that a
// new assignee exists.
func (s *Service) validate(ctx context.Context, in BulkPatchInput) (*BulkPatch, error) {
	var (
		v apperr.Violations
		p BulkPatch
	)
	if in.Status != nil {
		p.Status = db.Optional[db.TaskStatus]{Set: true, Value: *in.Status}
	}
	if in.Priority != nil {
		p.Priority = db.Optional[db.Priority]{Set: true, Value: *in.Priority}
	}
	if in.DueAt.Set {
		validate.DueAt(&v, "dueAt", in.DueAt.Value)
		p.DueAt = in.DueAt
	}
	if in.AddTags != nil {
		p.AddTags = validate.Tags(&v, "addTags", in.AddTags)
	}
	if in.RemoveTags != nil {
		p.RemoveTags = validate.Tags(&v, "removeTags", in.RemoveTags)
	}
	for _, t := range p.RemoveTags {
		if slices.Contains(p.AddTags, t) {
			v.Add("removeTags", fmt.Sprintf("%q is in addTags too: add it or remove it, not both", t))
			break
		}
	}
	p.AssigneeID = in.AssigneeID
	if !p.Status.Set && !p.Priority.Set && !p.DueAt.Set && len(p.AddTags) == 0 && len(p.RemoveTags) == 0 && !p.AssigneeID.Set {
		v.Add(apperr.Whole, "give at least one field to change")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if id := p.AssigneeID.Value; id != nil {
		if _, err := s.reads.Primary().Users.ByID(ctx, *id); err != nil {
			if apperr.CodeOf(err) == apperr.NotFound {
				return nil, apperr.FieldError(apperr.NotFound, "assigneeId", "no user has this id")
			}
			return nil, err
		}
	}
	return &p, nil
}

// bulkFilter checks a bulk operation's filter under the policy (the actor's own tasks only); errors
// are named under "filter".
func bulkFilter(a policy.Actor, filter db.TaskFilter, at time.Time) (*db.TaskFilter, error) {
	scope, err := tasks.BulkScope(a, &filter, at)
	if err != nil {
		return nil, apperr.Under("filter", err)
	}
	return scope.Filter, nil
}

// RequestBulkUpdate starts applying patch to the actor's tasks that filter selects, as they are now.
// Patch errors are named under "patch", filter errors under "filter".
func (s *Service) RequestBulkUpdate(ctx context.Context, a policy.Actor, filter db.TaskFilter, patch BulkPatchInput) (*db.BackgroundJob, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	now := time.Now()
	f, err := bulkFilter(a, filter, now)
	if err != nil {
		return nil, err
	}
	p, err := s.validate(ctx, patch)
	if err != nil {
		return nil, apperr.Under("patch", err)
	}
	return s.start(ctx, a, db.JobBulkUpdateTasks, BulkParams{Filter: f, Patch: p, RequestedAt: now})
}

// RequestBulkDelete starts deleting the actor's tasks that filter selects, as they are now.
func (s *Service) RequestBulkDelete(ctx context.Context, a policy.Actor, filter db.TaskFilter) (*db.BackgroundJob, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	now := time.Now()
	f, err := bulkFilter(a, filter, now)
	if err != nil {
		return nil, err
	}
	return s.start(ctx, a, db.JobBulkDeleteTasks, BulkParams{Filter: f, RequestedAt: now})
}

// Get returns a job the actor may see; another user's answers like a missing one.
func (s *Service) Get(ctx context.Context, a policy.Actor, id uuid.UUID) (*db.BackgroundJob, error) {
	j, err := s.reads.Primary().BackgroundJobs.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := policy.CheckSeeOwned(a, j.UserID, "job"); err != nil {
		return nil, err
	}
	return j, nil
}

// Cancel cancels one of the actor's jobs if it has not finished, and returns it as it is then.
func (s *Service) Cancel(ctx context.Context, a policy.Actor, id uuid.UUID) (*db.BackgroundJob, error) {
	if _, err := s.Get(ctx, a, id); err != nil {
		return nil, err
	}
	return s.reads.Primary().BackgroundJobs.Cancel(ctx, id)
}

// List pages through the actor's jobs, newest first.
func (s *Service) List(ctx context.Context, a policy.Actor, page db.PageArgs) (*db.BackgroundJobConnection, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	return s.reads.For(ctx, a.UserID).BackgroundJobs.List(ctx, a.UserID, page)
}

// Count is a job list's totalCount (the list was authorized when it was read).
func (s *Service) Count(ctx context.Context, a policy.Actor, conn *db.BackgroundJobConnection) (int, error) {
	return s.reads.For(ctx, a.UserID).BackgroundJobs.Count(ctx, conn)
}

// Result decodes a succeeded job's result: *ExportResult, *TaskReport or
// *BulkResult; nil until the job succeeded.
func Result(j *db.BackgroundJob) (any, error) {
	if j.Status != db.JobSucceeded || len(j.Result) == 0 {
		return nil, nil
	}
	var (
		out any
		err error
	)
	switch j.Kind {
	case db.JobTaskExport:
		var res ExportResult
		err = json.Unmarshal(j.Result, &res)
		res.JobID = j.ID
		out = &res
	case db.JobTaskReport:
		var res TaskReport
		err = json.Unmarshal(j.Result, &res)
		out = &res
	case db.JobBulkUpdateTasks, db.JobBulkDeleteTasks:
		var res BulkResult
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

// ExportURL signs a download URL for an export that still exists (the URL never outlives the
// file). res came from Result of a job the actor could see.
func (s *Service) ExportURL(res *ExportResult, now time.Time) (string, time.Time, bool) {
	if s.downloads == nil || !now.Before(res.ExpiresAt) {
		return "", time.Time{}, false
	}
	u, exp := s.downloads.URL(res.JobID, now, res.ExpiresAt)
	return u, exp, true
}

// gapClockMargin widens a feed's catch-up read after a gap: finished_at is the database's clock,
// the read's start this process's.
const gapClockMargin = time.Minute

// Watch is the actor's live feed of their jobs (or of the one job only, which they must be able to
// see now), each sent as it is after every change, until ctx ends. After a gap in the events (a
// full buffer, a lost listener connection) it resends every job that may have changed unseen.
func (s *Service) Watch(ctx context.Context, a policy.Actor, only *uuid.UUID) (<-chan *db.BackgroundJob, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	if s.bus == nil {
		return nil, apperr.New(apperr.Internal, "live updates are not available")
	}
	var id uuid.UUID
	if only != nil {
		if _, err := s.Get(ctx, a, *only); err != nil {
			return nil, err
		}
		id = *only
	}
	sub := s.bus.Subscribe(func(ev events.Event) bool {
		return ev.Kind == events.KindJob && ev.HasUser(a.UserID) && (id == uuid.Nil || ev.ID == id)
	}, 0)
	since := time.Now()
	out := make(chan *db.BackgroundJob, 1)
	go func() {
		defer close(out)
		defer sub.Close()
		for {
			var batch []*db.BackgroundJob
			select {
			case <-ctx.Done():
				return
			case ev := <-sub.C:
				if j, err := s.Get(ctx, a, ev.ID); err == nil {
					batch = []*db.BackgroundJob{j}
				}
			case <-sub.Gaps:
				if id != uuid.Nil {
					if j, err := s.Get(ctx, a, id); err == nil {
						batch = []*db.BackgroundJob{j}
					}
					break
				}
				now := time.Now()
				changed, err := s.reads.Primary().BackgroundJobs.ActiveOrFinishedSince(ctx, a.UserID, since.Add(-gapClockMargin))
				if err == nil {
					batch, since = changed, now
				}
			}
			for _, j := range batch {
				select {
				case out <- j:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// Download is an export file a signed URL opened: what the download route streams.
type Download struct {
	JobID  uuid.UUID
	Result *ExportResult
	// MadeAt is when the file was finished (it names the downloaded file).
	MadeAt time.Time
}

// OpenDownload checks a download URL's expiry and signature (the URL is the credential) and
// returns the export file it names: FORBIDDEN for a link that is altered or expired (ErrExpired
// wrapped for the latter), NOT_FOUND for a job that is not a finished export or whose file is gone.
func (s *Service) OpenDownload(ctx context.Context, id uuid.UUID, expires, signature string, now time.Time) (*Download, error) {
	if s.downloads == nil {
		return nil, apperr.New(apperr.NotFound, "export not found")
	}
	if err := s.downloads.Verify(id, expires, signature, now); err != nil {
		msg := "this download link is not valid: query the job again for a fresh downloadUrl"
		if errors.Is(err, ErrExpired) {
			msg = "this download link has expired: query the job again for a fresh downloadUrl"
		}
		return nil, fmt.Errorf("%w: %w", apperr.New(apperr.Forbidden, "%s", msg), err)
	}
	j, err := s.reads.Primary().BackgroundJobs.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.Kind != db.JobTaskExport || j.Status != db.JobSucceeded || j.ExpiresAt == nil || !now.Before(*j.ExpiresAt) {
		return nil, apperr.New(apperr.NotFound, "export not found")
	}
	var res ExportResult
	if err := json.Unmarshal(j.Result, &res); err != nil {
		return nil, fmt.Errorf("job %s result: %w", id, err)
	}
	at := j.CreatedAt
	if j.FinishedAt != nil {
		at = *j.FinishedAt
	}
	return &Download{JobID: id, Result: &res, MadeAt: at}, nil
}

// ChunkSizes lists the sizes of an opened download's chunks, in order (for a ranged download).
func (s *Service) ChunkSizes(ctx context.Context, d *Download) ([]int, error) {
	return s.reads.Primary().BackgroundJobs.ChunkSizes(ctx, d.JobID)
}

// ReadChunk reads chunk seq of an opened download into buf (reused when large enough); ok is false
// when the chunk is gone (the file expired and was purged meanwhile).
func (s *Service) ReadChunk(ctx context.Context, d *Download, seq int, buf []byte) (_ []byte, ok bool, err error) {
	return s.reads.Primary().BackgroundJobs.ReadChunkInto(ctx, d.JobID, seq, buf)
}
