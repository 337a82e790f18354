package server

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/cache"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// sessionLookup is the per-request token check. Without a cache it is one joined query; with one, the
// session and its user come from the cache (both invalidated on revocation, rotation, role change and
// deletion), so a signed-in request costs no SQL for authentication.
func sessionLookup(database *db.DB, c *cache.Cache) auth.SessionLookup {
	if c == nil {
		return database.Stores().Sessions.Lookup
	}
	return func(ctx context.Context, sessionID uuid.UUID) (uuid.UUID, policy.Role, error) {
		stores := database.Stores()
		sessions, err := cache.Many(ctx, c, db.EntitySession, []uuid.UUID{sessionID}, stores.Sessions.LiveByIDs,
			func(s db.Session) uuid.UUID { return s.ID })
		if err != nil {
			return uuid.Nil, "", err
		}
		s, ok := sessions[sessionID]
		if !ok || !s.ExpiresAt.After(time.Now()) {
			return uuid.Nil, "", fmt.Errorf("session %s: %w", sessionID, auth.ErrSessionInactive)
		}
		users, err := cache.Many(ctx, c, db.EntityUser, []uuid.UUID{s.UserID}, stores.Users.ByIDs,
			func(u db.User) uuid.UUID { return u.ID })
		if err != nil {
			return uuid.Nil, "", err
		}
		u, ok := users[s.UserID]
		if !ok {
			return uuid.Nil, "", fmt.Errorf("session %s: user gone: %w", sessionID, auth.ErrSessionInactive)
		}
		return u.ID, u.Role, nil
	}
}
