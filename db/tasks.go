package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// TaskStore reads and writes tasks. Methods that take a viewerID only ever touch rows that viewer may
// reach: a task is visible to its owner and its assignee; only the owner may change it, except that the
// assignee may change its status. A task the viewer may not see is indistinguishable from a missing one.
type TaskStore struct {
	q       querier
	cursors *CursorCodec
	changed *changeSet
}

const taskColumns = "id, owner_id, assignee_id, title, description, status, priority, due_at, tags, created_at, updated_at, version"

// TaskFilter narrows a task list; nil fields do not filter. Inputs are validated before they get here.
type TaskFilter struct {
	Status    []TaskStatus
	Priority  []Priority
	Tag       *string
	DueBefore *time.Time
	DueAfter  *time.Time
	Search    *string
	// AssignedToMe true lists the tasks assigned to the viewer (whoever owns them) instead of the
	// viewer's own tasks. Omitted from the cursor scope when not true, so false and absent share cursors.
	AssignedToMe *bool `json:",omitempty"`
}

// assignedToMe reports whether the filter lists the viewer's assigned tasks rather than their own.
func (f *TaskFilter) assignedToMe() bool {
	return f != nil && f.AssignedToMe != nil && *f.AssignedToMe
}

// TaskOrderField is what a task list is sorted by; the GraphQL TaskOrderField enum is bound to it.
type TaskOrderField string

const (
	TaskOrderCreatedAt TaskOrderField = "CREATED_AT"
	TaskOrderUpdatedAt TaskOrderField = "UPDATED_AT"
	TaskOrderDueAt     TaskOrderField = "DUE_AT"
	TaskOrderPriority  TaskOrderField = "PRIORITY"
)

// TaskOrder is a sort field and direction; the default is newest first.
type TaskOrder struct {
	Field     TaskOrderField
	Direction Direction
}

// DefaultTaskOrder is used when the client gives no orderBy.
var DefaultTaskOrder = TaskOrder{Field: TaskOrderCreatedAt, Direction: Desc}

// taskSortKeys maps each order field to its SQL expression; each has an index led by owner_id and a
// partial one led by assignee_id (for assignedToMe).
var taskSortKeys = map[TaskOrderField]sortKey[Task]{
	TaskOrderCreatedAt: {expr: "created_at", keyOf: func(t Task) any { return timeKey(t.CreatedAt) }, param: timeParam},
	TaskOrderUpdatedAt: {expr: "updated_at", keyOf: func(t Task) any { return timeKey(t.UpdatedAt) }, param: timeParam},
	TaskOrderDueAt: {
		expr:  "coalesce(due_at, 'infinity'::timestamptz)",
		keyOf: func(t Task) any { return optionalTimeKey(t.DueAt) },
		param: optionalTimeParam,
	},
	TaskOrderPriority: {expr: "priority", keyOf: func(t Task) any { return int64(t.Priority) }, param: smallintParam},
}

// TaskEdge is one task of a connection with its cursor.
type TaskEdge struct {
	Cursor string
	Node   *Task
}

// TaskConnection is a page of tasks. It remembers its filter so totalCount runs only when asked for.
type TaskConnection struct {
	Edges    []TaskEdge
	PageInfo PageInfo
	filter   where
}

// Tasks returns the tasks of the page in order.
func (c *TaskConnection) Tasks() []*Task {
	out := make([]*Task, len(c.Edges))
	for i := range c.Edges {
		out[i] = c.Edges[i].Node
	}
	return out
}

// where turns a filter into SQL conditions for the viewer's list: their own tasks, or with
// assignedToMe the tasks assigned to them (served by the partial assignee indexes, which
// "assignee_id = $n" implies).
func (f *TaskFilter) where(viewerID uuid.UUID) where {
	var w where
	if f.assignedToMe() {
		w.add("assignee_id = ?", viewerID)
	} else {
		w.add("owner_id = ?", viewerID)
	}
	if f == nil {
		return w
	}
	if len(f.Status) > 0 {
		s := make([]string, len(f.Status))
		for i, v := range f.Status {
			s[i] = string(v)
		}
		w.add("status = ANY(?)", s)
	}
	if len(f.Priority) > 0 {
		p := make([]int16, len(f.Priority))
		for i, v := range f.Priority {
			p[i] = int16(v)
		}
		w.add("priority = ANY(?)", p)
	}
	if f.Tag != nil {
		w.add("tags @> ?", []string{*f.Tag})
	}
	if f.DueBefore != nil {
		w.add("due_at < ?", *f.DueBefore)
	}
	if f.DueAfter != nil {
		w.add("due_at >= ?", *f.DueAfter)
	}
	if f.Search != nil {
		// Same expression as tasks_search_trgm_idx so the trigram index serves it; the recheck drops
		// matches that only span the joined title and description.
		pattern := "%" + escapeLike(*f.Search) + "%"
		w.add(`(title || ' ' || coalesce(description, '')) ILIKE ?`, pattern)
		w.add(`(title ILIKE ? OR description ILIKE ?)`, pattern, pattern)
	}
	return w
}

