package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
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
	q querier
}

// BySeqs returns the changes with these seqs, in seq order (missing seqs, already purged, are absent).
func (s TaskChangeStore) BySeqs(ctx context.Context, seqs []int64) ([]TaskChange, error) {
	rows, err := s.q.Query(ctx, `
		SELECT seq, kind, task_id, version, owner_id, assignee_id, old_owner_id, old_assignee_id, task
		FROM task_changes WHERE seq = ANY($1) ORDER BY seq`, seqs)
	if err != nil {
		return nil, mapError(err, "task changes")
	}
	var (
		out   []TaskChange
		c     TaskChange
		image []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&c.Seq, &c.Kind, &c.TaskID, &c.Version, &c.OwnerID, &c.AssigneeID,
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
