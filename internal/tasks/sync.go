package tasks

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// SyncKind is what a delta-sync change tells the client to do with its copy of a task.
type SyncKind string

const (
	// SyncChanged: the task is visible and changed (or was created, or became visible): keep Task.
	SyncChanged SyncKind = "CHANGED"
	// SyncDeleted: the task was deleted.
	SyncDeleted SyncKind = "DELETED"
	// SyncRemoved: the task exists but the viewer may no longer see it (unassigned, owner changed).
	SyncRemoved SyncKind = "REMOVED"
)

// SyncChange is one entry of a delta-sync page.
type SyncChange struct {
	Kind    SyncKind
	TaskID  uuid.UUID
	Version int32
	Task    *db.Task // set for SyncChanged
}

// SyncPage is one answer of Changes.
type SyncPage struct {
	Changes []SyncChange
	Token   string
	HasMore bool
}

const (
	defaultSyncPage = 100
	maxSyncPage     = 500
)

// Changes is delta sync: the changes of the tasks the actor may see since token (an empty token
// starts here: no changes, a token for what commits from now on). Pages follow the writing
// transactions' ids, bounded by the oldest transaction still running, so a transaction that
// commits late never has its changes passed by the token; a token whose changes retention has
// deleted answers SYNC_TOKEN_EXPIRED.
func (s *Service) Changes(ctx context.Context, a policy.Actor, token string, first *int) (*SyncPage, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	limit := defaultSyncPage
	if first != nil {
		if *first < 1 || *first > maxSyncPage {
			return nil, apperr.FieldError(apperr.BadUserInput, "first", "must be between 1 and 500")
		}
		limit = *first
	}
	// The primary: a replica's snapshot says nothing about the primary's running transactions.
	st := s.reads.Primary().TaskChanges
	xmin, pruned, err := st.SyncHorizon(ctx)
	if err != nil {
		return nil, err
	}
	if token == "" {
		sealed, err := st.SealSyncToken(a.UserID, db.SyncPosition{Lo: xmin})
		if err != nil {
			return nil, err
		}
		return &SyncPage{Changes: []SyncChange{}, Token: sealed}, nil
	}
	pos, err := st.OpenSyncToken(a.UserID, token)
	if err != nil {
		return nil, apperr.Under("since", err)
	}
	if pruned >= pos.Lo {
		return nil, apperr.New(apperr.SyncTokenExpired,
			"the sync token is older than the change history kept: reload every task, then sync from a new token")
	}
	if pos.Hi == 0 {
		// A new window: everything that ended since the last one.
		pos.Hi = max(xmin, pos.Lo)
	}
	rows, err := st.ConcerningUser(ctx, a.UserID, pos.Lo, pos.Hi, pos.After, limit+1)
	if err != nil {
		return nil, err
	}
	page := &SyncPage{Changes: []SyncChange{}}
	if len(rows) > limit {
		rows = rows[:limit]
		pos.After = rows[len(rows)-1].Seq
		page.HasMore = true
	} else {
		pos = db.SyncPosition{Lo: pos.Hi}
	}
	for i := range rows {
		if c, ok := syncViewOf(a, &rows[i]); ok {
			page.Changes = append(page.Changes, c)
		}
	}
	if page.Token, err = st.SealSyncToken(a.UserID, pos); err != nil {
		return nil, err
	}
	return page, nil
}

// syncViewOf is what one change means to the actor's copy.
func syncViewOf(a policy.Actor, c *db.TaskChange) (SyncChange, bool) {
	v, ok := viewOf(a, c)
	if !ok {
		return SyncChange{}, false
	}
	out := SyncChange{TaskID: c.TaskID, Version: c.Version, Task: v.Task}
	switch {
	case v.Kind != db.TaskDeleted:
		out.Kind = SyncChanged
	case c.Kind == db.TaskDeleted:
		out.Kind = SyncDeleted
	default:
		out.Kind = SyncRemoved
	}
	return out, true
}

// PruneChanges deletes the task changes older than retention (TASK_CHANGES_RETENTION).
func (s *Service) PruneChanges(ctx context.Context, retention time.Duration) (int64, error) {
	return s.reads.Primary().TaskChanges.Prune(ctx, time.Now().Add(-retention))
}
