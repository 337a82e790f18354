package db

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Bulk operations (bulkUpdateTasks, bulkDeleteTasks) walk one owner's tasks in creation order,
// (created_at, id), a chunk at a time, on tasks_owner_created_at_idx. The walk's key never
// changes under a write, so a chunk that changes the very columns the filter reads (filter
// status TODO, patch status DONE) neither skips nor revisits a task, and a job resumes after its
// last committed chunk by remembering only the last key.

// BulkChunkSize is how many tasks one chunk of a bulk operation handles: large enough that the
// per-chunk overhead (a transaction, the job's progress) is small, small enough that a chunk's
// locks and its retry after a crash stay cheap.
const BulkChunkSize = 500

// maxTaskTags is the tasks.tags CHECK constraint: a bulk update that would push a task past it
// leaves that task alone.
const maxTaskTags = 20

// TaskKey is a task's place in creation order: a bulk walk resumes after it.
type TaskKey struct {
	CreatedAt time.Time `db:"created_at" json:"createdAt"`
	ID        uuid.UUID `db:"id" json:"id"`
}

// BulkScope is the set of tasks a bulk operation acts on: those of Tasks that Filter matches and
// that existed at RequestedAt (tasks created later are left alone). Which tasks a user may change in
// bulk is the domain's decision (their own: Tasks.Assigned false).
type BulkScope struct {
	Tasks       TaskScope
	Filter      *TaskFilter
	RequestedAt time.Time
}

// where is the scope as SQL conditions, after the key when one is given.
func (sc BulkScope) where(after *TaskKey) (where, error) {
	if sc.Tasks.Assigned {
		return where{}, errors.New("db: a bulk operation acts on an owner's tasks")
	}
	w := sc.Filter.where(sc.Tasks)
	w.add("created_at <= ?", sc.RequestedAt)
	if after != nil {
		w.add("(created_at, id) > (?, ?)", after.CreatedAt, after.ID)
	}
	return w, nil
}

// BulkTaskPatch is what a bulk update changes; only Set fields (and non-empty tag lists) do.
// Tags are compared lower-cased, as they are stored.
type BulkTaskPatch struct {
	Status     Optional[TaskStatus]
	Priority   Optional[Priority]
	DueAt      Optional[*time.Time]
	AddTags    []string
	RemoveTags []string
	AssigneeID Optional[*uuid.UUID] // Value nil unassigns; a user that does not exist is NOT_FOUND
}

// Empty reports whether the patch changes nothing.
func (p BulkTaskPatch) Empty() bool {
	return !p.Status.Set && !p.Priority.Set && !p.DueAt.Set && len(p.AddTags) == 0 && len(p.RemoveTags) == 0 && !p.AssigneeID.Set
}

// BulkChange is one task a bulk update changed: before (for the notifications the change causes)
// and the row as written.
type BulkChange struct {
	Before TaskBefore
	After  Task
}

// BulkChunk is what one chunk of a bulk operation did.
type BulkChunk struct {
	// Matched is how many tasks of the scope the chunk went through.
	Matched int
	// Last is the key of the last of them (nil when none): the next chunk starts after it.
	Last *TaskKey
	// Done is true when the walk reached the end of the scope (the chunk was not full).
	Done bool
	// Changed are the tasks a bulk update changed (tasks that already had the patch's values, or
	// would exceed 20 tags, are not); Deleted the ids a bulk delete deleted.
	Changed []BulkChange
	Deleted []uuid.UUID
}

// CountBulk counts the tasks in the scope (a bulk operation's total).
func (s TaskStore) CountBulk(ctx context.Context, sc BulkScope) (int, error) {
	w, err := sc.where(nil)
	if err != nil {
		return 0, err
	}
	n, err := countRows(ctx, s.q, "tasks", w)
	return n, mapError(err, "tasks")
}

