// Package notifications owns the in-app notifications users read: their lists, unread counts,
// marking read, the live feed (Watch), and the rule that a notification is its recipient's alone
// (internal/policy). Background workers (internal/jobs) write them and deliver them by webhook and
// email; they load what they deliver through ForRecipient, under the same rule.
package notifications

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
)

// Service runs the notification operations.
type Service struct {
	reads   *reads.Router
	deliver Deliverer // nil: notifications written go out in-app only
}

// New builds the notification service.
func New(r *reads.Router) *Service { return &Service{reads: r} }

// List pages through the actor's notifications, newest first (unread ones only with unreadOnly).
func (s *Service) List(ctx context.Context, a policy.Actor, unreadOnly bool, page db.PageArgs) (*db.NotificationConnection, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	return s.reads.For(ctx, a.UserID).Notifications.List(ctx, a.UserID, unreadOnly, page)
}

// Count is a notification list's totalCount (the list was authorized when it was read).
func (s *Service) Count(ctx context.Context, a policy.Actor, conn *db.NotificationConnection) (int, error) {
	return s.reads.For(ctx, a.UserID).Notifications.Count(ctx, conn)
}

// UnreadCount is User.unreadNotificationCount: visible to the user themself only.
func (s *Service) UnreadCount(ctx context.Context, a policy.Actor, userID uuid.UUID) (int, error) {
	if err := policy.CheckSeeUnreadCount(a, userID); err != nil {
		return 0, err
	}
	return s.reads.For(ctx, a.UserID).Notifications.UnreadCount(ctx, userID)
}

// Get returns a notification the actor may see; another user's answers like a missing one.
func (s *Service) Get(ctx context.Context, a policy.Actor, id uuid.UUID) (*db.Notification, error) {
	n, err := s.reads.For(ctx, a.UserID).Notifications.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := policy.CheckSeeOwned(a, n.UserID, "notification"); err != nil {
		return nil, err
	}
	return n, nil
}

// ForRecipient is Get on behalf of the notification's recipient, for the workers that deliver it.
func (s *Service) ForRecipient(ctx context.Context, recipientID, id uuid.UUID) (*db.Notification, error) {
	n, err := s.reads.Primary().Notifications.ByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := policy.CheckSeeOwned(policy.Actor{UserID: recipientID}, n.UserID, "notification"); err != nil {
		return nil, err
	}
	return n, nil
}

// maxMarkReadIDs bounds markNotificationsRead's ids, like nodes(ids).
const maxMarkReadIDs = db.MaxPageSize

// MarkRead marks the actor's unread notifications among ids as read (every one with all) and
// returns how many changed and how many stay unread. Ids of other users' notifications, missing
// ones and read ones are ignored: the answer never tells whether they exist.
func (s *Service) MarkRead(ctx context.Context, a policy.Actor, ids []uuid.UUID, all bool) (marked, unread int, err error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return 0, 0, err
	}
	if !all {
		var v apperr.Violations
		if ids == nil {
			v.Add("ids", "give ids, or all: true")
		}
		if len(ids) > maxMarkReadIDs {
			v.Add("ids", "at most 100 ids per call (or all: true)")
		}
		if err := v.Err(); err != nil {
			return 0, 0, err
		}
	}
	st := s.reads.Primary()
	if marked, err = st.Notifications.MarkRead(ctx, a.UserID, ids, all); err != nil {
		return 0, 0, err
	}
	if unread, err = st.Notifications.UnreadCount(ctx, a.UserID); err != nil {
		return 0, 0, err
	}
	return marked, unread, nil
}

// Cursor is a position in a user's notifications, oldest first: what a live feed sent last.
type Cursor struct {
	At time.Time
	ID uuid.UUID
}

// Latest is the position of the actor's newest notification (the zero Cursor when they have none):
// a live feed starts there.
func (s *Service) Latest(ctx context.Context, a policy.Actor) (Cursor, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return Cursor{}, err
	}
	at, id, err := s.reads.Primary().Notifications.Latest(ctx, a.UserID)
	return Cursor{At: at, ID: id}, err
}

// feedBatch bounds one catch-up read of a live feed.
const feedBatch = 100

// After returns the actor's notifications written after c, oldest first (at most 100), and the
// position after them.
func (s *Service) After(ctx context.Context, a policy.Actor, c Cursor) ([]*db.Notification, Cursor, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, c, err
	}
	rows, err := s.reads.Primary().Notifications.After(ctx, a.UserID, c.At, c.ID, feedBatch)
	if err != nil {
		return nil, c, err
	}
	out := make([]*db.Notification, len(rows))
	for i := range rows {
		out[i] = &rows[i]
	}
	if n := len(rows); n > 0 {
		c = Cursor{At: rows[n-1].CreatedAt, ID: rows[n-1].ID}
	}
	return out, c, nil
}

// Watch is the actor's live feed of new notifications, oldest first, starting after their newest
// one now, until ctx ends. Every event about the actor, and every gap in the events (a full buffer,
// a lost listener connection), reads from the last position sent, so a lost event delays nothing
// past the next read.
func (s *Service) Watch(ctx context.Context, a policy.Actor, bus *events.Bus) (<-chan *db.Notification, error) {
	if bus == nil {
		return nil, apperr.New(apperr.Internal, "live updates are not available")
	}
	pos, err := s.Latest(ctx, a)
	if err != nil {
		return nil, err
	}
	sub := bus.Subscribe(func(ev events.Event) bool {
		return ev.Kind == events.KindNotification && ev.HasUser(a.UserID)
	}, 0)
	out := make(chan *db.Notification, 1)
	go func() {
		defer close(out)
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.C:
			case <-sub.Gaps:
			}
			var batch []*db.Notification
			if batch, pos, err = s.After(ctx, a, pos); err != nil {
				continue // retried at the next event
			}
			for _, n := range batch {
				select {
				case out <- n:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// ForEmail is what an email delivery needs: the notification, loaded on behalf of its recipient
// (ForRecipient), and the recipient's address as it is now. NOT_FOUND when either is gone.
func (s *Service) ForEmail(ctx context.Context, recipientID, id uuid.UUID) (*db.Notification, string, error) {
	n, err := s.ForRecipient(ctx, recipientID, id)
	if err != nil {
		return nil, "", err
	}
	u, err := s.reads.Primary().Users.ByID(ctx, recipientID)
	if err != nil {
		return nil, "", err
	}
	return n, u.Email, nil
}
