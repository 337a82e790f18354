// Package events fans change events out to live subscriptions on every instance, over PostgreSQL
// LISTEN/NOTIFY (always available, unlike Redis).
//
// The database announces changes itself: triggers (migrations/00006_change_feed.sql) call pg_notify
// inside the writing transaction, and PostgreSQL delivers the notification at COMMIT — never for a
// write that rolled back, never lost to a process dying between commit and publish, in commit order.
// The payload is small JSON naming ids only ({kind, id, userIds, …}), never row data: subscribers
// load what they need (task changes from the task_changes log, by Seq) and apply the policy at
// delivery. The only events published from Go are peer cache invalidations (KindInvalidate).
//
// Each instance keeps one dedicated listener connection (Run). When it breaks, Run reconnects with
// backoff; events published while it was down are lost.
//
// In the process a broker hands events to subscribers through bounded buffers: when a slow
// subscriber's buffer is full the event is dropped for it and counted (Dropped).
//
// Either loss is reported to the subscribers it may have touched as a gap (Subscription.Gaps), so
// that what they show can be re-read instead of silently drifting from the database.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
)

// Channel is the PostgreSQL notification channel.
const Channel = "taskgraph_events"

// Kind is what an event is about.
type Kind string

const (
	// KindTask: a task was created, changed or deleted (ID is the task; Seq its task_changes row;
	// Change CREATED, UPDATED or DELETED; Version the version the change made; UserIDs everyone it
	// concerns: owner and assignee, before and after).
	KindTask Kind = "task"
	// KindNotification: notifications were written for UserIDs (ID unset).
	KindNotification Kind = "notification"
	// KindSession: a session was revoked (ID is the session, UserIDs its user).
	KindSession Kind = "session"
	// KindUser: a user's role changed (Change ROLE) or the user was deleted (Change DELETED); ID is the user.
	KindUser Kind = "user"
	// KindJob: a background job was created or changed status or progress (ID is the job; UserIDs its user).
	KindJob Kind = "job"
	// KindInvalidate: a committed write made these cache entries stale (Keys). Sent by processes
	// whose deployment keeps cache entries in process memory (the in-process cache, or the near
	// cache in front of Redis), so that the others drop them too.
	KindInvalidate Kind = "invalidate"
)

// KindGap is never published: a subscription's consumer hands itself an Event of this kind when
// Gaps fires, standing for "events may have been lost here".
const KindGap Kind = "gap"

// Event is one change, by ids only.
type Event struct {
	Kind    Kind        `json:"kind"`
	ID      uuid.UUID   `json:"id,omitzero"`
	UserIDs []uuid.UUID `json:"userIds,omitempty"`
	// KindTask and KindUser: what happened.
	Change  string `json:"change,omitempty"`
	Seq     int64  `json:"seq,omitempty"`
	Version int32  `json:"version,omitempty"`
	// KindInvalidate only: the changed entities as "kind:id", and the process that wrote them.
	Keys   []string `json:"keys,omitempty"`
	Origin string   `json:"origin,omitempty"`
}

// EntityKeys parses an invalidate event's Keys, skipping any that do not parse.
func (e Event) EntityKeys() []db.EntityKey {
	out := make([]db.EntityKey, 0, len(e.Keys))
	for _, k := range e.Keys {
		kind, id, ok := strings.Cut(k, ":")
		if !ok {
			continue
		}
		u, err := uuid.Parse(id)
		if err != nil {
			continue
		}
		out = append(out, db.EntityKey{Kind: db.EntityKind(kind), ID: u})
	}
	return out
}

// keysPerEvent keeps an invalidate event's payload (about 45 bytes a key) well under pg_notify's
// 8000-byte limit.
const keysPerEvent = 100

// HasUser reports whether the event names user.
func (e Event) HasUser(user uuid.UUID) bool {
	for _, u := range e.UserIDs {
		if u == user {
			return true
		}
	}
	return false
}

// DefaultBuffer is a subscriber's buffer when Subscribe is given 0.
const DefaultBuffer = 64

// Bus publishes events and delivers the ones it hears to local subscribers. A nil *Bus publishes
// nothing.
type Bus struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	mu   sync.Mutex
	subs map[*Subscription]struct{}

	dropped    atomic.Int64
	reconnects atomic.Int64
	listened   atomic.Bool // a listener has listened once: the next LISTEN is a reconnect

	// origin names this process in the invalidate events it publishes; shareInvalidations is set
	// when it publishes them at all (ShareInvalidations).
	origin             string
	shareInvalidations atomic.Bool
	readyOnce          sync.Once
	ready              chan struct{}
}

// New builds a bus publishing on pool; Run listens.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Bus {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Bus{pool: pool, logger: logger, subs: map[*Subscription]struct{}{}, ready: make(chan struct{}),
		origin: uuid.NewString()}
}

// ShareInvalidations makes Invalidate also publish every changed entity's key (KindInvalidate), for
// processes whose caches live in process memory and so cannot see each other's invalidations.
func (b *Bus) ShareInvalidations() {
	if b != nil {
		b.shareInvalidations.Store(true)
	}
}

// FromElsewhere reports whether ev was published by another process (or by nobody in particular):
// an invalidate event's own writes were already applied to this process's cache.
func (b *Bus) FromElsewhere(ev Event) bool { return ev.Origin != b.origin }

// Ready is closed once the listener has been listening (tests wait for it).
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Subscribers counts the subscriptions open on this process (live feeds, the session watch, ...).
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Dropped counts events dropped because a subscriber's buffer was full.
func (b *Bus) Dropped() int64 { return b.dropped.Load() }

// Stats returns the events dropped for slow subscribers and the listener's reconnects, since start.
func (b *Bus) Stats() (dropped, reconnects int64) { return b.dropped.Load(), b.reconnects.Load() }

