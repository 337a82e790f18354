package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/email"
	"github.com/taskgraph/taskgraph/internal/notifications"
)

// KindDeliverEmail emails one notification to its recipient.
const KindDeliverEmail = "deliver_email"

// emailMaxAttempts bounds the sends of one notification: with a 1 s base (× attempt⁴) the last of
// 10 comes about 4 hours after the first, past most greylisting and short outages.
const emailMaxAttempts = 10

// DeliverEmailArgs: email notification NotificationID to UserID, its recipient.
type DeliverEmailArgs struct {
	NotificationID uuid.UUID `json:"notification_id"`
	UserID         uuid.UUID `json:"user_id"`
}

// Kind implements river.JobArgs.
func (DeliverEmailArgs) Kind() string { return KindDeliverEmail }

// InsertOpts: one email per notification, at most 10 attempts.
func (DeliverEmailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: emailMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// DeliverEmailWorker emails a notification to its recipient's current address. A permanent refusal
// (a 5xx reply to the message, an invalid address) cancels the job; anything else fails the attempt
// and River retries it after RetryBase × attempt⁴. Every attempt sends the same Message-ID, so a
// retry after an ambiguous end (the connection dropped after the message was sent) shows up as the
// same message, not a second one.
type DeliverEmailWorker struct {
	river.WorkerDefaults[DeliverEmailArgs]
	Notifications *notifications.Service
	// Sender is nil when this process has no SMTP_URL: the job then fails and is retried, so that a
	// process that has one can send it (a deployment where only some processes were configured).
	Sender    *email.Sender
	RetryBase time.Duration
	Logger    *slog.Logger
}

// NextRetry implements river.Worker: RetryBase × attempt⁴.
func (w *DeliverEmailWorker) NextRetry(job *river.Job[DeliverEmailArgs]) time.Time {
	n := float64(max(job.Attempt, 1))
	return time.Now().Add(time.Duration(float64(w.RetryBase) * math.Pow(n, 4)))
}

// Work implements river.Worker.
func (w *DeliverEmailWorker) Work(ctx context.Context, job *river.Job[DeliverEmailArgs]) error {
	a := job.Args
	// The address and the message are personal data: the log names the user and the notification
	// (an SMTP server's reply quoted in an error may still name the address).
	log := w.logger().With("notification_id", a.NotificationID.String(), "user_id", a.UserID.String(),
		"attempt", job.Attempt)
	if w.Sender == nil {
		log.ErrorContext(ctx, "notification email not sent: SMTP_URL is not set on this process")
		return errors.New("email: SMTP_URL is not set on this process")
	}
	n, address, err := w.Notifications.ForEmail(ctx, a.UserID, a.NotificationID)
	if errors.Is(err, apperr.ErrNotFound) {
		return river.JobCancel(fmt.Errorf("notification %s or its recipient %s is gone", a.NotificationID, a.UserID))
	}
	if err != nil {
		return fmt.Errorf("email: load notification: %w", err)
	}
	start := time.Now()
	err = w.Sender.Send(ctx, notificationEmail(w.Sender, n, address))
	log = log.With("duration_ms", time.Since(start).Milliseconds())
	if err == nil {
		log.InfoContext(ctx, "notification email sent")
		return nil
	}
	var se *email.Error
	if errors.As(err, &se) {
		log = log.With("smtp_code", se.Code, "stage", se.Stage)
	}
	if email.Permanent(err) {
		log.WarnContext(ctx, "notification email refused: not retrying", "error", err.Error())
		return river.JobCancel(fmt.Errorf("notification %s: %w", a.NotificationID, err))
	}
	log.WarnContext(ctx, "notification email failed: will retry", "error", err.Error())
	return fmt.Errorf("notification %s: %w", a.NotificationID, err)
}

func (w *DeliverEmailWorker) logger() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// notificationEmail is the mail for n: its message as the subject and the first line, plain text.
// The Message-ID is derived from the notification's id, the same on every attempt.
func notificationEmail(s *email.Sender, n *db.Notification, to string) email.Message {
	msg := n.Message()
	text := msg + "\n\n" +
		"-- \n" +
		"Taskgraph notification " + n.GlobalID() + ", " + n.CreatedAt.UTC().Format(time.RFC1123) + ".\n" +
		"You get these emails for the tasks you own or are assigned to.\n"
	return email.Message{
		To:        to,
		Subject:   "[Taskgraph] " + msg,
		Text:      text,
		MessageID: s.MessageID("notification." + n.ID.String()),
		Date:      n.CreatedAt,
	}
}
