// Package webhooks owns the users' webhook endpoints: registering one (URL rules, signing secret,
// per-user limit), listing and deleting them, each visible to its owner only (internal/policy).
// How deliveries are signed and sent, and which addresses may be dialled, is internal/webhook's.
package webhooks

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
	"github.com/taskgraph/taskgraph/internal/webhook"
)

// secretBytes is the size of a webhook's signing secret.
const secretBytes = 32

// Service runs the webhook operations.
type Service struct {
	reads        *reads.Router
	allowPrivate bool // WEBHOOK_ALLOW_PRIVATE: http:// and private addresses (development only)
}

// New builds the webhook service.
func New(r *reads.Router, allowPrivate bool) *Service {
	return &Service{reads: r, allowPrivate: allowPrivate}
}

// Register validates url, draws the signing secret and stores the webhook for the actor. The secret
// is returned here and nowhere else (never logged).
func (s *Service) Register(ctx context.Context, a policy.Actor, url string) (*db.Webhook, []byte, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, nil, err
	}
	url = strings.TrimSpace(url)
	if problem := webhook.ValidateURL(url, s.allowPrivate); problem != "" {
		return nil, nil, apperr.Invalid("url", problem)
	}
	secret := make([]byte, secretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, nil, fmt.Errorf("webhook secret: %w", err)
	}
	var w *db.Webhook
	err := s.reads.DB().InTx(ctx, func(st db.Stores) error {
		var err error
		w, err = st.Webhooks.Create(ctx, a.UserID, url, secret)
		if errors.Is(err, db.ErrTooManyWebhooks) {
			return apperr.Invalid("url", fmt.Sprintf("you already have the most webhooks allowed (%d); delete one first", db.MaxWebhooksPerUser))
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return w, secret, nil
}

// List returns the actor's webhooks, read on the primary: one just registered must be listed.
func (s *Service) List(ctx context.Context, a policy.Actor) ([]db.Webhook, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	return s.reads.Primary().Webhooks.List(ctx, a.UserID)
}

// Delete removes one of the actor's webhooks; another user's answers like a missing one.
func (s *Service) Delete(ctx context.Context, a policy.Actor, id uuid.UUID) error {
	if err := policy.RequireSignedIn(a); err != nil {
		return err
	}
	st := s.reads.Primary()
	w, err := st.Webhooks.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := policy.CheckSeeOwned(a, w.UserID, "webhook"); err != nil {
		return err
	}
	return st.Webhooks.Delete(ctx, id)
}

// ForDelivery returns a webhook for the worker that delivers to it (whoever owns it; the
// notification it carries is loaded on behalf of that owner), or NOT_FOUND once deleted.
func (s *Service) ForDelivery(ctx context.Context, id uuid.UUID) (*db.Webhook, error) {
	return s.reads.Primary().Webhooks.Get(ctx, id)
}
