package db

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// MaxWebhooksPerUser bounds how many webhooks one user may register.
const MaxWebhooksPerUser = 5

// ErrTooManyWebhooks: the user already has MaxWebhooksPerUser webhooks.
var ErrTooManyWebhooks = errors.New("db: the user has the most webhooks allowed")

// Webhook is a row of webhooks: a URL every notification of its user is POSTed to. Secret signs the
// deliveries; it leaves the server only once, in registerWebhook's answer, and is never logged.
type Webhook struct {
	ID        uuid.UUID `db:"id"`
	UserID    uuid.UUID `db:"user_id"`
	URL       string    `db:"url"`
	Secret    []byte    `db:"secret"`
	CreatedAt time.Time `db:"created_at"`
}

// GlobalID is the webhook's opaque ID (the GraphQL id field).
func (w Webhook) GlobalID() string { return globalid.Encode(globalid.KindWebhook, w.ID) }

// String keeps the secret out of anything that prints a webhook with %v.
func (w Webhook) String() string { return "webhook " + w.ID.String() + " " + w.URL }

const webhookColumns = "id, user_id, url, secret, created_at"

// WebhookStore reads and writes webhooks. Every read and delete by a user is scoped to them: another
// user's webhook answers like a missing one.
type WebhookStore struct {
	q querier
}

// Create registers url for userID, signed with secret, unless the user already has
// MaxWebhooksPerUser (ErrTooManyWebhooks). Use it inside InTx: it locks the user's row so that
// concurrent registrations cannot exceed the limit.
func (s WebhookStore) Create(ctx context.Context, userID uuid.UUID, url string, secret []byte) (*Webhook, error) {
	var n int64
	if _, err := s.q.Exec(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, userID); err != nil {
		return nil, mapError(err, "webhook")
	}
	if err := s.q.QueryRow(ctx, `SELECT count(*) FROM webhooks WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return nil, mapError(err, "webhook")
	}
	if n >= MaxWebhooksPerUser {
		return nil, ErrTooManyWebhooks
	}
	rows, err := s.q.Query(ctx, `INSERT INTO webhooks (user_id, url, secret) VALUES ($1, $2, $3)
		RETURNING `+webhookColumns, userID, url, secret)
	if err != nil {
		return nil, mapError(err, "webhook")
	}
	w, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Webhook])
	return w, mapError(err, "webhook")
}

// List returns userID's webhooks, oldest first.
func (s WebhookStore) List(ctx context.Context, userID uuid.UUID) ([]Webhook, error) {
	rows, err := s.q.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, mapError(err, "webhooks")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Webhook])
	return out, mapError(err, "webhooks")
}

// Delete removes the webhook id, or answers NOT_FOUND. Deliveries already queued for it are dropped
// when they run.
func (s WebhookStore) Delete(ctx context.Context, id uuid.UUID) error {
	tag, err := s.q.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return mapError(err, "webhook")
	}
	if tag.RowsAffected() == 0 {
		return apperr.New(apperr.NotFound, "webhook not found")
	}
	return nil
}

// Get returns webhook id whoever owns it, or NOT_FOUND.
func (s WebhookStore) Get(ctx context.Context, id uuid.UUID) (*Webhook, error) {
	rows, err := s.q.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id)
	if err != nil {
		return nil, mapError(err, "webhook")
	}
	w, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Webhook])
	return w, mapError(err, "webhook")
}

// IDsOf returns the ids of userID's webhooks (the deliveries a notification of theirs fans out to).
func (s WebhookStore) IDsOf(ctx context.Context, userID uuid.UUID) ([]uuid.UUID, error) {
	rows, err := s.q.Query(ctx, `SELECT id FROM webhooks WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return nil, mapError(err, "webhooks")
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return out, mapError(err, "webhooks")
}
