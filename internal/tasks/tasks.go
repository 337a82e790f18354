// Package tasks owns tasks: their validation, who may see, change and list them (asked of
// internal/policy), and the write sequence — lock, decide, write, enqueue the notifications the
// change causes — in one transaction. Live subscribers hear of every committed change from the
// database itself (the tasks trigger, see Feed), so no caller can forget to publish.
//
// Field names in its validation errors are those of the value validated ("title", "tags[2]"); the
// transport places them under its input path (apperr.Under).
package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/validate"
)

// Service runs the task operations.
type Service struct {
	reads *reads.Router
	cache *cache.Cache // nil: every read goes to the database
	feed  *Feed        // nil: no live feed (processes that serve no subscriptions)
}

// New builds the task service; c and feed may be nil.
func New(r *reads.Router, c *cache.Cache, feed *Feed) *Service {
	return &Service{reads: r, cache: c, feed: feed}
}

func facts(t *db.Task) policy.TaskFacts {
	return policy.TaskFacts{OwnerID: t.OwnerID, AssigneeID: t.AssigneeID}
}

// CanSee reports whether the actor may see the task (for rows read elsewhere, e.g. a notification's).
func CanSee(a policy.Actor, t *db.Task) bool { return policy.CanSeeTask(a, facts(t)) }

// NewTask is a createTask input as the client sent it.
type NewTask struct {
	Title       string
	Description *string
	Status      *db.TaskStatus // nil: TODO
	Priority    *db.Priority   // nil: MEDIUM
	DueAt       *time.Time
	Tags        []string
	AssigneeID  *uuid.UUID
	// AssigneeInvalid: the transport could not turn the client's assigneeId into a user id (a
	// malformed id, BAD_USER_INPUT; the id of something else, NOT_FOUND). It is reported with, and
	// after, the other fields' violations.
	AssigneeInvalid error
}

// withAssignee adds a transport's assignee problem to the violations: a malformed id is one more
// violation; an id of something other than a user is NOT_FOUND, reported once the input is valid.
func withAssignee(v *apperr.Violations, problem error) error {
	var e *apperr.Error
	if problem != nil && errors.As(problem, &e) && e.Code == apperr.BadUserInput {
		v.AddAll(e)
		problem = nil
	}
	if err := v.Err(); err != nil {
		return err
	}
	return problem
}

func (in NewTask) validate() (db.NewTask, error) {
	var v apperr.Violations
	nt := db.NewTask{
		Title:      validate.Text(&v, "title", in.Title, 1, validate.MaxTitleLen, false),
		Status:     db.StatusTodo,
		Priority:   db.PriorityMedium,
		DueAt:      in.DueAt,
		Tags:       validate.Tags(&v, "tags", in.Tags),
		AssigneeID: in.AssigneeID,
	}
	if in.Description != nil {
		d := validate.Text(&v, "description", *in.Description, 0, validate.MaxDescriptionLen, true)
		nt.Description = &d
	}
	if in.Status != nil {
		nt.Status = *in.Status
	}
	if in.Priority != nil {
		nt.Priority = *in.Priority
	}
	validate.DueAt(&v, "dueAt", in.DueAt)
	return nt, withAssignee(&v, in.AssigneeInvalid)
}

// errNoSuchAssignee answers an assigneeId that names no user.
func errNoSuchAssignee() error {
	return apperr.FieldError(apperr.NotFound, "assigneeId", "no user has this id")
}