// canonical is a stable text form of the filter, so a cursor can be tied to the filter it came from.
func (f *TaskFilter) canonical() string {
	if f == nil {
		return "{}"
	}
	c := *f
	if !f.assignedToMe() {
		c.AssignedToMe = nil // false is the default: the same list as an absent field
	}
	c.Status = slices.Sorted(slices.Values(f.Status))
	c.Priority = slices.Sorted(slices.Values(f.Priority))
	b, _ := json.Marshal(c) // plain struct of strings, numbers and times: cannot fail
	return string(b)
}

// escapeLike makes a user's search text match literally inside ILIKE.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// List returns one page of viewerID's tasks, or (filter.AssignedToMe) of the tasks assigned to viewerID.
// Cursors are scoped to the viewer, the order and the filter, so one list's cursors fail on the other.
func (s TaskStore) List(ctx context.Context, viewerID uuid.UUID, filter *TaskFilter, order *TaskOrder, args PageArgs) (*TaskConnection, error) {
	o := DefaultTaskOrder
	if order != nil {
		o = *order
	}
	key, ok := taskSortKeys[o.Field]
	if !ok {
		return nil, apperr.Invalid("orderBy.field", fmt.Sprintf("unknown order field %q", o.Field))
	}
	scope := scopeOf("tasks", viewerID.String(), string(o.Field), string(o.Direction), filter.canonical())
	req, err := s.cursors.parsePage(args, scope)
	if err != nil {
		return nil, err
	}
	l := keysetList[Task]{
		table: "tasks", columns: taskColumns, filter: filter.where(viewerID),
		sort: key, desc: o.Direction == Desc, idOf: func(t Task) uuid.UUID { return t.ID }, scope: scope,
	}
	p, err := fetchPage(ctx, s.q, s.cursors, l, req)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	conn := &TaskConnection{PageInfo: p.info, filter: l.filter, Edges: make([]TaskEdge, len(p.rows))}
	for i := range p.rows {
		conn.Edges[i] = TaskEdge{Cursor: p.cursors[i], Node: &p.rows[i]}
	}
	return conn, nil
}

// Count returns how many tasks match the connection's filter (its totalCount).
func (s TaskStore) Count(ctx context.Context, conn *TaskConnection) (int, error) {
	return countRows(ctx, s.q, "tasks", conn.filter)
}

// NewTask is a validated createTask input.
type NewTask struct {
	Title       string
	Description *string
	Status      TaskStatus
	Priority    Priority
	DueAt       *time.Time
	Tags        []string
	AssigneeID  *uuid.UUID // nil: unassigned; must name an existing user
}

// Create inserts a task owned by ownerID.
func (s TaskStore) Create(ctx context.Context, ownerID uuid.UUID, t NewTask) (*Task, error) {
	id, err := uuid.NewV7() // time-ordered ids keep the primary key index append-mostly
	if err != nil {
		return nil, fmt.Errorf("new task id: %w", err)
	}
	tags := t.Tags
	if tags == nil {
		tags = []string{}
	}
	rows, err := s.q.Query(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, description, status, priority, due_at, tags)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		RETURNING `+taskColumns,
		id, ownerID, t.AssigneeID, t.Title, t.Description, string(t.Status), int16(t.Priority), t.DueAt, tags)
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	if err == nil {
		// The task key is new to caches; live subscriptions hear of the creation through it.
		s.changed.add(ctx, EntityKey{EntityTask, task.ID}, EntityKey{EntityTaskCounts, ownerID})
	}
	return task, mapTaskWriteError(err)
}

// assigneeFK is the foreign key from tasks.assignee_id to users (PostgreSQL's default name for it).
const assigneeFK = "tasks_assignee_id_fkey"

// mapTaskWriteError is mapError for writes that may set the assignee: an assignee that does not exist
// (or was deleted meanwhile) is NOT_FOUND on input.assigneeId.
func mapTaskWriteError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgForeignKeyViolation && pgErr.ConstraintName == assigneeFK {
		return apperr.FieldError(apperr.NotFound, "input.assigneeId", "no user has this id")
	}
	return mapError(err, "task")
}

// GetVisible returns the task if viewerID owns it or is its assignee; otherwise NOT_FOUND.
func (s TaskStore) GetVisible(ctx context.Context, viewerID, id uuid.UUID) (*Task, error) {
	rows, err := s.q.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 AND (owner_id = $2 OR assignee_id = $2)`, id, viewerID)
	if err != nil {
		return nil, mapError(err, "task")
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	return task, mapError(err, "task")
}

