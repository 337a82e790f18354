package db

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/cursor"
)

// TaskChangeKind is what a change did to a task; the GraphQL TaskChangeKind enum shares the names.
type TaskChangeKind string

const (
	TaskCreated TaskChangeKind = "CREATED"
	TaskUpdated TaskChangeKind = "UPDATED"
	TaskDeleted TaskChangeKind = "DELETED"
)

// TaskChange is one row of task_changes, which the tasks triggers write for every committed change:
// who the task concerned before and after, and the row as the change left it (nil for DELETED).
type TaskChange struct {
	Seq           int64
	Kind          TaskChangeKind
	TaskID        uuid.UUID
	Version       int32
	OwnerID       uuid.UUID
	AssigneeID    *uuid.UUID
	OldOwnerID    *uuid.UUID // nil for CREATED
	OldAssigneeID *uuid.UUID
	Task          *Task
}

// taskImage is a tasks row as to_jsonb writes it into task_changes.task.
type taskImage struct {
	ID          uuid.UUID  `json:"id"`
	OwnerID     uuid.UUID  `json:"owner_id"`
	AssigneeID  *uuid.UUID `json:"assignee_id"`
	Title       string     `json:"title"`
	Description *string    `json:"description"`
	Status      TaskStatus `json:"status"`
	Priority    Priority   `json:"priority"`
	DueAt       *time.Time `json:"due_at"`
	Tags        []string   `json:"tags"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Version     int32      `json:"version"`
}

// TaskChangeStore reads the task change log.
type TaskChangeStore struct {
	q       querier
	cursors *cursor.Codec
}

// SyncPosition is where a delta-sync client stands: every change of the transactions below Lo was
// delivered; while a window is open (Hi > 0), so were the changes of transactions in [Lo, Hi) up to
// seq After.
type SyncPosition struct {
	Lo    uint64 `json:"l"`
	Hi    uint64 `json:"h,omitempty"`
	After int64  `json:"a,omitempty"`
}

func syncScope(userID uuid.UUID) string { return cursor.Scope("taskChanges", userID.String()) }

// SealSyncToken signs the user's position as an opaque token.
func (s TaskChangeStore) SealSyncToken(userID uuid.UUID, p SyncPosition) (string, error) {
	return s.cursors.Encode(syncScope(userID), p, uuid.Nil)
}

// OpenSyncToken checks a token the user got from SealSyncToken (BAD_USER_INPUT otherwise).
func (s TaskChangeStore) OpenSyncToken(userID uuid.UUID, token string) (SyncPosition, error) {
	pos, err := s.cursors.Decode(token, syncScope(userID))
	if err != nil {
		return SyncPosition{}, err
	}
	var p SyncPosition
	if err := json.Unmarshal(pos.Key, &p); err != nil || p.Lo == 0 {
		return SyncPosition{}, cursor.Invalid()
	}
	return p, nil
}

// BySeqs returns the changes with these seqs, in seq order (missing seqs, already purged, are absent).
func (s TaskChangeStore) BySeqs(ctx context.Context, seqs []int64) ([]TaskChange, error) {
	rows, err := s.q.Query(ctx, `
		SELECT seq, kind, task_id, version, owner_id, assignee_id, old_owner_id, old_assignee_id, task
		FROM task_changes WHERE seq = ANY($1) ORDER BY seq`, seqs)
	if err != nil {
		return nil, mapError(err, "task changes")
	}
	return scanTaskChanges(rows)
}

// SyncHorizon returns the oldest transaction still running (the current snapshot's xmin: every
// transaction below it has ended, so the changes below it are final) and the highest transaction id
// whose changes retention has deleted.
func (s TaskChangeStore) SyncHorizon(ctx context.Context) (xmin, pruned uint64, err error) {
	err = s.q.QueryRow(ctx, `
		SELECT pg_snapshot_xmin(pg_current_snapshot())::text::numeric::bigint,
		       coalesce((SELECT max_xid FROM task_changes_pruned)::text::numeric::bigint, 0)`).Scan(&xmin, &pruned)
	return xmin, pruned, mapError(err, "task change horizon")
}

// ConcerningUser returns up to limit changes that concern the user (as owner or assignee, before or
// after) written by transactions with lo <= xid < hi, after seq afterSeq, in seq order.
func (s TaskChangeStore) ConcerningUser(ctx context.Context, userID uuid.UUID, lo, hi uint64, afterSeq int64, limit int) ([]TaskChange, error) {
	rows, err := s.q.Query(ctx, `
		SELECT seq, kind, task_id, version, owner_id, assignee_id, old_owner_id, old_assignee_id, task
		FROM task_changes
		WHERE xid >= $2::text::xid8 AND xid < $3::text::xid8 AND seq > $4
		  AND (owner_id = $1 OR assignee_id = $1 OR old_owner_id = $1 OR old_assignee_id = $1)
		ORDER BY seq LIMIT $5`,
		userID, strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10), afterSeq, limit)
	if err != nil {
		return nil, mapError(err, "task changes")
	}
	return scanTaskChanges(rows)
}

// Prune deletes the changes made before cutoff and records the highest transaction id deleted, so
// sync tokens that still needed them are refused. Only changes below the current snapshot's xmin go:
// a token issued later starts above every change already deleted.
func (s TaskChangeStore) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	err := s.q.QueryRow(ctx, `
		WITH gone AS (DELETE FROM task_changes
		              WHERE changed_at < $1 AND xid < pg_snapshot_xmin(pg_current_snapshot()) RETURNING xid),
		     moved AS (INSERT INTO task_changes_pruned AS p (max_xid) SELECT max(xid) FROM gone HAVING count(*) > 0
		               ON CONFLICT (only_row) DO UPDATE SET max_xid = greatest(p.max_xid, EXCLUDED.max_xid))
		SELECT count(*) FROM gone`, cutoff).Scan(&n)
	return n, mapError(err, "task changes")
}

func scanTaskChanges(rows pgx.Rows) ([]TaskChange, error) {
	var (
		out   []TaskChange
		c     TaskChange
		image []byte
	)
	_, err := pgx.ForEachRow(rows, []any{&c.Seq, &c.Kind, &c.TaskID, &c.Version, &c.OwnerID, &c.AssigneeID,
		&c.OldOwnerID, &c.OldAssigneeID, &image}, func() error {
		ch := c
		if image != nil {
			var t taskImage
			if err := json.Unmarshal(image, &t); err != nil {
				return fmt.Errorf("task change %d: %w", c.Seq, err)
			}
			if t.Tags == nil {
				t.Tags = []string{}
			}
			task := Task(t)
			ch.Task = &task
		}
		out = append(out, ch)
		return nil
	})
	return out, mapError(err, "task changes")
}