// publishTimeout bounds one pg_notify.
const publishTimeout = 2 * time.Second

// Publish sends ev to every instance (this one included, through its listener).
func (b *Bus) Publish(ctx context.Context, evs ...Event) {
	if b == nil || len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	// One round trip for all of them: a bulk operation's chunk publishes hundreds.
	batch := &pgx.Batch{}
	for _, ev := range evs {
		payload, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		batch.Queue(`SELECT pg_notify($1, $2)`, Channel, string(payload))
	}
	if err := b.pool.SendBatch(ctx, batch).Close(); err != nil {
		b.logger.WarnContext(ctx, "events: publish failed", "kind", string(evs[0].Kind), "events", len(evs), "error", err.Error())
	}
}

// Invalidate implements db.Invalidator for processes whose caches live (partly) in their own memory
// (see ShareInvalidations): after a commit it tells the other processes which entities the
// write changed, so they drop them too. Otherwise it publishes nothing: live subscribers hear of
// changes from the database's own notifications.
func (b *Bus) Invalidate(ctx context.Context, keys []db.EntityKey) {
	if b == nil || !b.shareInvalidations.Load() {
		return
	}
	var (
		evs   []Event
		chunk []string
	)
	seen := make(map[db.EntityKey]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		chunk = append(chunk, string(k.Kind)+":"+k.ID.String())
		if len(chunk) == keysPerEvent {
			evs = append(evs, Event{Kind: KindInvalidate, Keys: chunk, Origin: b.origin})
			chunk = nil
		}
	}
	if len(chunk) > 0 {
		evs = append(evs, Event{Kind: KindInvalidate, Keys: chunk, Origin: b.origin})
	}
	b.Publish(ctx, evs...) // one round trip for the whole write
}

// Subscription receives the events its filter accepts on C until Close.
type Subscription struct {
	C <-chan Event
	// Gaps receives when events meant for this subscriber may have been lost since it last read C:
	// its buffer was full, or this instance's listener reconnected. The consumer should re-read
	// what it shows. At most one signal is pending; the channel is never closed.
	Gaps   <-chan struct{}
	c      chan Event
	gaps   chan struct{}
	filter func(Event) bool
	bus    *Bus
	once   sync.Once
}

// markGap signals a gap without blocking (one pending signal covers any number of losses).
func (s *Subscription) markGap() {
	select {
	case s.gaps <- struct{}{}:
	default:
	}
}

// Subscribe registers a subscriber; buffer 0 means DefaultBuffer.
func (b *Bus) Subscribe(filter func(Event) bool, buffer int) *Subscription {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	c, gaps := make(chan Event, buffer), make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, Gaps: gaps, gaps: gaps, filter: filter, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Close unregisters the subscriber (C is not closed).
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		delete(s.bus.subs, s)
		s.bus.mu.Unlock()
	})
}

// deliver hands ev to every matching subscriber without ever blocking.
func (b *Bus) deliver(ev Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		if s.filter != nil && !s.filter(ev) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			b.dropped.Add(1)
			s.markGap()
		}
	}
}

// markGapAll signals a gap to every subscriber: events may have been published while the listener
// was away.
func (b *Bus) markGapAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		s.markGap()
	}
}

// Backoff bounds of the listener's reconnects. The ceiling bounds how long live updates stay off
// after the database is back (a restart, a failover to a standby): one connection attempt every 2 s
// costs nothing, while 10 s left subscribers without events for seconds after writes had resumed.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Run keeps a listener connection until ctx ends, reconnecting with backoff.
func (b *Bus) Run(ctx context.Context) {
	if b == nil {
		return
	}
	backoff := minBackoff
	for ctx.Err() == nil {
		started := time.Now()
		err := b.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = minBackoff
		}
		b.logger.WarnContext(ctx, "events: listener lost; reconnecting (subscribers will be told to re-read)",
			"error", fmt.Sprint(err), "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (b *Bus) listen(ctx context.Context) error {
	cfg := b.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "taskgraph-events"
	cfg.RuntimeParams["statement_timeout"] = "0"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	b.readyOnce.Do(func() { close(b.ready) })
	if b.listened.Swap(true) {
		// Listening again after a break: whatever was published in between is lost.
		b.reconnects.Add(1)
		b.markGapAll()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		var ev Event
		if err := json.Unmarshal([]byte(n.Payload), &ev); err != nil {
			b.logger.WarnContext(ctx, "events: bad payload", "error", err.Error())
			continue
		}
		b.deliver(ev)
	}
}

// connLimit counts the live subscriptions of one connection.
type connLimit struct {
	max int
	n   atomic.Int64
}

type connLimitKey struct{}

// WithConnLimit returns ctx allowing at most max concurrent subscriptions for the connection it
// stands for (max <= 0: no limit).
func WithConnLimit(ctx context.Context, max int) context.Context {
	if max <= 0 {
		return ctx
	}
	return context.WithValue(ctx, connLimitKey{}, &connLimit{max: max})
}

// ErrTooManySubscriptions is Acquire's answer beyond the connection's limit.
var ErrTooManySubscriptions = fmt.Errorf("too many subscriptions on this connection")

// Acquire takes one subscription slot of the connection; release gives it back. Without a limit in
// ctx it always succeeds.
func Acquire(ctx context.Context) (release func(), max int, err error) {
	l, ok := ctx.Value(connLimitKey{}).(*connLimit)
	if !ok {
		return func() {}, 0, nil
	}
	if l.n.Add(1) > int64(l.max) {
		l.n.Add(-1)
		return nil, l.max, ErrTooManySubscriptions
	}
	var once sync.Once
	return func() { once.Do(func() { l.n.Add(-1) }) }, l.max, nil
}