// ByIDs returns the tasks with these ids, in no particular order, whoever owns them. Callers check
// visibility (Task.VisibleTo) before answering with them.
func (s TaskStore) ByIDs(ctx context.Context, ids []uuid.UUID) ([]Task, error) {
	rows, err := s.q.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	tasks, err := pgx.CollectRows(rows, pgx.RowToStructByName[Task])
	return tasks, mapError(err, "tasks")
}

// Optional is a field of a partial update: Set false leaves the column alone.
type Optional[T any] struct {
	Set   bool
	Value T
}

// TaskPatch is a validated updateTask input; only Set fields change.
type TaskPatch struct {
	Title       Optional[string]
	Description Optional[*string]
	Status      Optional[TaskStatus]
	Priority    Optional[Priority]
	DueAt       Optional[*time.Time]
	Tags        Optional[[]string]
	AssigneeID  Optional[*uuid.UUID] // Value nil unassigns
}

// OwnerOnlyFields names (as updateTask's input fields) what the patch changes that only the task's
// owner may change: everything but status.
func (p TaskPatch) OwnerOnlyFields() []string {
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

func (p TaskPatch) sets() (cols []string, args []any) {
	add := func(col string, v any) {
		args = append(args, v)
		cols = append(cols, fmt.Sprintf("%s = $%d", col, len(args)))
	}
	if p.Title.Set {
		add("title", p.Title.Value)
	}
	if p.Description.Set {
		add("description", p.Description.Value)
	}
	if p.Status.Set {
		add("status", string(p.Status.Value))
	}
	if p.Priority.Set {
		add("priority", int16(p.Priority.Value))
	}
	if p.DueAt.Set {
		add("due_at", p.DueAt.Value)
	}
	if p.Tags.Set {
		tags := p.Tags.Value
		if tags == nil {
			tags = []string{}
		}
		add("tags", tags)
	}
	if p.AssigneeID.Set {
		add("assignee_id", p.AssigneeID.Value)
	}
	return cols, args
}

// Update applies patch to a task as viewerID. The owner may change every field; the assignee may change
// only the status (any other field: FORBIDDEN, nothing written); anyone else gets NOT_FOUND. The guard is
// in the UPDATE itself, so a concurrent reassignment cannot let a former assignee write. With
// expectedVersion it applies only at that version (CONFLICT otherwise, nothing written). Every real
// change bumps version and updated_at.
func (s TaskStore) Update(ctx context.Context, viewerID, id uuid.UUID, patch TaskPatch, expectedVersion *int32) (*Task, error) {
	cols, args := patch.sets()
	ownerOnly := patch.OwnerOnlyFields()
	if len(cols) == 0 {
		task, err := s.GetVisible(ctx, viewerID, id)
		if err != nil {
			return nil, err
		}
		if expectedVersion != nil && *expectedVersion != task.Version {
			return nil, versionConflict(task.Version, *expectedVersion)
		}
		return task, nil
	}
	args = append(args, id, viewerID)
	guard := fmt.Sprintf("id = $%d AND owner_id = $%d", len(args)-1, len(args))
	if len(ownerOnly) == 0 { // status only: the owner or the assignee
		guard = fmt.Sprintf("id = $%d AND (owner_id = $%d OR assignee_id = $%[2]d)", len(args)-1, len(args))
	}
	sql := fmt.Sprintf(`UPDATE tasks SET %s, version = version + 1, updated_at = now() WHERE %s`, strings.Join(cols, ", "), guard)
	if expectedVersion != nil {
		args = append(args, *expectedVersion)
		sql += fmt.Sprintf(" AND version = $%d", len(args))
	}
	rows, err := s.q.Query(ctx, sql+" RETURNING "+taskColumns, args...)
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.missOrConflict(ctx, viewerID, id, expectedVersion, ownerOnlyChange(ownerOnly))
	}
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	s.reportWrite(ctx, viewerID, id, task.OwnerID)
	return task, nil
}

