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
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// TaskStore reads and writes tasks. It decides nothing about who may: the domain (internal/tasks)
// asks internal/policy first, and tells the store whose list to read (TaskScope) or which row to
// lock and change.
type TaskStore struct {
	q       querier
	cursors *cursor.Codec
	changed *changeSet
}

const taskColumns = "id, owner_id, assignee_id, title, description, status, priority, due_at, tags, created_at, updated_at, version"

// scanTask reads a row of taskColumns, in their order. Pages and loaders read many tasks per
// request: pgx.RowToStructByName matches columns to fields by reflection on every row and decodes
// uuids through their text form (uuid.UUID is an sql.Scanner); this scans uuids as their 16 bytes.
func scanTask(row pgx.CollectableRow) (Task, error) { return scanTaskAnd(row) }

// scanTaskAnd reads a row of taskColumns followed by more columns, scanned into extra.
func scanTaskAnd(row pgx.CollectableRow, extra ...any) (Task, error) {
	var t Task
	var assignee pgtype.UUID
	dest := make([]any, 0, 12+len(extra))
	dest = append(dest, (*[16]byte)(&t.ID), (*[16]byte)(&t.OwnerID), &assignee, &t.Title, &t.Description,
		&t.Status, &t.Priority, &t.DueAt, &t.Tags, &t.CreatedAt, &t.UpdatedAt, &t.Version)
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return Task{}, err
	}
	if assignee.Valid {
		id := uuid.UUID(assignee.Bytes)
		t.AssigneeID = &id
	}
	return t, nil
}

// TaskFilter narrows a task list; nil fields do not filter. Inputs are validated before they get here.
type TaskFilter struct {
	Status    []TaskStatus
	Priority  []Priority
	Tag       *string
	DueBefore *time.Time
	DueAfter  *time.Time
	Search    *string
	// AssignedToMe true asks for the tasks assigned to the viewer (whoever owns them) instead of the
	// viewer's own tasks; the domain turns it into a TaskScope. Omitted from the cursor scope when not
	// true, so false and absent share cursors.
	AssignedToMe *bool `json:",omitempty"`
}

// AssignedOnly reports whether the filter asks for the viewer's assigned tasks rather than their own.
func (f *TaskFilter) AssignedOnly() bool {
	return f != nil && f.AssignedToMe != nil && *f.AssignedToMe
}

// TaskScope is whose tasks a list reads: the tasks UserID owns, or with Assigned the tasks assigned
// to UserID. Both orders are served by indexes (owner_id, …) and the partial (assignee_id, …) ones.
type TaskScope struct {
	UserID   uuid.UUID
	Assigned bool
}

func (sc TaskScope) where() where {
	var w where
	if sc.Assigned {
		w.add("assignee_id = ?", sc.UserID)
	} else {
		w.add("owner_id = ?", sc.UserID)
	}
	return w
}

func (sc TaskScope) String() string {
	if sc.Assigned {
		return "assigned:" + sc.UserID.String()
	}
	return sc.UserID.String()
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
	owners   []*User // read with the page (ListWithOwners); nil otherwise
}

// Owners returns the owners read with the page by ListWithOwners, each once, or nil when the page
// was read without them. An owner missing from it (deleted meanwhile) is for the caller to load.
func (c *TaskConnection) Owners() []*User { return c.owners }

// Tasks returns the tasks of the page in order.
func (c *TaskConnection) Tasks() []*Task {
	out := make([]*Task, len(c.Edges))
	for i := range c.Edges {
		out[i] = c.Edges[i].Node
	}
	return out
}

