package resolvers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/webhook"
)

// webhookSecretBytes is the size of a webhook's signing secret.
const webhookSecretBytes = 32

// registerWebhook validates url, draws the secret and stores the webhook. The secret is in the
// answer and nowhere else (never logged).
func (r *Resolver) registerWebhook(ctx context.Context, userID uuid.UUID, url string) (*model.RegisterWebhookPayload, error) {
	url = strings.TrimSpace(url)
	if problem := webhook.ValidateURL(url, r.WebhookAllowPrivate); problem != "" {
		return nil, apperr.Invalid("input.url", problem)
	}
	secret := make([]byte, webhookSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	var w *db.Webhook
	err := r.DB.InTx(ctx, func(s db.Stores) error {
		var err error
		w, err = s.Webhooks.Create(ctx, userID, url, secret)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &model.RegisterWebhookPayload{Webhook: w, Secret: hex.EncodeToString(secret)}, nil
}
