package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// SessionStore keeps sign-in sessions and their refresh-token families. Only token hashes are stored.
type SessionStore struct {
	q       querier
	changed *changeSet
}

// Session is a live sign-in session (as cached for the per-request token check).
type Session struct {
	ID        uuid.UUID `db:"id"`
	UserID    uuid.UUID `db:"user_id"`
	ExpiresAt time.Time `db:"expires_at"`
}

// LiveByIDs returns the sessions with these ids that are not revoked (expiry is the caller's check,
// so a cached copy can apply it too).
func (s SessionStore) LiveByIDs(ctx context.Context, ids []uuid.UUID) ([]Session, error) {
	rows, err := s.q.Query(ctx, `SELECT id, user_id, expires_at FROM sessions WHERE id = ANY($1) AND revoked_at IS NULL`, ids)
	if err != nil {
		return nil, mapError(err, "sessions")
	}
	sessions, err := pgx.CollectRows(rows, pgx.RowToStructByName[Session])
	return sessions, mapError(err, "sessions")
}

// Create opens a session for userID with its first refresh token.
func (s SessionStore) Create(ctx context.Context, userID uuid.UUID, tokenHash []byte, expiresAt time.Time) (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.Nil, fmt.Errorf("new session id: %w", err)
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)`, id, userID, expiresAt)
	b.Queue(`INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)`, tokenHash, id, expiresAt)
	if err := s.q.SendBatch(ctx, b).Close(); err != nil {
		return uuid.Nil, mapError(err, "session")
	}
	return id, nil
}

// Rotation is the outcome of a successful refresh.
type Rotation struct {
	UserID    uuid.UUID
	SessionID uuid.UUID
}

var errRefreshInvalid = apperr.New(apperr.Unauthenticated, "refresh token is invalid, expired or revoked: sign in again")

// ErrRefreshReused reports a refresh token presented a second time: the session was revoked.
var ErrRefreshReused = apperr.New(apperr.Unauthenticated, "refresh token was already used: the session has been revoked, sign in again")

// Rotate consumes the refresh token with oldHash and stores newHash in its family, in its own
// transaction: the row lock makes two concurrent uses of one token see each other. A token that was
// already used revokes the whole session (committed) and returns ErrRefreshReused.
func (s SessionStore) Rotate(ctx context.Context, oldHash, newHash []byte, expiresAt time.Time) (Rotation, error) {
	var (
		r      Rotation
		reused bool
	)
	err := pgx.BeginFunc(ctx, s.q, func(tx pgx.Tx) error {
		var (
			usedAt, revokedAt    *time.Time
			tokenExp, sessionExp time.Time
		)
		err := tx.QueryRow(ctx, `
			SELECT s.id, s.user_id, rt.used_at, rt.expires_at, s.revoked_at, s.expires_at
			FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
			WHERE rt.token_hash = $1
			FOR UPDATE OF rt, s`, oldHash).Scan(&r.SessionID, &r.UserID, &usedAt, &tokenExp, &revokedAt, &sessionExp)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRefreshInvalid
		}
		if err != nil {
			return fmt.Errorf("look up refresh token: %w", err)
		}
		if usedAt != nil {
			reused = true // commit the revocation, then report the reuse
			_, err := SessionStore{q: tx}.Revoke(ctx, r.SessionID)
			return err
		}
		now := time.Now()
		if revokedAt != nil || !tokenExp.After(now) || !sessionExp.After(now) {
			return errRefreshInvalid
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1`, oldHash)
		b.Queue(`INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)`, newHash, r.SessionID, expiresAt)
		b.Queue(`UPDATE sessions SET expires_at = greatest(expires_at, $2) WHERE id = $1`, r.SessionID, expiresAt)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return Rotation{}, mapError(err, "refresh token")
	}
	// Committed: the session was revoked (reuse) or its expiry moved (rotation).
	s.changed.add(ctx, EntityKey{EntitySession, r.SessionID})
	if reused {
		return Rotation{}, ErrRefreshReused
	}
	return r, nil
}

// Lookup returns the user and current role of a live session, or apperr's NOT_FOUND when the session
// is revoked, expired or unknown.
func (s SessionStore) Lookup(ctx context.Context, sessionID uuid.UUID) (uuid.UUID, policy.Role, error) {
	var (
		userID uuid.UUID
		role   policy.Role
	)
	err := s.q.QueryRow(ctx, `
		SELECT u.id, u.role FROM sessions s JOIN users u ON u.id = s.user_id
		WHERE s.id = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`, sessionID).Scan(&userID, &role)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, "", apperr.New(apperr.NotFound, "session not found")
	}
	if err != nil {
		return uuid.Nil, "", fmt.Errorf("look up session: %w", err)
	}
	return userID, role, nil
}

// Revoke ends one session; it reports whether a live session was ended.
func (s SessionStore) Revoke(ctx context.Context, sessionID uuid.UUID) (bool, error) {
	tag, err := s.q.Exec(ctx, `UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, sessionID)
	if err != nil {
		return false, mapError(err, "session")
	}
	s.changed.add(ctx, EntityKey{EntitySession, sessionID})
	return tag.RowsAffected() > 0, nil
}

// RevokeOthers ends every live session of userID except keep (e.g. after a password change).
func (s SessionStore) RevokeOthers(ctx context.Context, userID, keep uuid.UUID) error {
	rows, err := s.q.Query(ctx, `UPDATE sessions SET revoked_at = now()
		WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL RETURNING id`, userID, keep)
	if err != nil {
		return mapError(err, "sessions")
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return mapError(err, "sessions")
	}
	keys := make([]EntityKey, len(ids))
	for i, id := range ids {
		keys[i] = EntityKey{EntitySession, id}
	}
	s.changed.add(ctx, keys...)
	return nil
}