// Create makes a task owned by the actor and, in the same transaction, enqueues the notification
// its assignee gets (when that is someone other than the actor): both commit or neither does.
func (s *Service) Create(ctx context.Context, a policy.Actor, in NewTask) (*db.Task, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	nt, err := in.validate()
	if err != nil {
		return nil, err
	}
	var t *db.Task
	write := func(st db.Stores) error {
		if t, err = st.Tasks.Create(ctx, a.UserID, nt); err != nil {
			return mapWriteError(err)
		}
		return st.Jobs.Enqueue(ctx, notifications.ForTaskChange(a.UserID, nil, t)...)
	}
	if nt.AssigneeID == nil || *nt.AssigneeID == a.UserID {
		// Nothing to enqueue: the INSERT alone, without a transaction's extra round trips (unless an
		// idempotency key must commit with it).
		err = s.reads.DB().Write(ctx, write)
	} else {
		err = s.reads.DB().InTx(ctx, write)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

func mapWriteError(err error) error {
	if errors.Is(err, db.ErrAssigneeMissing) {
		return errNoSuchAssignee()
	}
	return err
}

// Patch is an updateTask input as the client sent it: a field that is not Set is left alone; a Set
// field whose Value is nil is cleared where clearing makes sense (and refused where it does not).
type Patch struct {
	Title       db.Optional[*string]
	Description db.Optional[*string]
	Status      db.Optional[*db.TaskStatus]
	Priority    db.Optional[*db.Priority]
	DueAt       db.Optional[*time.Time]
	Tags        db.Optional[[]string]
	AssigneeID  db.Optional[*uuid.UUID] // Value nil unassigns
	// AssigneeInvalid is as in NewTask.
	AssigneeInvalid error
}

func (p Patch) validate() (db.TaskPatch, error) {
	var (
		v   apperr.Violations
		out db.TaskPatch
	)
	if p.Title.Set {
		if p.Title.Value == nil {
			v.Add("title", "cannot be null: every task has a title")
		} else {
			out.Title = db.Optional[string]{Set: true, Value: validate.Text(&v, "title", *p.Title.Value, 1, validate.MaxTitleLen, false)}
		}
	}
	if p.Description.Set {
		d := p.Description.Value
		if d != nil {
			text := validate.Text(&v, "description", *d, 0, validate.MaxDescriptionLen, true)
			d = &text
		}
		out.Description = db.Optional[*string]{Set: true, Value: d}
	}
	if p.Status.Set {
		if p.Status.Value == nil {
			v.Add("status", "cannot be null")
		} else {
			out.Status = db.Optional[db.TaskStatus]{Set: true, Value: *p.Status.Value}
		}
	}
	if p.Priority.Set {
		if p.Priority.Value == nil {
			v.Add("priority", "cannot be null")
		} else {
			out.Priority = db.Optional[db.Priority]{Set: true, Value: *p.Priority.Value}
		}
	}
	if p.DueAt.Set {
		validate.DueAt(&v, "dueAt", p.DueAt.Value)
		out.DueAt = p.DueAt
	}
	if p.Tags.Set {
		out.Tags = db.Optional[[]string]{Set: true, Value: validate.Tags(&v, "tags", p.Tags.Value)}
	}
	out.AssigneeID = p.AssigneeID
	if p.AssigneeInvalid != nil {
		out.AssigneeID.Set = true // the update names the assignee, whatever it could not decode
	}
	return out, withAssignee(&v, p.AssigneeInvalid)
}

// ownerOnlyFields names (as the input's fields) what the patch changes that only the task's owner
// may change: everything but status.
func ownerOnlyFields(p db.TaskPatch) []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"title", p.Title.Set}, {"description", p.Description.Set}, {"priority", p.Priority.Set},
		{"dueAt", p.DueAt.Set}, {"tags", p.Tags.Set}, {"assigneeId", p.AssigneeID.Set},
	} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// ExpectedVersion checks an expectedVersion input: a positive 32-bit version number.
func ExpectedVersion(n *int) (*int32, error) {
	if n == nil {
		return nil, nil
	}
	if *n < 1 || *n > 1<<31-1 {
		return nil, apperr.Invalid("expectedVersion", fmt.Sprintf("must be a positive version number, got %d", *n))
	}
	v := int32(*n)
	return &v, nil
}

func versionConflict(current, expected int32) error {
	return apperr.FieldError(apperr.Conflict, "expectedVersion",
		fmt.Sprintf("task is at version %d, not %d: reload it and retry", current, expected))
}

