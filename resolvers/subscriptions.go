package resolvers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// defaultSessionCheckEvery applies when the resolver was built without SessionCheckEvery.
const defaultSessionCheckEvery = 30 * time.Second

// startSubscription runs one live subscription: it takes a slot of the connection's limit, listens on
// the bus for events accepted by match and turns each into zero or more values with load. When the bus
// reports that events may have been lost (a full buffer, a listener reconnect), load gets an event of
// kind events.KindGap, so that the source can resend current state or tell the client to re-read.
// The session is re-checked on every event and periodically; when it is no longer live (logout,
// password change, user deleted) the stream ends. The stream also ends with ctx (client unsubscribed,
// connection closed, shutdown).
func startSubscription[T any](ctx context.Context, r *Resolver, v policy.Actor, match func(events.Event) bool,
	load func(ctx context.Context, v policy.Actor, ev events.Event) ([]T, error)) (<-chan T, error) {
	if r.Events == nil {
		return nil, apperr.New(apperr.Internal, "live updates are not available")
	}
	release, max, err := events.Acquire(ctx)
	if err != nil {
		return nil, apperr.New(apperr.BadUserInput, "at most %d subscriptions per connection", max)
	}
	sessionID := v.SessionID
	sub := r.Events.Subscribe(func(ev events.Event) bool {
		return (ev.Kind == events.KindSession && ev.ID == sessionID) || match(ev)
	}, 0)
	every := r.SessionCheckEvery
	if every <= 0 {
		every = defaultSessionCheckEvery
	}
	out := make(chan T, 1)
	go func() {
		defer close(out)
		defer release()
		defer sub.Close()
		ticker := time.NewTicker(every)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				if !r.sessionLive(ctx, v) {
					return
				}
			case ev := <-sub.C:
				if !r.sessionLive(ctx, v) {
					return
				}
				if ev.Kind == events.KindSession {
					continue
				}
				if !deliverEvent(ctx, r, v, out, ev, load) {
					return
				}
			case <-sub.Gaps:
				// The lost events may include this session's revocation: check before anything else.
				if !r.sessionLive(ctx, v) {
					return
				}
				if !deliverEvent(ctx, r, v, out, events.Event{Kind: events.KindGap}, load) {
					return
				}
			}
		}
	}()
	return out, nil
}

// deliverEvent turns ev into values with load and sends them on out. It reports false when ctx
// ended; an event that could not be loaded is logged and skipped.
func deliverEvent[T any](ctx context.Context, r *Resolver, v policy.Actor, out chan<- T, ev events.Event,
	load func(ctx context.Context, v policy.Actor, ev events.Event) ([]T, error)) bool {
	values, err := load(ctx, v, ev)
	if err != nil {
		if ctx.Err() == nil && r.Logger != nil {
			r.Logger.WarnContext(ctx, "subscription: event not delivered", "kind", string(ev.Kind), "error", err.Error())
		}
		return ctx.Err() == nil
	}
	for _, val := range values {
		select {
		case out <- val:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// sessionLive reports whether v's session is still active for v's user. A lookup fault (database
// unreachable) keeps the subscription: it is checked again on the next event or tick.
func (r *Resolver) sessionLive(ctx context.Context, v policy.Actor) bool {
	if r.SessionCheck == nil {
		return true
	}
	userID, _, err := r.SessionCheck(ctx, v.SessionID)
	switch {
	case errors.Is(err, auth.ErrSessionInactive):
		return false
	case err != nil:
		return ctx.Err() == nil
	}
	return userID == v.UserID
}

// taskChangeSource turns task events into TaskChangedEvents for one viewer: the task is reloaded from
// the primary and sent only if the viewer may see it now. A task that is gone (or no longer visible)
// is reported DELETED only to a viewer who could see it: its owner (named in the event) or a
// subscriber that saw it during this subscription.
type taskChangeSource struct {
	r    *Resolver
	only uuid.UUID
	seen map[uuid.UUID]bool
}

func (s *taskChangeSource) next(ctx context.Context, v policy.Actor, ev events.Event) ([]*model.TaskChangedEvent, error) {
	if ev.Kind == events.KindGap {
		// Which tasks changed meanwhile is unknown (events carry no history): the client re-reads.
		return []*model.TaskChangedEvent{{Kind: model.TaskChangeKindResync}}, nil
	}
	task, err := s.r.DB.Stores().Tasks.GetVisible(ctx, v.UserID, ev.ID)
	switch {
	case errors.Is(err, apperr.ErrNotFound):
		if !s.seen[ev.ID] && !ev.HasUser(v.UserID) && ev.ID != s.only {
			return nil, nil // never visible to this viewer: not their business
		}
		delete(s.seen, ev.ID)
		gid := globalid.Encode(globalid.KindTask, ev.ID)
		return []*model.TaskChangedEvent{{Kind: model.TaskChangeKindDeleted, DeletedTaskID: &gid}}, nil
	case err != nil:
		return nil, fmt.Errorf("reload task %s: %w", ev.ID, err)
	}
	kind := model.TaskChangeKindUpdated
	if task.Version == 1 && !s.seen[ev.ID] {
		kind = model.TaskChangeKindCreated
	}
	s.seen[ev.ID] = true
	return []*model.TaskChangedEvent{{Kind: kind, Task: task}}, nil
}

// notificationSource sends the viewer's notifications written after the last one sent (or after the
// newest one when the subscription started), oldest first. Every event, a gap included, reads from
// that position, so a lost event delays nothing past the next read.
type notificationSource struct {
	r    *Resolver
	user uuid.UUID
	at   time.Time
	id   uuid.UUID
}

// notificationBatch bounds one event's catch-up read.
const notificationBatch = 100

func (s *notificationSource) next(ctx context.Context, _ policy.Actor, _ events.Event) ([]*db.Notification, error) {
	rows, err := s.r.DB.Stores().Notifications.After(ctx, s.user, s.at, s.id, notificationBatch)
	if err != nil {
		return nil, err
	}
	out := make([]*db.Notification, len(rows))
	for i := range rows {
		out[i] = &rows[i]
	}
	if n := len(rows); n > 0 {
		s.at, s.id = rows[n-1].CreatedAt, rows[n-1].ID
	}
	return out, nil
}
