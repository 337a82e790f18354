// Package reads chooses where a read runs, above the persistence layer: on a healthy read replica,
// unless the actor wrote within the read-your-writes window (then on the primary, so that they
// always see their own writes). Domain services ask it for stores; db itself never decides.
package reads

import (
	"context"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

// WriteTracker remembers which users wrote recently (internal/recency implements it).
type WriteTracker interface {
	RecentlyWrote(ctx context.Context, userID uuid.UUID) bool
}

// Router picks the stores a read uses.
type Router struct {
	db     *db.DB
	writes WriteTracker // nil: nobody is tracked, every read may use a replica
}

// NewRouter routes reads over database; writes may be nil.
func NewRouter(database *db.DB, writes WriteTracker) *Router {
	return &Router{db: database, writes: writes}
}

// For returns stores for a read on behalf of userID (uuid.Nil: nobody in particular) that may be a
// little stale: a healthy replica, or the primary when userID wrote recently or no replica is healthy.
func (r *Router) For(ctx context.Context, userID uuid.UUID) db.Stores {
	if userID != uuid.Nil && r.writes != nil && r.db.HasReplicas() && r.writes.RecentlyWrote(ctx, userID) {
		return r.db.Stores()
	}
	return r.db.ReplicaStores()
}

// Primary returns stores on the primary, for reads that must see every committed write.
func (r *Router) Primary() db.Stores { return r.db.Stores() }

// DB is the database behind the router, for writes (InTx, Stores).
func (r *Router) DB() *db.DB { return r.db }