// where adds the filter's SQL conditions to the scope's.
func (f *TaskFilter) where(sc TaskScope) where {
	w := sc.where()
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
	if !f.AssignedOnly() {
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

// List returns one page of the scope's tasks matching filter. Cursors are scoped to the list, the
// order and the filter, so one list's cursors fail on another.
func (s TaskStore) List(ctx context.Context, sc TaskScope, filter *TaskFilter, order *TaskOrder, args PageArgs) (*TaskConnection, error) {
	return s.list(ctx, sc, filter, order, args, false)
}

// ListWithOwners is List that also reads each task's owner, joined in the page's statement: one
// statement instead of two for a caller that reads every owner and has no cache to read them from.
// The page itself (rows, order, cursors, page info) is List's.
func (s TaskStore) ListWithOwners(ctx context.Context, sc TaskScope, filter *TaskFilter, order *TaskOrder, args PageArgs) (*TaskConnection, error) {
	return s.list(ctx, sc, filter, order, args, true)
}

// ownedTaskColumns are taskColumns of the page (p) with its owner's userColumns (u, NULL for an owner
// deleted meanwhile): the rows ListWithOwners reads.
var ownedTaskColumns = qualify("p", taskColumns) + ", " + qualify("u", userColumns)

// qualify prefixes each of the comma-separated columns with alias.
func qualify(alias, columns string) string {
	parts := strings.Split(columns, ", ")
	for i, c := range parts {
		parts[i] = alias + "." + c
	}
	return strings.Join(parts, ", ")
}

func (s TaskStore) list(ctx context.Context, sc TaskScope, filter *TaskFilter, order *TaskOrder, args PageArgs, withOwners bool) (*TaskConnection, error) {
	o := DefaultTaskOrder
	if order != nil {
		o = *order
	}
	key, ok := taskSortKeys[o.Field]
	if !ok {
		return nil, fmt.Errorf("list tasks: unknown order field %q", o.Field)
	}
	scope := scopeOf("tasks", sc.String(), string(o.Field), string(o.Direction), filter.canonical())
	req, err := parsePage(s.cursors, args, scope)
	if err != nil {
		return nil, err
	}
	l := keysetList[Task]{
		table: "tasks", columns: taskColumns, filter: filter.where(sc),
		sort: key, desc: o.Direction == Desc, idOf: func(t Task) uuid.UUID { return t.ID }, scope: scope,
		scan: scanTask,
	}
	var read map[uuid.UUID]*User // owners of the rows read, one more than the page may hold
	if withOwners {
		// The page as List reads it, plus its sort key for the outer ORDER BY (a join keeps no order).
		l.columns = taskColumns + ", " + key.expr + " AS sort_key"
		l.wrap = func(pageSQL, dir string) string {
			return fmt.Sprintf("SELECT %s FROM (%s) p LEFT JOIN users u ON u.id = p.owner_id ORDER BY p.sort_key %s, p.id %s",
				ownedTaskColumns, pageSQL, dir, dir)
		}
		read = map[uuid.UUID]*User{}
		var o ownerColumns
		l.scan = func(row pgx.CollectableRow) (Task, error) {
			t, err := scanOwnedTask(row, &o)
			if err == nil && o.id.Valid {
				if _, ok := read[o.id.Bytes]; !ok {
					read[o.id.Bytes] = o.user()
				}
			}
			return t, err
		}
	}
	p, err := fetchPage(ctx, s.q, s.cursors, l, req)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	conn := &TaskConnection{PageInfo: p.info, filter: l.filter, Edges: make([]TaskEdge, len(p.rows))}
	if withOwners {
		conn.owners = []*User{} // read, even if none was found: not "not read"
	}
	for i := range p.rows {
		conn.Edges[i] = TaskEdge{Cursor: p.cursors[i], Node: &p.rows[i]}
		if u := read[p.rows[i].OwnerID]; u != nil {
			conn.owners = append(conn.owners, u)
			delete(read, u.ID) // each once
		}
	}
	return conn, nil
}

// ownerColumns receives the owner's columns of a row of ownedTaskColumns. Its text columns refer to
// the driver's buffer (valid until the next row): a page's rows mostly share one owner, and only
// an owner not yet seen is copied out (user).
type ownerColumns struct {
	id                      pgtype.UUID
	name, email, role, hash pgtype.DriverBytes
	created, updated        pgtype.Timestamptz
}

// user copies the owner out of the row, or nil when the row had none (deleted meanwhile).
func (o *ownerColumns) user() *User {
	if !o.id.Valid {
		return nil
	}
	return &User{ID: o.id.Bytes, Name: string(o.name), Email: string(o.email), Role: policy.Role(o.role),
		PasswordHash: string(o.hash), CreatedAt: o.created.Time, UpdatedAt: o.updated.Time}
}

// scanOwnedTask reads a row of ownedTaskColumns: the task, and its owner's columns into o.
func scanOwnedTask(row pgx.CollectableRow, o *ownerColumns) (Task, error) {
	return scanTaskAnd(row, &o.id, &o.name, &o.email, &o.role, &o.hash, &o.created, &o.updated)
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

// ErrAssigneeMissing: the assignee named by a write does not exist (or was deleted meanwhile).
var ErrAssigneeMissing = errors.New("db: the assignee does not exist")

// mapTaskWriteError is mapError for writes that may set the assignee.
func mapTaskWriteError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgForeignKeyViolation && pgErr.ConstraintName == assigneeFK {
		return ErrAssigneeMissing
	}
	return mapError(err, "task")
}

// Get returns one task by id, whoever owns it, or NOT_FOUND.
func (s TaskStore) Get(ctx context.Context, id uuid.UUID) (*Task, error) {
	return s.one(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1`, id)
}

// Lock returns one task and locks its row until the transaction ends (FOR NO KEY UPDATE, the lock
// an UPDATE takes), so that what the caller decides from it still holds when it writes. Use it
// inside InTx.
func (s TaskStore) Lock(ctx context.Context, id uuid.UUID) (*Task, error) {
	return s.one(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = $1 FOR NO KEY UPDATE`, id)
}

func (s TaskStore) one(ctx context.Context, sql string, args ...any) (*Task, error) {
	rows, err := s.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapError(err, "task")
	}
	task, err := pgx.CollectExactlyOneRow(rows, scanTask)
	if err != nil {
		return nil, mapError(err, "task")
	}
	return &task, nil
}

// ByIDWithOwner returns one task by id, whoever owns it, with its owner joined in the same
// statement (nil when deleted meanwhile), or NOT_FOUND.
func (s TaskStore) ByIDWithOwner(ctx context.Context, id uuid.UUID) (*Task, *User, error) {
	rows, err := s.q.Query(ctx, `SELECT `+ownedTaskColumns+` FROM tasks p LEFT JOIN users u ON u.id = p.owner_id WHERE p.id = $1`, id)
	if err != nil {
		return nil, nil, mapError(err, "task")
	}
	var owner *User
	task, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (Task, error) {
		var o ownerColumns
		t, err := scanOwnedTask(row, &o)
		owner = o.user()
		return t, err
	})
	if err != nil {
		return nil, nil, mapError(err, "task")
	}
	return &task, owner, nil
}

