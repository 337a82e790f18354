package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// SessionWatch holds this instance's long-lived connections (websockets and SSE streams) to the
// sessions that opened them, and ends a connection when its session may no longer be used:
//   - at once when the database announces the session's revocation (logout, password change,
//     refresh-token reuse) or its user's deletion or role change, on every instance;
//   - when the access token the connection was opened with expires;
//   - at the latest SUBSCRIPTION_SESSION_CHECK after any of these, by a sweep that re-checks every
//     open connection against the primary in two statements (a safety net for lost events).
//
// It also caps a user's open connections per instance (LIVE_CONNECTIONS_PER_USER).
type SessionWatch struct {
	sub        *events.Subscription
	maxPerUser int
	every      time.Duration
	check      func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]accounts.LiveSession, error)
	logger     *slog.Logger

	mu     sync.Mutex
	byUser map[uuid.UUID]map[*liveConn]struct{}
}

// liveConn is one open connection: whose, until when, and how to end it.
type liveConn struct {
	actor   policy.Actor
	expires time.Time
	end     func(reason string)
	once    sync.Once
	timer   *time.Timer
}

// Reasons a connection ends, as its close reason (websocket) and log.
const (
	reasonSessionEnded = "session ended: sign in again"
	reasonRoleChanged  = "role changed: reconnect to continue"
	reasonTokenExpired = "access token expired: refresh it and reconnect"
)

func (c *liveConn) stop(reason string) {
	c.once.Do(func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.end(reason)
	})
}

// NewSessionWatch builds the watch over bus; check (accounts.Service.LiveSessions) serves the sweep
// every SUBSCRIPTION_SESSION_CHECK.
func NewSessionWatch(bus *events.Bus, maxPerUser int, every time.Duration,
	check func(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]accounts.LiveSession, error), logger *slog.Logger) *SessionWatch {
	if every <= 0 {
		every = 30 * time.Second
	}
	return &SessionWatch{
		sub: bus.Subscribe(func(ev events.Event) bool {
			return ev.Kind == events.KindSession || ev.Kind == events.KindUser
		}, 1024),
		maxPerUser: maxPerUser, every: every, check: check, logger: logger,
		byUser: map[uuid.UUID]map[*liveConn]struct{}{},
	}
}

// Open registers a connection of actor whose access token expires at expires; end is called once,
// from any goroutine, when the connection must end. The returned release unregisters it (call it
// when the connection ends for any reason). Beyond the user's cap it answers RATE_LIMITED.
func (w *SessionWatch) Open(a policy.Actor, expires time.Time, end func(reason string)) (release func(), err error) {
	c := &liveConn{actor: a, expires: expires, end: end}
	w.mu.Lock()
	conns := w.byUser[a.UserID]
	if w.maxPerUser > 0 && len(conns) >= w.maxPerUser {
		w.mu.Unlock()
		return nil, apperr.New(apperr.RateLimited,
			"too many open connections: at most %d websockets and SSE streams per user; close one first", w.maxPerUser)
	}
	if conns == nil {
		conns = map[*liveConn]struct{}{}
		w.byUser[a.UserID] = conns
	}
	conns[c] = struct{}{}
	w.mu.Unlock()
	if !expires.IsZero() {
		c.timer = time.AfterFunc(time.Until(expires), func() { c.stop(reasonTokenExpired) })
	}
	return func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if conns := w.byUser[a.UserID]; conns != nil {
			delete(conns, c)
			if len(conns) == 0 {
				delete(w.byUser, a.UserID)
			}
		}
	}, nil
}

// Open reports how many connections are open (for tests and metrics).
func (w *SessionWatch) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, conns := range w.byUser {
		n += len(conns)
	}
	return n
}

// Run ends connections on session and user events, and sweeps, until ctx ends.
func (w *SessionWatch) Run(ctx context.Context) {
	if w == nil {
		return
	}
	defer w.sub.Close()
	ticker := time.NewTicker(w.every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.sub.C:
			w.apply(ev)
		case <-w.sub.Gaps:
			w.sweep(ctx) // a revocation may be among the lost events
		case <-ticker.C:
			w.sweep(ctx)
		}
	}
}

// apply ends the connections an event concerns.
func (w *SessionWatch) apply(ev events.Event) {
	var stop []*liveConn
	reason := reasonSessionEnded
	w.mu.Lock()
	for _, user := range ev.UserIDs {
		for c := range w.byUser[user] {
			switch {
			case ev.Kind == events.KindSession && c.actor.SessionID == ev.ID:
				stop = append(stop, c)
			case ev.Kind == events.KindUser:
				if ev.Change == "ROLE" {
					reason = reasonRoleChanged
				}
				stop = append(stop, c)
			}
		}
	}
	w.mu.Unlock()
	for _, c := range stop {
		c.stop(reason)
	}
}

// sweep re-checks every open connection's session and role against the primary.
func (w *SessionWatch) sweep(ctx context.Context) {
	w.mu.Lock()
	var conns []*liveConn
	seen := map[uuid.UUID]bool{}
	var ids []uuid.UUID
	for _, cs := range w.byUser {
		for c := range cs {
			conns = append(conns, c)
			if !seen[c.actor.SessionID] {
				seen[c.actor.SessionID] = true
				ids = append(ids, c.actor.SessionID)
			}
		}
	}
	w.mu.Unlock()
	if len(ids) == 0 || w.check == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	live, err := w.check(ctx, ids)
	if err != nil {
		// A fault (database unreachable) ends nothing: the next sweep or event decides.
		w.logger.WarnContext(ctx, "session sweep failed; connections kept until the next one", "error", err.Error())
		return
	}
	for _, c := range conns {
		s, ok := live[c.actor.SessionID]
		switch {
		case !ok || s.UserID != c.actor.UserID:
			c.stop(reasonSessionEnded)
		case s.Role != c.actor.Role:
			c.stop(reasonRoleChanged)
		}
	}
}

// String describes the watch for logs.
func (w *SessionWatch) String() string {
	return fmt.Sprintf("session watch (%d connections)", w.Count())
}
