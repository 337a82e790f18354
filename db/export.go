package db

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// ExportTask is one task as an export file shows it (Task plus completed_at).
type ExportTask struct {
	ID          uuid.UUID
	OwnerID     uuid.UUID
	AssigneeID  *uuid.UUID
	Title       string
	Description *string
	Status      TaskStatus
	Priority    Priority
	DueAt       *time.Time
	Tags        []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CompletedAt *time.Time
	Version     int32
}

// ExportKey is a position in an export's (created_at, id) order: the last task written.
type ExportKey struct {
	CreatedAt time.Time `json:"createdAt"`
	ID        uuid.UUID `json:"id"`
}

// ExportQuery selects the tasks of one export: those of Tasks (the list the domain allowed) that
// Filter matches and that were created at or before CreatedUpTo (the request), so an export that
// resumes, or runs while tasks are added, has a fixed end.
type ExportQuery struct {
	Tasks       TaskScope
	Filter      *TaskFilter
	CreatedUpTo time.Time
}

func (q ExportQuery) where() where {
	w := q.Filter.where(q.Tasks)
	w.add("created_at <= ?", q.CreatedUpTo)
	return w
}

// CountForExport counts the tasks an export will write (its total, for progress).
func (s TaskStore) CountForExport(ctx context.Context, q ExportQuery) (int, error) {
	n, err := countRows(ctx, s.q, "tasks", q.where())
	return n, mapError(err, "tasks")
}

const exportColumns = "id, owner_id, assignee_id, title, description, status, priority, due_at, tags, " +
	"created_at, updated_at, completed_at, version"

// ExportRows streams up to limit tasks of q after key after (nil: from the start) in (created_at, id)
// order, read in index order from the (owner_id | assignee_id, created_at, id) indexes. Rows are
// read from the connection one at a time into one ExportTask that is reused: the caller must copy
// what it keeps past the next iteration. Breaking out of the loop ends the query (pgx discards the
// rest of the page). A failure is yielded once, as the last pair.
func (s TaskStore) ExportRows(ctx context.Context, q ExportQuery, after *ExportKey, limit int) iter.Seq2[*ExportTask, error] {
	return func(yield func(*ExportTask, error) bool) {
		w := q.where()
		if after != nil {
			w.add("(created_at, id) > (?, ?)", after.CreatedAt, after.ID)
		}
		tx, err := s.q.Begin(ctx)
		if err != nil {
			yield(nil, mapError(err, "tasks"))
			return
		}
		defer func() { _ = tx.Rollback(ctx) }() // read only: nothing to commit
		// Index order, never a sort: a planner that underestimates the user's rows (statistics not
		// yet analyzed, or a user far above the average) picks a bitmap scan and sorts every row
		// after the key for each page of 1000, which makes an export quadratic in its size.
		if _, err := tx.Exec(ctx, "SET LOCAL enable_sort = off"); err != nil {
			yield(nil, mapError(err, "tasks"))
			return
		}
		rows, err := tx.Query(ctx, fmt.Sprintf("SELECT %s FROM tasks WHERE %s ORDER BY created_at, id LIMIT %d",
			exportColumns, w.sql(), limit), w.args...)
		if err != nil {
			yield(nil, mapError(err, "tasks"))
			return
		}
		defer rows.Close()
		var t ExportTask
		for rows.Next() {
			t = ExportTask{}
			err := rows.Scan(&t.ID, &t.OwnerID, &t.AssigneeID, &t.Title, &t.Description, &t.Status, &t.Priority,
				&t.DueAt, &t.Tags, &t.CreatedAt, &t.UpdatedAt, &t.CompletedAt, &t.Version)
			if err != nil {
				yield(nil, mapError(err, "tasks"))
				return
			}
			if !yield(&t, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(nil, mapError(err, "tasks"))
		}
	}
}

// ReadChunkInto reads chunk seq of an export file into buf's memory (grown only when the chunk does
// not fit) and returns it; ok false when there is no such chunk. Unlike ReadChunk it allocates
// nothing per chunk once buf is large enough, so a download holds one chunk buffer, reused.
func (s BackgroundJobStore) ReadChunkInto(ctx context.Context, jobID uuid.UUID, seq int, buf []byte) (_ []byte, ok bool, err error) {
	rows, err := s.q.Query(ctx, `SELECT data FROM export_chunks WHERE job_id = $1 AND seq = $2`, jobID, seq)
	if err != nil {
		return buf, false, mapError(err, "export chunk")
	}
	defer rows.Close()
	if !rows.Next() {
		return buf, false, mapError(rows.Err(), "export chunk")
	}
	dst := pgtype.PreallocBytes(buf[:cap(buf)])
	if err := rows.Scan(&dst); err != nil {
		return buf, false, mapError(err, "export chunk")
	}
	rows.Close()
	return dst, true, mapError(rows.Err(), "export chunk")
}

// ChunkSizes returns the byte size of each chunk of job jobID's export file, in order (without
// reading the data: PostgreSQL knows a value's size from its header), so a byte range can start
// at the right chunk.
func (s BackgroundJobStore) ChunkSizes(ctx context.Context, jobID uuid.UUID) ([]int, error) {
	rows, err := s.q.Query(ctx, `SELECT octet_length(data) FROM export_chunks WHERE job_id = $1 ORDER BY seq`, jobID)
	if err != nil {
		return nil, mapError(err, "export chunks")
	}
	sizes, err := pgx.CollectRows(rows, pgx.RowTo[int])
	return sizes, mapError(err, "export chunks")
}
