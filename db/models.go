package db

import (
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// User is a row of users. PasswordHash never leaves the server.
type User struct {
	ID           uuid.UUID   `db:"id"`
	Name         string      `db:"name"`
	Email        string      `db:"email"`
	Role         policy.Role `db:"role"`
	PasswordHash string      `db:"password_hash" json:"-"` // never cached or serialized
	CreatedAt    time.Time   `db:"created_at"`
	UpdatedAt    time.Time   `db:"updated_at"`
}

// TaskStatus is a task's workflow state, stored as text with a CHECK constraint.
type TaskStatus string

const (
	StatusTodo       TaskStatus = "TODO"
	StatusInProgress TaskStatus = "IN_PROGRESS"
	StatusDone       TaskStatus = "DONE"
)

// Priority is stored as a small integer so that ordering by priority is ordering by number.
type Priority int16

const (
	PriorityLow Priority = iota
	PriorityMedium
	PriorityHigh
	PriorityUrgent
)

// Task is a row of tasks. The owner and the assignee (if any) may see it; only the owner may change
// anything but its status.
type Task struct {
	ID          uuid.UUID  `db:"id"`
	OwnerID     uuid.UUID  `db:"owner_id"`
	AssigneeID  *uuid.UUID `db:"assignee_id"`
	Title       string     `db:"title"`
	Description *string    `db:"description"`
	Status      TaskStatus `db:"status"`
	Priority    Priority   `db:"priority"`
	DueAt       *time.Time `db:"due_at"`
	Tags        []string   `db:"tags"`
	CreatedAt   time.Time  `db:"created_at"`
	UpdatedAt   time.Time  `db:"updated_at"`
	Version     int32      `db:"version"`
}

// VisibleTo reports whether userID may see the task: its owner or its assignee.
func (t *Task) VisibleTo(userID uuid.UUID) bool {
	return t.OwnerID == userID || (t.AssigneeID != nil && *t.AssigneeID == userID)
}

// TaskCounts is how many tasks one user has, by status.
type TaskCounts struct {
	UserID     uuid.UUID `db:"owner_id"`
	Total      int32     `db:"total"`
	Todo       int32     `db:"todo"`
	InProgress int32     `db:"in_progress"`
	Done       int32     `db:"done"`
	Overdue    int32     `db:"overdue"`
}

// Node is implemented by every type the GraphQL Node interface (Query.node) can return.
type Node interface{ IsNode() }

func (User) IsNode() {}
func (Task) IsNode() {}

// GlobalID is the user's opaque Node ID (the GraphQL id field).
func (u User) GlobalID() string { return globalid.Encode(globalid.KindUser, u.ID) }

// GlobalID is the task's opaque Node ID (the GraphQL id field).
func (t Task) GlobalID() string { return globalid.Encode(globalid.KindTask, t.ID) }
