package db

import (
	"context"
	"sync"

	"github.com/google/uuid"
)

// EntityKind names a cached entity family.
type EntityKind string

const (
	EntityUser       EntityKind = "user"
	EntityTask       EntityKind = "task"
	EntityTaskCounts EntityKind = "counts"
	EntitySession    EntityKind = "session"
	// EntityWriter names a user who wrote without changing anything cached (e.g. registered): only
	// read-your-writes routing cares.
	EntityWriter EntityKind = "writer"
)

// EntityKey identifies one cached entity that a write changed.
type EntityKey struct {
	Kind EntityKind
	ID   uuid.UUID
}

// Invalidator learns, after commit, which entities a write changed, so caches drop them. Stores call
// it for every write path; db never knows what (if anything) caches them.
type Invalidator interface {
	Invalidate(ctx context.Context, keys []EntityKey)
}

// changeSet collects what stores changed. Outside a transaction it reports at once (the statement
// has committed); inside one it holds the keys until the transaction commits, and drops them if it
// rolls back.
type changeSet struct {
	inv       Invalidator
	immediate bool
	mu        sync.Mutex
	keys      []EntityKey
}

func (c *changeSet) add(ctx context.Context, keys ...EntityKey) {
	if c == nil || c.inv == nil {
		return
	}
	if c.immediate {
		c.inv.Invalidate(ctx, keys)
		return
	}
	c.mu.Lock()
	c.keys = append(c.keys, keys...)
	c.mu.Unlock()
}

func (c *changeSet) flush(ctx context.Context) {
	if c == nil || c.inv == nil || len(c.keys) == 0 {
		return
	}
	c.inv.Invalidate(ctx, c.keys)
}

// Invalidators fans one change report out to several listeners (the cache, the write tracker).
type Invalidators []Invalidator

// Invalidate implements Invalidator.
func (is Invalidators) Invalidate(ctx context.Context, keys []EntityKey) {
	for _, i := range is {
		i.Invalidate(ctx, keys)
	}
}