// chunkSelect reads the next chunk of the scope in creation order, locking its rows with lock
// until the transaction ends: what the chunk then writes is exactly what it read.
func chunkSelect(sc BulkScope, after *TaskKey, limit int, columns, lock string) (string, []any, error) {
	if limit < 1 {
		return "", nil, fmt.Errorf("db: bulk chunk limit %d", limit)
	}
	w, err := sc.where(after)
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("SELECT %s FROM tasks WHERE %s ORDER BY created_at, id LIMIT %d %s", columns, w.sql(), limit, lock), w.args, nil
}

// UpdateChunk applies patch to the next chunk (at most limit tasks) of the scope after the key
// (nil: from the start), inside InTx. Only tasks the patch actually changes are written, each
// once, with version bumped and updated_at set; so running the same chunk again changes nothing
// (a retried chunk is a no-op, checkpoint or not). The changed tasks and their owner's counts are
// reported for caches and live subscriptions when the transaction commits. A patch whose assignee
// does not exist (or was deleted meanwhile) is NOT_FOUND, with nothing written.
func (s TaskStore) UpdateChunk(ctx context.Context, sc BulkScope, patch BulkTaskPatch, after *TaskKey, limit int) (*BulkChunk, error) {
	if _, ok := s.q.(pgx.Tx); !ok {
		return nil, errors.New("db: TaskStore.UpdateChunk must run inside InTx")
	}
	if patch.Empty() {
		return nil, errors.New("db: empty bulk patch")
	}
	// FOR NO KEY UPDATE is the lock the UPDATE itself takes: the row cannot change between this
	// read (the "before" of notifications) and the write, and rows merely referencing the task
	// (notifications) are not blocked.
	sel, args, err := chunkSelect(sc, after, limit, "id, created_at, assignee_id, status", "FOR NO KEY UPDATE")
	if err != nil {
		return nil, err
	}
	type row struct {
		ID         uuid.UUID  `db:"id"`
		CreatedAt  time.Time  `db:"created_at"`
		AssigneeID *uuid.UUID `db:"assignee_id"`
		Status     TaskStatus `db:"status"`
	}
	rows, err := s.q.Query(ctx, sel, args...)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	chunk, err := pgx.CollectRows(rows, pgx.RowToStructByName[row])
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	out := &BulkChunk{Matched: len(chunk), Done: len(chunk) < limit}
	if len(chunk) == 0 {
		return out, nil
	}
	last := chunk[len(chunk)-1]
	out.Last = &TaskKey{CreatedAt: last.CreatedAt, ID: last.ID}

	ids := make([]uuid.UUID, len(chunk))
	before := make(map[uuid.UUID]TaskBefore, len(chunk))
	for i, r := range chunk {
		ids[i] = r.ID
		before[r.ID] = TaskBefore{OwnerID: sc.Tasks.UserID, AssigneeID: r.AssigneeID, Status: r.Status}
	}
	sql, uargs := patch.updateSQL(ids)
	rows, err = s.q.Query(ctx, sql, uargs...)
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	changed, err := pgx.CollectRows(rows, pgx.RowToStructByName[Task])
	if err != nil {
		return nil, mapTaskWriteError(err)
	}
	if len(changed) == 0 {
		return out, nil
	}
	// In walk order, so the notifications of a chunk are enqueued in a stable order.
	slices.SortFunc(changed, func(a, b Task) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	keys := make([]EntityKey, 0, len(changed)+1)
	out.Changed = make([]BulkChange, len(changed))
	for i, t := range changed {
		out.Changed[i] = BulkChange{Before: before[t.ID], After: t}
		keys = append(keys, EntityKey{EntityTask, t.ID})
	}
	s.changed.add(ctx, append(keys, EntityKey{EntityTaskCounts, sc.Tasks.UserID})...)
	return out, nil
}

// updateSQL is the UPDATE of one chunk: the patched columns set, only on the rows among ids where
// at least one of them differs (IS DISTINCT FROM, so NULLs compare as values), and not on rows the
// added tags would take past maxTaskTags.
func (p BulkTaskPatch) updateSQL(ids []uuid.UUID) (string, []any) {
	args := []any{ids}
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var sets, differs, guards []string
	set := func(col, value string) {
		sets = append(sets, col+" = "+value)
		differs = append(differs, col+" IS DISTINCT FROM "+value)
	}
	if p.Status.Set {
		set("status", param(string(p.Status.Value)))
	}
	if p.Priority.Set {
		set("priority", param(int16(p.Priority.Value)))
	}
	if p.DueAt.Set {
		set("due_at", param(p.DueAt.Value)+"::timestamptz")
	}
	if p.AssigneeID.Set {
		set("assignee_id", param(p.AssigneeID.Value)+"::uuid")
	}
	if len(p.AddTags) > 0 || len(p.RemoveTags) > 0 {
		// The task's tags in their order, then the added ones it lacks, minus the removed ones
		// (a tag both added and removed ends up removed); duplicates collapse to the first.
		tags := fmt.Sprintf(`ARRAY(SELECT u.tag FROM unnest(tags || %s::text[]) WITH ORDINALITY AS u(tag, n)
			WHERE u.tag <> ALL(%s::text[]) GROUP BY u.tag ORDER BY min(u.n))`,
			param(normalizeTags(p.AddTags)), param(normalizeTags(p.RemoveTags)))
		set("tags", tags)
		guards = append(guards, fmt.Sprintf("cardinality(%s) <= %d", tags, maxTaskTags))
	}
	where := "id = ANY($1) AND (" + strings.Join(differs, " OR ") + ")"
	for _, g := range guards {
		where += " AND " + g
	}
	return fmt.Sprintf("UPDATE tasks SET %s, version = version + 1, updated_at = now() WHERE %s RETURNING %s",
		strings.Join(sets, ", "), where, taskColumns), args
}

// normalizeTags lower-cases and trims tags as stored (validation already did; this keeps the
// comparison right for any caller), dropping duplicates; never nil, so it binds as '{}'.
func normalizeTags(in []string) []string {
	out := make([]string, 0, len(in))
	for _, t := range in {
		t = strings.ToLower(strings.TrimSpace(t))
		if t != "" && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// DeleteChunk deletes the next chunk (at most limit tasks) of the scope after the key (nil: from
// the start), inside InTx, and reports the deleted tasks and their owner's counts when the
// transaction commits. Running it again deletes nothing more than what is still there.
func (s TaskStore) DeleteChunk(ctx context.Context, sc BulkScope, after *TaskKey, limit int) (*BulkChunk, error) {
	if _, ok := s.q.(pgx.Tx); !ok {
		return nil, errors.New("db: TaskStore.DeleteChunk must run inside InTx")
	}
	// FOR UPDATE (the DELETE's own lock) in the subquery: the LIMIT counts only rows still there
	// once locked, so a full chunk is never mistaken for the end of the walk.
	sel, args, err := chunkSelect(sc, after, limit, "id", "FOR UPDATE")
	if err != nil {
		return nil, err
	}
	rows, err := s.q.Query(ctx, `DELETE FROM tasks WHERE id IN (`+sel+`) RETURNING id, created_at`, args...)
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	deleted, err := pgx.CollectRows(rows, pgx.RowToStructByName[TaskKey])
	if err != nil {
		return nil, mapError(err, "tasks")
	}
	out := &BulkChunk{Matched: len(deleted), Done: len(deleted) < limit}
	if len(deleted) == 0 {
		return out, nil
	}
	keys := make([]EntityKey, 0, len(deleted)+1)
	out.Deleted = make([]uuid.UUID, len(deleted))
	last := deleted[0]
	for i, k := range deleted {
		out.Deleted[i] = k.ID
		keys = append(keys, EntityKey{EntityTask, k.ID})
		if keyLess(last, k) {
			last = k
		}
	}
	out.Last = &last
	s.changed.add(ctx, append(keys, EntityKey{EntityTaskCounts, sc.Tasks.UserID})...)
	return out, nil
}

// keyLess orders task keys as PostgreSQL orders (created_at, id): uuids compare byte-wise.
func keyLess(a, b TaskKey) bool {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c < 0
	}
	return bytes.Compare(a.ID[:], b.ID[:]) < 0
}
