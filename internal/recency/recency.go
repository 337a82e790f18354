// Package recency remembers which users wrote in the last few seconds, so that their reads go to the
// primary and they always read their own writes, even when replicas lag. With Redis the memory is
// shared by every instance (a user's next request may land anywhere behind the load balancer).
package recency

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/redisx"
)

// Tracker implements db.WriteTracker.
type Tracker struct {
	window time.Duration
	local  *expirable.LRU[uuid.UUID, struct{}]
	rdb    *redis.Client // nil: this instance only
	prefix string
	guard  *redisx.Guard
}

// New returns a tracker remembering writes for window; rdb may be nil. A window of 0 (or less)
// tracks nobody: every read may go to a replica. (The LRU and Redis would read a zero TTL as
// "never expires" and pin every writer to the primary for good.)
func New(window time.Duration, rdb *redis.Client, prefix string, logger *slog.Logger) *Tracker {
	t := &Tracker{
		window: window,
		local:  expirable.NewLRU[uuid.UUID, struct{}](100_000, nil, window),
		rdb:    rdb,
		prefix: prefix,
	}
	if rdb != nil {
		t.guard = redisx.NewGuard("recency", logger, redisx.GuardOptions{})
	}
	return t
}

// MarkWrite records that userID just wrote.
func (t *Tracker) MarkWrite(ctx context.Context, userID uuid.UUID) {
	if t.window <= 0 {
		return
	}
	t.local.Add(userID, struct{}{})
	if t.rdb == nil {
		return
	}
	_ = t.guard.Do(context.WithoutCancel(ctx), func(ctx context.Context) error {
		return t.rdb.Set(ctx, t.prefix+userID.String(), 1, t.window).Err()
	})
}

// RecentlyWrote reports whether userID wrote within the window, on any instance. When Redis cannot
// answer it says yes: reading from the primary is always correct, only slower.
func (t *Tracker) RecentlyWrote(ctx context.Context, userID uuid.UUID) bool {
	if t.window <= 0 {
		return false
	}
	if t.local.Contains(userID) {
		return true
	}
	if t.rdb == nil {
		return false
	}
	var n int64
	err := t.guard.Do(ctx, func(ctx context.Context) error {
		var err error
		n, err = t.rdb.Exists(ctx, t.prefix+userID.String()).Result()
		return err
	})
	return err != nil || n > 0
}

// Invalidate implements db.Invalidator: every write names its user (a user row or the owner's task
// counts), and that user is marked as a recent writer.
func (t *Tracker) Invalidate(ctx context.Context, keys []db.EntityKey) {
	for _, k := range keys {
		if k.Kind == db.EntityUser || k.Kind == db.EntityTaskCounts || k.Kind == db.EntityWriter {
			t.MarkWrite(ctx, k.ID)
		}
	}
}
