package observe

import (
	"sync"
	"time"

	"github.com/google/uuid"
)

// SawUser marks the user as active now, for taskgraph_active_users.
func (m *Metrics) SawUser(id uuid.UUID) {
	if m == nil || id == uuid.Nil {
		return
	}
	m.users.saw(id)
}

// activeUsers remembers when each user was last seen. Entries older than the window are dropped at
// scrape time, and when the map is full; it never holds more than max entries.
type activeUsers struct {
	mu        sync.Mutex
	window    time.Duration
	max       int
	lastSeen  map[uuid.UUID]int64 // unix nanoseconds
	lastPrune time.Time
	now       func() time.Time // time.Now; tests move it
}

// fullPruneInterval spaces out the pruning a full map triggers, so a flood of new users costs one
// sweep per interval rather than one per request.
const fullPruneInterval = 10 * time.Second

func newActiveUsers(max int, window time.Duration) *activeUsers {
	return &activeUsers{window: window, max: max, lastSeen: make(map[uuid.UUID]int64), now: time.Now}
}

func (a *activeUsers) saw(id uuid.UUID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if _, ok := a.lastSeen[id]; !ok && len(a.lastSeen) >= a.max {
		if now.Sub(a.lastPrune) < fullPruneInterval {
			return // full of users seen within the window: this one is not counted
		}
		a.prune(now)
		if len(a.lastSeen) >= a.max {
			return
		}
	}
	a.lastSeen[id] = now.UnixNano()
}

// count drops users not seen within the window and returns how many remain.
func (a *activeUsers) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(a.now())
	return len(a.lastSeen)
}

func (a *activeUsers) prune(now time.Time) {
	a.lastPrune = now
	cutoff := now.Add(-a.window).UnixNano()
	for id, seen := range a.lastSeen {
		if seen < cutoff {
			delete(a.lastSeen, id)
		}
	}
}
