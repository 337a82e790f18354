package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/webhook"
	"github.com/taskgraph/taskgraph/internal/webhooks"
)

// KindDeliverWebhook POSTs one notification to one webhook.
const KindDeliverWebhook = "deliver_webhook"

// webhookMaxAttempts bounds the deliveries of one notification to one webhook.
const webhookMaxAttempts = 8

// DeliverWebhookArgs: deliver notification NotificationID to webhook WebhookID.
type DeliverWebhookArgs struct {
	WebhookID      uuid.UUID `json:"webhook_id"`
	NotificationID uuid.UUID `json:"notification_id"`
}

// Kind implements river.JobArgs.
func (DeliverWebhookArgs) Kind() string { return KindDeliverWebhook }

// InsertOpts: one delivery per (webhook, notification), at most 8 attempts.
func (DeliverWebhookArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: webhookMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// Deliveries enqueues what written notifications go out as besides the in-app list: a
// deliver_webhook job per webhook of each recipient and, when email is configured, a deliver_email
// job per notification.
type Deliveries struct {
	Email bool // SMTP_URL is set
}

// Enqueue enqueues, with s (inside the transaction that wrote them), the deliveries of written: they
// exist if and only if the notifications do.
func (d Deliveries) Enqueue(ctx context.Context, s db.Stores, written []db.NotificationRef) error {
	if len(written) == 0 {
		return nil
	}
	hooks, err := s.Notifications.WebhookDeliveries(ctx, written)
	if err != nil {
		return err
	}
	out := make([]db.Job, 0, len(hooks)+len(written))
	for _, h := range hooks {
		out = append(out, DeliverWebhookArgs{WebhookID: h.WebhookID, NotificationID: h.NotificationID})
	}
	if d.Email {
		for _, w := range written {
			out = append(out, DeliverEmailArgs{NotificationID: w.ID, UserID: w.UserID})
		}
	}
	return s.Jobs.Enqueue(ctx, out...)
}

// WebhookPayload is the JSON body of a delivery.
type WebhookPayload struct {
	ID        string              `json:"id"`
	Kind      db.NotificationKind `json:"kind"`
	Message   string              `json:"message"`
	TaskID    *string             `json:"taskId"`
	CreatedAt time.Time           `json:"createdAt"`
}

// DeliverWebhookWorker POSTs a notification to a webhook, signed with its secret. A 2xx answer
// completes the job; other answers and network errors fail the attempt (River retries with backoff,
// RetryBase × attempt⁴); a 4xx other than 408 and 429 cancels it, as does a webhook or
// notification deleted meanwhile.
type DeliverWebhookWorker struct {
	river.WorkerDefaults[DeliverWebhookArgs]
	Webhooks      *webhooks.Service
	Notifications *notifications.Service
	Client        *http.Client
	RetryBase     time.Duration
	Logger        *slog.Logger
}

// NextRetry implements river.Worker: RetryBase × attempt⁴ (River's own policy with a 1 s base).
func (w *DeliverWebhookWorker) NextRetry(job *river.Job[DeliverWebhookArgs]) time.Time {
	n := float64(max(job.Attempt, 1))
	return time.Now().Add(time.Duration(float64(w.RetryBase) * math.Pow(n, 4)))
}

// Work implements river.Worker.
func (w *DeliverWebhookWorker) Work(ctx context.Context, job *river.Job[DeliverWebhookArgs]) error {
	a := job.Args
	hook, err := w.Webhooks.ForDelivery(ctx, a.WebhookID)
	if errors.Is(err, apperr.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("webhook %s was deleted", a.WebhookID))
	}
	if err != nil {
		return err
	}
	n, err := w.Notifications.ForRecipient(ctx, hook.UserID, a.NotificationID)
	if errors.Is(err, apperr.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("notification %s is gone", a.NotificationID))
	}
	if err != nil {
		return err
	}
	p := WebhookPayload{ID: n.GlobalID(), Kind: n.Kind, Message: n.Message(), CreatedAt: n.CreatedAt}
	if n.TaskID != nil {
		tid := globalid.Encode(globalid.KindTask, *n.TaskID)
		p.TaskID = &tid
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	deliveryID := strconv.FormatInt(job.ID, 10)
	ts := time.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return river.JobCancel(fmt.Errorf("webhook %s: bad URL: %w", hook.ID, err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Taskgraph-Webhook/1")
	req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(webhook.HeaderDelivery, deliveryID)
	req.Header.Set(webhook.HeaderSignature, webhook.Sign(hook.Secret, ts, body))
	// Never log the secret, the signature or the body: the webhook id, URL and outcome only.
	log := w.logger().With("webhook_id", hook.ID.String(), "delivery_id", deliveryID,
		"notification_id", n.ID.String(), "attempt", job.Attempt)
	start := time.Now()
	resp, err := w.Client.Do(req)
	if err != nil {
		log.WarnContext(ctx, "webhook delivery failed", "error", err.Error())
		if errors.Is(err, webhook.ErrForbiddenAddress) {
			return river.JobCancel(fmt.Errorf("webhook %s: %w", hook.ID, webhook.ErrForbiddenAddress))
		}
		return fmt.Errorf("webhook %s: delivery failed: %w", hook.ID, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	log = log.With("status", resp.StatusCode, "duration_ms", time.Since(start).Milliseconds())
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		log.InfoContext(ctx, "webhook delivered")
		return nil
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		log.WarnContext(ctx, "webhook delivery refused: not retrying")
		return river.JobCancel(fmt.Errorf("webhook %s answered %d", hook.ID, code))
	default:
		log.WarnContext(ctx, "webhook delivery failed: will retry")
		return fmt.Errorf("webhook %s answered %d", hook.ID, code)
	}
}

func (w *DeliverWebhookWorker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}
