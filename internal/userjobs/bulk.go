package userjobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/tasks"
)

// bulkCheckpoint is where a bulk operation resumes: after the last task key of its last committed
// chunk, with the counts so far. It commits with that chunk's writes (Attempt.Chunk).
type bulkCheckpoint struct {
	After    *db.TaskKey `json:"after,omitempty"`
	Matched  int         `json:"matched"`
	Affected int         `json:"affected"`
}

// BulkUpdate is the body of a BULK_UPDATE_TASKS attempt (Run): the patch applied to every task of
// the scope, a chunk of db.BulkChunkSize tasks per transaction.
func (t *Runner) BulkUpdate(ctx context.Context, a *Attempt) (any, *time.Time, error) {
	return runBulk(ctx, t, a, true)
}

// BulkDelete is the body of a BULK_DELETE_TASKS attempt: every task of the scope deleted, a chunk
// per transaction.
func (t *Runner) BulkDelete(ctx context.Context, a *Attempt) (any, *time.Time, error) {
	return runBulk(ctx, t, a, false)
}

// runBulk is one attempt of a bulk operation: it resumes at the job's checkpoint and commits chunk
// after chunk, each with its progress, until the scope is exhausted. A chunk is atomic (its tasks,
// the notification jobs it causes and the checkpoint commit together), so an attempt that dies
// anywhere leaves every task either done once or not at all, and the next attempt goes on from the
// last committed chunk. The first chunk also counts the scope (the job's total).
func runBulk(ctx context.Context, t *Runner, a *Attempt, update bool) (any, *time.Time, error) {
	var params BulkParams
	if err := a.Job.DecodeParams(&params); err != nil {
		t.logger.ErrorContext(ctx, "bulk job params unreadable", "job_id", a.Job.ID.String(), "error", err.Error())
		return nil, nil, Permanent("the job's request cannot be read; request it again")
	}
	if f := params.Filter; f != nil && f.AssignedToMe != nil && *f.AssignedToMe {
		// The mutations refuse it; a row that has it anyway can never work.
		return nil, nil, Permanent("bulk operations act on your own tasks only")
	}
	var patch db.BulkTaskPatch
	if update {
		if params.Patch == nil {
			return nil, nil, Permanent("the update has no patch; request it again")
		}
		patch = params.Patch.Store()
		if patch.Empty() {
			return nil, nil, Permanent("the patch changes nothing")
		}
	}
	// The job acts for the user who requested it, under the same policy as their requests.
	scope, err := tasks.BulkScope(policy.Actor{UserID: a.Job.UserID}, params.Filter, params.RequestedAt)
	if err != nil {
		return nil, nil, Permanent("the request is no longer valid; request it again")
	}
	var cp bulkCheckpoint
	if _, err := a.Job.DecodeCheckpoint(&cp); err != nil {
		return nil, nil, err
	}
	var total *int
	if a.Job.Total != nil {
		n := int(*a.Job.Total)
		total = &n
	}
	for {
		var (
			next bulkCheckpoint
			done bool
		)
		err := a.Chunk(ctx, func(s db.Stores) (Progress, error) {
			if total == nil {
				// Counted in the first chunk's transaction, so the total commits with it.
				n, err := s.Tasks.CountBulk(ctx, scope)
				if err != nil {
					return Progress{}, fmt.Errorf("count bulk scope: %w", err)
				}
				total = &n
			}
			var (
				chunk *db.BulkChunk
				err   error
			)
			if update {
				chunk, err = s.Tasks.UpdateChunk(ctx, scope, patch, cp.After, db.BulkChunkSize)
				if err == nil {
					err = enqueueBulkNotifications(ctx, s, a.Job.UserID, chunk)
				}
			} else {
				chunk, err = s.Tasks.DeleteChunk(ctx, scope, cp.After, db.BulkChunkSize)
			}
			if err != nil {
				return Progress{}, err
			}
			next = cp
			next.Matched += chunk.Matched
			next.Affected += len(chunk.Changed) + len(chunk.Deleted)
			if chunk.Last != nil {
				next.After = chunk.Last
			}
			done = chunk.Done
			return Progress{Processed: next.Matched, Total: total, Checkpoint: next}, nil
		})
		if err != nil {
			if update && patch.AssigneeID.Set && errors.Is(err, db.ErrAssigneeMissing) {
				// The assignee was deleted after the request: no retry can assign to them.
				return nil, nil, Permanent("the assignee no longer exists")
			}
			if errors.Is(err, db.ErrJobNotRunning) {
				return nil, nil, err // cancelled: the chunk rolled back, the tracker stops
			}
			return nil, nil, fmt.Errorf("bulk chunk after %d tasks: %w", cp.Matched, err)
		}
		cp = next
		if done {
			return BulkResult{MatchedCount: int32(cp.Matched), AffectedCount: int32(cp.Affected)}, nil, nil
		}
	}
}

// enqueueBulkNotifications enqueues, in the chunk's transaction, the notifications its changes
// cause. The owner is the actor, so only assignments to someone else notify (TASK_ASSIGNED).
func enqueueBulkNotifications(ctx context.Context, s db.Stores, ownerID uuid.UUID, chunk *db.BulkChunk) error {
	var js []db.Job
	for i := range chunk.Changed {
		c := &chunk.Changed[i]
		js = append(js, notifications.ForTaskChange(ownerID, &c.Before, &c.After)...)
	}
	if err := s.Jobs.Enqueue(ctx, js...); err != nil {
		return fmt.Errorf("enqueue bulk notifications: %w", err)
	}
	return nil
}