// Delete removes a task the viewer owns, at expectedVersion when given. The assignee gets FORBIDDEN,
// anyone else NOT_FOUND.
func (s TaskStore) Delete(ctx context.Context, viewerID, id uuid.UUID, expectedVersion *int32) error {
	sql := `DELETE FROM tasks WHERE id = $1 AND owner_id = $2`
	args := []any{id, viewerID}
	if expectedVersion != nil {
		sql += ` AND version = $3`
		args = append(args, *expectedVersion)
	}
	var ownerID uuid.UUID
	err := s.q.QueryRow(ctx, sql+` RETURNING owner_id`, args...).Scan(&ownerID)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.missOrConflict(ctx, viewerID, id, expectedVersion,
			apperr.New(apperr.Forbidden, "only the task's owner can delete it"))
	}
	if err != nil {
		return mapError(err, "task")
	}
	s.reportWrite(ctx, viewerID, id, ownerID)
	return nil
}

// reportWrite reports a task write: the task and its owner's counts change. A writer other than the
// owner (the assignee) is named too, so read-your-writes keeps their reads on the primary.
func (s TaskStore) reportWrite(ctx context.Context, viewerID, id, ownerID uuid.UUID) {
	keys := []EntityKey{{EntityTask, id}, {EntityTaskCounts, ownerID}}
	if viewerID != ownerID {
		keys = append(keys, EntityKey{EntityWriter, viewerID})
	}
	s.changed.add(ctx, keys...)
}

// ownerOnlyChange is the FORBIDDEN answer to an assignee whose update names fields only the owner may
// change; nil when the update changes only the status.
func ownerOnlyChange(fields []string) error {
	if len(fields) == 0 {
		return nil
	}
	msg := "only the task's owner can change " + strings.Join(fields, ", ")
	e := apperr.New(apperr.Forbidden, "%s", msg)
	for _, f := range fields {
		e.Violations = append(e.Violations, apperr.Violation{Field: "input." + f, Message: "only the task's owner can change " + f})
	}
	return e
}

// missOrConflict explains why a guarded write touched no row: the viewer may not see the task, or it
// is missing (NOT_FOUND, identical for both); the viewer is the assignee and the write is one only the
// owner may make (assigneeRefused, FORBIDDEN); or it moved past the expected version (CONFLICT).
func (s TaskStore) missOrConflict(ctx context.Context, viewerID, id uuid.UUID, expected *int32, assigneeRefused error) error {
	var (
		ownerID    uuid.UUID
		assigneeID *uuid.UUID
		current    int32
	)
	err := s.q.QueryRow(ctx, `SELECT owner_id, assignee_id, version FROM tasks WHERE id = $1`, id).Scan(&ownerID, &assigneeID, &current)
	if err != nil {
		return mapError(err, "task")
	}
	isOwner := ownerID == viewerID
	isAssignee := assigneeID != nil && *assigneeID == viewerID
	switch {
	case !isOwner && !isAssignee:
		return mapError(pgx.ErrNoRows, "task") // exactly the answer for a missing task
	case !isOwner && assigneeRefused != nil:
		return assigneeRefused
	case expected != nil && current != *expected:
		return versionConflict(current, *expected)
	}
	return apperr.New(apperr.Conflict, "task was changed concurrently; retry")
}

func versionConflict(current, expected int32) error {
	return apperr.FieldError(apperr.Conflict, "input.expectedVersion",
		fmt.Sprintf("task is at version %d, not %d: reload it and retry", current, expected))
}

// CountsByOwners returns per-owner task counts for the given owners; owners without tasks are absent.
func (s TaskStore) CountsByOwners(ctx context.Context, ownerIDs []uuid.UUID) ([]TaskCounts, error) {
	rows, err := s.q.Query(ctx, `
		SELECT owner_id,
		       count(*)::int AS total,
		       (count(*) FILTER (WHERE status = 'TODO'))::int AS todo,
		       (count(*) FILTER (WHERE status = 'IN_PROGRESS'))::int AS in_progress,
		       (count(*) FILTER (WHERE status = 'DONE'))::int AS done,
		       (count(*) FILTER (WHERE status <> 'DONE' AND due_at < now()))::int AS overdue
		FROM tasks WHERE owner_id = ANY($1) GROUP BY owner_id`, ownerIDs)
	if err != nil {
		return nil, mapError(err, "task counts")
	}
	counts, err := pgx.CollectRows(rows, pgx.RowToStructByName[TaskCounts])
	return counts, mapError(err, "task counts")
}
