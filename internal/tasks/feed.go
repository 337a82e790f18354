package tasks

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/reads"
)

// Change is one event of a live task feed, as one watcher sees it.
type Change struct {
	// Kind is what happened from the watcher's point of view: the write's own kind, except that a
	// task that became visible to the watcher (assigned to them) is CREATED for them, and one that
	// stopped being visible (unassigned, deleted) is DELETED.
	Kind db.TaskChangeKind
	// Task is the task as the change left it (nil for DELETED).
	Task   *db.Task
	TaskID uuid.UUID
	// Resync: changes may have been missed here (a full buffer, a lost listener connection); the
	// watcher should re-read what it shows. Kind, Task and TaskID are unset.
	Resync bool
}

// watchBuffer is a watcher's backlog; past it the watcher is told to resync.
const watchBuffer = 64

// feedBuffer is the instance's backlog of task events from the bus: generous, since a bulk update
// announces hundreds at once, and a full one costs every watcher a resync.
const feedBuffer = 8192

// Feed delivers the database's task changes to this instance's watchers. Each event names everyone
// the change concerns, so a change that concerns no local watcher costs nothing; otherwise the
// changes are read from the log once per batch of events, shared by every watcher, and each watcher
// gets what the policy lets its actor see. Run must be running for watchers to hear anything.
type Feed struct {
	reads  *reads.Router
	logger *slog.Logger
	sub    *events.Subscription

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	users    map[uuid.UUID]int // watchers per user: who this instance must load changes for

	loads  atomic.Int64 // change-log reads, for tests and metrics
	events atomic.Int64 // task events handled, whether or not they concerned a watcher
}

type watcher struct {
	actor policy.Actor
	only  uuid.UUID // uuid.Nil: every task the actor may see
	out   chan Change
	gap   atomic.Bool // a Resync is owed (the buffer was full)
}

// NewFeed builds the feed and subscribes it to bus.
func NewFeed(bus *events.Bus, r *reads.Router, logger *slog.Logger) *Feed {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{
		reads: r, logger: logger,
		sub:      bus.Subscribe(func(ev events.Event) bool { return ev.Kind == events.KindTask }, feedBuffer),
		watchers: map[*watcher]struct{}{}, users: map[uuid.UUID]int{},
	}
}

// Loads counts the change-log reads since start.
func (f *Feed) Loads() int64 { return f.loads.Load() }

// Events counts the task events handled since start (delivered to watchers or not).
func (f *Feed) Events() int64 { return f.events.Load() }

// Watchers counts the live watchers (taskChanged subscriptions) on this instance.
func (f *Feed) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

// Run delivers until ctx ends.
func (f *Feed) Run(ctx context.Context) {
	defer f.sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.sub.Gaps:
			f.resyncAll()
		case ev := <-f.sub.C:
			batch := []events.Event{ev}
			// Take whatever else is already waiting: one read for a burst.
		drain:
			for len(batch) < 500 {
				select {
				case ev := <-f.sub.C:
					batch = append(batch, ev)
				default:
					break drain
				}
			}
			f.deliver(ctx, batch)
			f.events.Add(int64(len(batch)))
		}
	}
}

// watch registers a watcher until ctx ends.
func (f *Feed) watch(ctx context.Context, a policy.Actor, only uuid.UUID) <-chan Change {
	w := &watcher{actor: a, only: only, out: make(chan Change, watchBuffer)}
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	f.users[a.UserID]++
	f.mu.Unlock()
	out := make(chan Change)
	go func() {
		defer close(out)
		defer f.unwatch(w)
		for {
			var next Change
			select {
			case <-ctx.Done():
				return
			case next = <-w.out:
			}
			if w.gap.Swap(false) {
				next = Change{Resync: true} // what is queued may have gaps: re-read instead
				for len(w.out) > 0 {
					<-w.out
				}
			}
			select {
			case out <- next:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (f *Feed) unwatch(w *watcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.watchers, w)
	if f.users[w.actor.UserID]--; f.users[w.actor.UserID] <= 0 {
		delete(f.users, w.actor.UserID)
	}
}

// send queues c for w without blocking; a full buffer owes w a resync.
func (w *watcher) send(c Change) {
	select {
	case w.out <- c:
	default:
		w.gap.Store(true)
		select { // wake the watcher's goroutine so it sends the resync
		case w.out <- Change{Resync: true}:
		default:
		}
	}
}

func (f *Feed) resyncAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		w.gap.Store(true)
		w.send(Change{Resync: true})
	}
}

// deliver reads the changes of the events that concern a local watcher and hands each watcher its view.
func (f *Feed) deliver(ctx context.Context, batch []events.Event) {
	f.mu.Lock()
	var seqs []int64
	for _, ev := range batch {
		for _, u := range ev.UserIDs {
			if f.users[u] > 0 {
				seqs = append(seqs, ev.Seq)
				break
			}
		}
	}
	f.mu.Unlock()
	if len(seqs) == 0 {
		return
	}
	f.loads.Add(1)
	changes, err := f.reads.Primary().TaskChanges.BySeqs(ctx, seqs)
	if err != nil {
		if ctx.Err() == nil {
			f.logger.WarnContext(ctx, "task feed: changes not loaded; watchers resync", "error", err.Error())
			f.resyncAll()
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range changes {
		c := &changes[i]
		for w := range f.watchers {
			if w.only != uuid.Nil && w.only != c.TaskID {
				continue
			}
			if view, ok := viewOf(w.actor, c); ok {
				w.send(view)
			}
		}
	}
}

// viewOf is what the actor sees of a change (policy.CanSeeTask before and after it), if anything.
func viewOf(a policy.Actor, c *db.TaskChange) (Change, bool) {
	before := c.Kind != db.TaskCreated && c.OldOwnerID != nil &&
		policy.CanSeeTask(a, policy.TaskFacts{OwnerID: *c.OldOwnerID, AssigneeID: c.OldAssigneeID})
	after := c.Kind != db.TaskDeleted && c.Task != nil && policy.CanSeeTask(a, facts(c.Task))
	switch {
	case before && after:
		return Change{Kind: c.Kind, Task: c.Task, TaskID: c.TaskID}, true
	case after:
		return Change{Kind: db.TaskCreated, Task: c.Task, TaskID: c.TaskID}, true
	case before:
		return Change{Kind: db.TaskDeleted, TaskID: c.TaskID}, true
	}
	return Change{}, false
}

// Watch is the actor's live feed of task changes (only one task's when only is set, which the actor
// must be able to see now), until ctx ends.
func (s *Service) Watch(ctx context.Context, a policy.Actor, only *uuid.UUID) (<-chan Change, error) {
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	if s.feed == nil {
		return nil, apperr.New(apperr.Internal, "live updates are not available")
	}
	var id uuid.UUID
	if only != nil {
		if _, err := s.Get(ctx, a, *only); err != nil {
			return nil, err
		}
		id = *only
	}
	return s.feed.watch(ctx, a, id), nil
}