// Update applies the patch as the actor: the task is locked, the policy decides (the owner may
// change every field, the assignee only the status; anyone else gets NOT_FOUND), expectedVersion is
// compared, and the change and the notifications it causes (a new assignee; a status change by
// someone other than the owner) commit together. A refused update writes and enqueues nothing.
func (s *Service) Update(ctx context.Context, a policy.Actor, id uuid.UUID, in Patch, expectedVersion *int32) (*db.Task, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	patch, err := in.validate()
	if err != nil {
		return nil, err
	}
	var t *db.Task
	err = s.reads.DB().InTx(ctx, func(st db.Stores) error {
		before, err := st.Tasks.Lock(ctx, id)
		if err != nil {
			return err
		}
		if err := policy.CheckEditTask(a, facts(before), ownerOnlyFields(patch)); err != nil {
			return err
		}
		if expectedVersion != nil && *expectedVersion != before.Version {
			return versionConflict(before.Version, *expectedVersion)
		}
		if patch.Empty() {
			t = before
			return nil
		}
		if t, err = st.Tasks.Update(ctx, id, a.UserID, patch); err != nil {
			return mapWriteError(err)
		}
		was := &db.TaskBefore{OwnerID: before.OwnerID, AssigneeID: before.AssigneeID, Status: before.Status}
		return st.Jobs.Enqueue(ctx, notifications.ForTaskChange(a.UserID, was, t)...)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Delete removes a task as the actor (owner only; the assignee gets FORBIDDEN, anyone else
// NOT_FOUND), at expectedVersion when given.
func (s *Service) Delete(ctx context.Context, a policy.Actor, id uuid.UUID, expectedVersion *int32) error {
	if err := policy.RequireSignedIn(a); err != nil {
		return err
	}
	return s.reads.DB().InTx(ctx, func(st db.Stores) error {
		t, err := st.Tasks.Lock(ctx, id)
		if err != nil {
			return err
		}
		if err := policy.CheckDeleteTask(a, facts(t)); err != nil {
			return err
		}
		if expectedVersion != nil && *expectedVersion != t.Version {
			return versionConflict(t.Version, *expectedVersion)
		}
		return st.Tasks.Delete(ctx, id, a.UserID)
	})
}

// rows reads tasks by id through the cache, from the stores the actor's reads go to. It decides
// nothing: callers apply the policy to what it returns.
func (s *Service) rows(ctx context.Context, a policy.Actor, ids []uuid.UUID) (map[uuid.UUID]*db.Task, error) {
	stores := s.reads.For(ctx, a.UserID)
	if stores.OnReplica {
		ctx = cache.WithStaleSource(ctx)
	}
	return cache.Many(ctx, s.cache, db.EntityTask, ids, stores.Tasks.ByIDs, func(t db.Task) uuid.UUID { return t.ID })
}

// GetWithOwner is Get for a caller that will read the task's owner too. Without a row cache to
// read the owner from, it comes in the task's own statement; otherwise (or when the actor may not
// see users) owner is nil and the caller loads it as usual.
func (s *Service) GetWithOwner(ctx context.Context, a policy.Actor, id uuid.UUID) (task *db.Task, owner *db.User, err error) {
	if s.cache != nil || !policy.CanSeeUser(a) {
		task, err = s.Get(ctx, a, id)
		return task, nil, err
	}
	task, owner, err = s.reads.For(ctx, a.UserID).Tasks.ByIDWithOwner(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if err := policy.CheckSeeTask(a, facts(task)); err != nil {
		return nil, nil, err
	}
	return task, owner, nil
}

// Get returns a task the actor may see; any other task answers exactly like a missing one.
func (s *Service) Get(ctx context.Context, a policy.Actor, id uuid.UUID) (*db.Task, error) {
	found, err := s.rows(ctx, a, []uuid.UUID{id})
	if err != nil {
		return nil, err
	}
	t, ok := found[id]
	if !ok {
		return nil, apperr.New(apperr.NotFound, "task not found")
	}
	if err := policy.CheckSeeTask(a, facts(t)); err != nil {
		return nil, err
	}
	return t, nil
}

// GetMany is Get for several ids (the tasks loader batches GraphQL fields with it): one result per
// id, in order, each the task or its error.
func (s *Service) GetMany(ctx context.Context, a policy.Actor, ids []uuid.UUID) ([]*db.Task, []error) {
	tasks, errs := make([]*db.Task, len(ids)), make([]error, len(ids))
	found, err := s.rows(ctx, a, ids)
	for i, id := range ids {
		switch t, ok := found[id]; {
		case err != nil:
			errs[i] = err
		case !ok:
			errs[i] = apperr.New(apperr.NotFound, "task not found")
		default:
			if errs[i] = policy.CheckSeeTask(a, facts(t)); errs[i] == nil {
				tasks[i] = t
			}
		}
	}
	return tasks, errs
}

// ValidateFilter checks and normalizes a task filter (lists, exports, bulk operations); field names
// are the filter's own.
func ValidateFilter(f *db.TaskFilter) (*db.TaskFilter, error) {
	if f == nil {
		return nil, nil
	}
	out := *f
	var v apperr.Violations
	if f.Search != nil {
		q := validate.Text(&v, "search", *f.Search, 1, validate.MaxSearchLen, false)
		out.Search = &q
	}
	if f.Tag != nil {
		t := validate.Tag(&v, "tag", *f.Tag)
		out.Tag = &t
	}
	validate.DueAt(&v, "dueBefore", f.DueBefore)
	validate.DueAt(&v, "dueAfter", f.DueAfter)
	if f.DueBefore != nil && f.DueAfter != nil && !f.DueAfter.Before(*f.DueBefore) {
		v.Add("dueAfter", "must be before dueBefore")
	}
	return &out, v.Err()
}

// Scope is the list a filter asks of the actor: their own tasks, or with assignedToMe those
// assigned to them.
func Scope(a policy.Actor, f *db.TaskFilter) db.TaskScope {
	return db.TaskScope{UserID: a.UserID, Assigned: f.AssignedOnly()}
}

// List pages through the actor's own tasks, or (filter.assignedToMe) the tasks assigned to them.
// Filter errors are named under "filter".
//
// readsOwners says the caller will read every task's owner. Without a row cache to read them from,
// the owners the actor may see then come in the page's own statement (the connection's Owners).
func (s *Service) List(ctx context.Context, a policy.Actor, filter *db.TaskFilter, order *db.TaskOrder, page db.PageArgs, readsOwners bool) (*db.TaskConnection, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	f, err := ValidateFilter(filter)
	if err != nil {
		return nil, apperr.Under("filter", err)
	}
	store := s.reads.For(ctx, a.UserID).Tasks
	if readsOwners && s.cache == nil && policy.CanSeeUser(a) {
		return store.ListWithOwners(ctx, Scope(a, f), f, order, page)
	}
	return store.List(ctx, Scope(a, f), f, order, page)
}

// ListOf is User.tasks: a user's own tasks, listed by that user only.
func (s *Service) ListOf(ctx context.Context, a policy.Actor, userID uuid.UUID, filter *db.TaskFilter, order *db.TaskOrder, page db.PageArgs, readsOwners bool) (*db.TaskConnection, error) {
	if err := policy.CheckListTasksOf(a, userID); err != nil {
		return nil, err
	}
	if filter.AssignedOnly() {
		return nil, apperr.Invalid("filter.assignedToMe", "User.tasks lists the user's own tasks: use Query.tasks for the tasks assigned to you")
	}
	return s.List(ctx, a, filter, order, page, readsOwners)
}

// Count is a task list's totalCount (the list was already authorized when it was read).
func (s *Service) Count(ctx context.Context, a policy.Actor, conn *db.TaskConnection) (int, error) {
	return s.reads.For(ctx, a.UserID).Tasks.Count(ctx, conn)
}

// CountsOf returns the task counts of the users the actor may see them of (themself; anyone for an
// admin), through the cache; users without tasks get zeros, users the actor may not see them of
// get FORBIDDEN.
func (s *Service) CountsOf(ctx context.Context, a policy.Actor, userIDs []uuid.UUID) ([]*db.TaskCounts, []error) {
	out, errs := make([]*db.TaskCounts, len(userIDs)), make([]error, len(userIDs))
	var allowed []uuid.UUID
	for i, id := range userIDs {
		if errs[i] = policy.CheckSeeTaskCounts(a, id); errs[i] == nil {
			allowed = append(allowed, id)
		}
	}
	if len(allowed) == 0 {
		return out, errs
	}
	stores := s.reads.For(ctx, a.UserID)
	if stores.OnReplica {
		ctx = cache.WithStaleSource(ctx)
	}
	found, err := cache.Many(ctx, s.cache, db.EntityTaskCounts, allowed, stores.Tasks.CountsByOwners,
		func(c db.TaskCounts) uuid.UUID { return c.UserID })
	for i, id := range userIDs {
		if errs[i] != nil {
			continue
		}
		switch c, ok := found[id]; {
		case err != nil:
			errs[i] = err
		case ok:
			out[i] = c
		default:
			out[i] = &db.TaskCounts{UserID: id} // no tasks: zeros
		}
	}
	return out, errs
}

// BulkScope is the set of tasks a bulk operation the actor requested at requestedAt acts on
// (policy.CheckBulkEdit: their own tasks only). Filter errors are named by the filter's fields.
func BulkScope(a policy.Actor, f *db.TaskFilter, requestedAt time.Time) (db.BulkScope, error) {
	if err := policy.CheckBulkEdit(a, f.AssignedOnly()); err != nil {
		return db.BulkScope{}, err
	}
	f, err := ValidateFilter(f)
	if err != nil {
		return db.BulkScope{}, err
	}
	if f != nil {
		f.AssignedToMe = nil
	}
	return db.BulkScope{Tasks: Scope(a, f), Filter: f, RequestedAt: requestedAt}, nil
}

// ExportScope is the set of tasks an export the actor requested at requestedAt writes: the list the
// filter asks for (their own tasks, or those assigned to them), as it stood then.
func ExportScope(a policy.Actor, f *db.TaskFilter, requestedAt time.Time) db.ExportQuery {
	return db.ExportQuery{Tasks: Scope(a, f), Filter: f, CreatedUpTo: requestedAt}
}