// ByIDs returns the tasks with these ids, in no particular order, whoever owns them. Callers check
// visibility (Task.VisibleTo) before answering with them.
func (s TaskStore) ByIDs(ctx context.Context, ids []uuid.UUID) ([]Task, error) {
	rows, err := s.q.Query(ctx, `SELECT `+taskColumns+` FROM tasks WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	tasks, err := pgx.CollectRows(rows, scanTask)
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

// Empty reports whether the patch changes nothing.
func (p TaskPatch) Empty() bool {
	cols, _ := p.sets()
	return len(cols) == 0
}

// Update applies patch to the task; writerID is who makes the change (for read-your-writes). The
// caller has locked the row (Lock) and decided that writerID may make this change at this version.
// Every change bumps version and updated_at.
func (s TaskStore) Update(ctx context.Context, id, writerID uuid.UUID, patch TaskPatch) (*Task, error) {
	cols, args := patch.sets()
	if len(cols) == 0 {
		return s.Get(ctx, id)
	}
	args = append(args, id)
	sql := fmt.Sprintf(`UPDATE tasks SET %s, version = version + 1, updated_at = now() WHERE id = $%d RETURNING %s`,
		strings.Join(cols, ", "), len(args), taskColumns)
	rows, err := s.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	task, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Task])
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	s.reportWrite(ctx, writerID, id, task.OwnerID)
	return task, nil
}

// Delete removes the task; writerID is who deletes it. Like Update, the caller has locked the row
// and decided.
func (s TaskStore) Delete(ctx context.Context, id, writerID uuid.UUID) error {
	var ownerID uuid.UUID
	err := s.q.QueryRow(ctx, `DELETE FROM tasks WHERE id = $1 RETURNING owner_id`, id).Scan(&ownerID)
	if err != nil {
		return mapError(err, "task")
	}
	s.reportWrite(ctx, writerID, id, ownerID)
	return nil
}

// reportWrite reports a task write: the task and its owner's counts change. A writer other than the
// owner (the assignee) is named too, so read-your-writes keeps their reads on the primary.
func (s TaskStore) reportWrite(ctx context.Context, writerID, id, ownerID uuid.UUID) {
	keys := []EntityKey{{EntityTask, id}, {EntityTaskCounts, ownerID}}
	if writerID != ownerID {
		keys = append(keys, EntityKey{EntityWriter, writerID})
	}
	s.changed.add(ctx, keys...)
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
