package db

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// IdempotencyClaim is one request's hold on its idempotency key. A context carrying it (see
// WithIdempotencyClaim) makes every InTx of the request mark the key committed inside the write's own
// transaction, so a write can never commit without its record, and a run whose claim was taken over
// (it outlived its lease) can never commit at all.
type IdempotencyClaim struct {
	Scope, Key string
	Lease      uuid.UUID
	committed  atomic.Bool
}

// Committed reports whether a transaction of the request committed with the claim.
func (c *IdempotencyClaim) Committed() bool { return c.committed.Load() }

type idempotencyClaimKey struct{}

// WithIdempotencyClaim returns ctx carrying the request's claim.
func WithIdempotencyClaim(ctx context.Context, c *IdempotencyClaim) context.Context {
	return context.WithValue(ctx, idempotencyClaimKey{}, c)
}

func idempotencyClaimFrom(ctx context.Context) *IdempotencyClaim {
	c, _ := ctx.Value(idempotencyClaimKey{}).(*IdempotencyClaim)
	return c
}

// ErrIdempotencyClaimLost: the request outlived its lease and another run of the same request took
// the key over; this run's write is rolled back.
var ErrIdempotencyClaimLost = apperr.New(apperr.IdempotencyKeyInUse,
	"another request with this Idempotency-Key took over; retry to get its answer")

// IdempotencyRecord is the stored state of a key another run holds or finished.
type IdempotencyRecord struct {
	RequestHash []byte
	LockedUntil time.Time
	CommittedAt *time.Time
	Response    []byte // nil until the answer is stored
}

// IdempotencyStore keeps idempotency keys (idempotency_keys).
type IdempotencyStore struct {
	q querier
}

// Claim takes the key for a run of the request with this hash: a new key, an expired one, or one whose
// earlier run of the same request stopped before committing and whose lease ran out. Otherwise it
// returns the record as it is (another request, a run in progress, or a finished one).
func (s IdempotencyStore) Claim(ctx context.Context, scope, key string, hash []byte, lease uuid.UUID, leaseFor, keep time.Duration) (bool, *IdempotencyRecord, error) {
	for range 3 {
		var claimed bool
		err := s.q.QueryRow(ctx, `
			INSERT INTO idempotency_keys AS k (scope, key, request_hash, lease, locked_until, expires_at)
			VALUES ($1, $2, $3, $4, now() + $5::interval, now() + $6::interval)
			ON CONFLICT (scope, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, lease = EXCLUDED.lease,
				locked_until = EXCLUDED.locked_until, expires_at = EXCLUDED.expires_at, created_at = now(),
				committed_at = NULL, response = NULL
			WHERE k.expires_at <= now()
			   OR (k.committed_at IS NULL AND k.locked_until <= now() AND k.request_hash = EXCLUDED.request_hash)
			RETURNING true`, scope, key, hash, lease, leaseFor, keep).Scan(&claimed)
		if err == nil {
			return true, nil, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, nil, mapError(err, "idempotency key")
		}
		var r IdempotencyRecord
		err = s.q.QueryRow(ctx, `
			SELECT request_hash, locked_until, committed_at, response FROM idempotency_keys
			WHERE scope = $1 AND key = $2 AND expires_at > now()`, scope, key).
			Scan(&r.RequestHash, &r.LockedUntil, &r.CommittedAt, &r.Response)
		if err == nil {
			return false, &r, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return false, nil, mapError(err, "idempotency key")
		}
		// Expired or released between the two statements: claim again.
	}
	return false, nil, errors.New("idempotency key: claim kept racing")
}

// markCommitted records, inside the write's transaction, that the claim's request committed (every
// transaction of the request checks that it still holds the claim).
func (s IdempotencyStore) markCommitted(ctx context.Context, c *IdempotencyClaim) error {
	tag, err := s.q.Exec(ctx, `
		UPDATE idempotency_keys SET committed_at = coalesce(committed_at, now())
		WHERE scope = $1 AND key = $2 AND lease = $3`, c.Scope, c.Key, c.Lease)
	if err != nil {
		return mapError(err, "idempotency key")
	}
	if tag.RowsAffected() == 0 {
		return ErrIdempotencyClaimLost
	}
	return nil
}

// Finish stores the answer of the claim's run (which committed, or wrote nothing that needed a
// transaction and succeeded).
func (s IdempotencyStore) Finish(ctx context.Context, c *IdempotencyClaim, response []byte) error {
	_, err := s.q.Exec(ctx, `
		UPDATE idempotency_keys SET response = $4, committed_at = coalesce(committed_at, now())
		WHERE scope = $1 AND key = $2 AND lease = $3`, c.Scope, c.Key, c.Lease, response)
	return mapError(err, "idempotency key")
}

// Release gives the key up after a run that committed nothing (it failed): a retry runs again.
func (s IdempotencyStore) Release(ctx context.Context, c *IdempotencyClaim) error {
	_, err := s.q.Exec(ctx, `
		DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND lease = $3 AND committed_at IS NULL`,
		c.Scope, c.Key, c.Lease)
	return mapError(err, "idempotency key")
}

// PurgeExpired deletes the keys past their expiry.
func (s IdempotencyStore) PurgeExpired(ctx context.Context) (int64, error) {
	tag, err := s.q.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at <= now()`)
	if err != nil {
		return 0, mapError(err, "idempotency keys")
	}
	return tag.RowsAffected(), nil
}
