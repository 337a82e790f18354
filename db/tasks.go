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

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// TaskStore reads and writes tasks. Methods that take an ownerID only ever touch that owner's rows:
// another user's task is indistinguishable from a missing one.
type TaskStore struct {
	q       querier
	cursors *CursorCodec
	changed *changeSet
}

const taskColumns = "id, owner_id, title, description, status, priority, due_at, tags, created_at, updated_at, version"

// TaskFilter narrows a task list; nil fields do not filter. Inputs are validated before they get here.
type TaskFilter struct {
	Status    []TaskStatus
	Priority  []Priority
	Tag       *string
	DueBefore *time.Time
	DueAfter  *time.Time
	Search    *string
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

// taskSortKeys maps each order field to its SQL expression; each has an index led by owner_id.
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

// filterWhere turns a filter into SQL conditions for one owner's tasks.
func (f *TaskFilter) where(ownerID uuid.UUID) where {
	var w where
	w.add("owner_id = ?", ownerID)
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
	c.Status = slices.Sorted(slices.Values(f.Status))
	c.Priority = slices.Sorted(slices.Values(f.Priority))
	b, _ := json.Marshal(c) // plain struct of strings, numbers and times: cannot fail
	return string(b)
}

// escapeLike makes a user's search text match literally inside ILIKE.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// List returns one page of ownerID's tasks.
func (s TaskStore) List(ctx context.Context, ownerID uuid.UUID, filter *TaskFilter, order *TaskOrder, args PageArgs) (*TaskConnection, error) {
	o := DefaultTaskOrder
	if order != nil {
		o = *order
	}
	key, ok := taskSortKeys[o.Field]
	if !ok {
		return nil, apperr.Invalid("orderBy.field", fmt.Sprintf("unknown order field %q", o.Field))
	}
	scope := scopeOf("tasks", ownerID.String(), string(o.Field), string(o.Direction), filter.canonical())
	req, err := s.cursors.parsePage(args, scope)
	if err != nil {
		return nil, err
	}
	l := keysetList[Task]{
		table: "tasks", columns: taskColumns, filter: filter.where(ownerID),
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
		INSERT INTO tasks (id, owner_id, title, description, status, priority, due_at, tags)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		RETURNING `+taskColumns,
		id, ownerID, t.Title, t.Description, string(t.Status), int16(t.Priority), t.DueAt, tags)
	if err != nil {
		return nil, mapError(err, "task")
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	if err == nil {
		s.changed.add(ctx, EntityKey{EntityTaskCounts, ownerID})
	}
	return task, mapError(err, "task")
}

// GetForOwner returns the task if ownerID owns it; otherwise NOT_FOUND.
func (s TaskStore) GetForOwner(ctx context.Context, ownerID, id uuid.UUID) (*Task, error) {
	rows, err := s.q.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 AND owner_id = $2`, id, ownerID)
	if err != nil {
		return nil, mapError(err, "task")
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	return task, mapError(err, "task")
}

// ByIDs returns the tasks with these ids, in no particular order, whoever owns them. Callers check
// ownership (the tasks loader does).
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
	return cols, args
}

// Update applies patch to ownerID's task. With expectedVersion it applies only at that version
// (CONFLICT otherwise, nothing written). Every real change bumps version and updated_at.
func (s TaskStore) Update(ctx context.Context, ownerID, id uuid.UUID, patch TaskPatch, expectedVersion *int32) (*Task, error) {
	cols, args := patch.sets()
	if len(cols) == 0 {
		task, err := s.GetForOwner(ctx, ownerID, id)
		if err != nil {
			return nil, err
		}
		if expectedVersion != nil && *expectedVersion != task.Version {
			return nil, versionConflict(task.Version, *expectedVersion)
		}
		return task, nil
	}
	args = append(args, id, ownerID)
	sql := fmt.Sprintf(`UPDATE tasks SET %s, version = version + 1, updated_at = now()
		WHERE id = $%d AND owner_id = $%d`, strings.Join(cols, ", "), len(args)-1, len(args))
	if expectedVersion != nil {
		args = append(args, *expectedVersion)
		sql += fmt.Sprintf(" AND version = $%d", len(args))
	}
	rows, err := s.q.Query(ctx, sql+" RETURNING "+taskColumns, args...)
	if err != nil {
		return nil, mapError(err, "task")
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, s.missOrConflict(ctx, ownerID, id, expectedVersion)
	}
	if err == nil {
		s.changed.add(ctx, EntityKey{EntityTask, id}, EntityKey{EntityTaskCounts, ownerID})
	}
	return task, mapError(err, "task")
}

// Delete removes ownerID's task, at expectedVersion when given.
func (s TaskStore) Delete(ctx context.Context, ownerID, id uuid.UUID, expectedVersion *int32) error {
	sql := `DELETE FROM tasks WHERE id = $1 AND owner_id = $2`
	args := []any{id, ownerID}
	if expectedVersion != nil {
		sql += ` AND version = $3`
		args = append(args, *expectedVersion)
	}
	tag, err := s.q.Exec(ctx, sql, args...)
	if err != nil {
		return mapError(err, "task")
	}
	if tag.RowsAffected() == 0 {
		return s.missOrConflict(ctx, ownerID, id, expectedVersion)
	}
	s.changed.add(ctx, EntityKey{EntityTask, id}, EntityKey{EntityTaskCounts, ownerID})
	return nil
}

// missOrConflict explains why a guarded write touched no row: the task is not ownerID's (NOT_FOUND)
// or it moved past the expected version (CONFLICT).
func (s TaskStore) missOrConflict(ctx context.Context, ownerID, id uuid.UUID, expected *int32) error {
	var current int32
	err := s.q.QueryRow(ctx, `SELECT version FROM tasks WHERE id = $1 AND owner_id = $2`, id, ownerID).Scan(&current)
	if err != nil {
		return mapError(err, "task")
	}
	if expected != nil && current != *expected {
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
