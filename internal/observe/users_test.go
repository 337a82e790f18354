package observe

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestActiveUsersCountAndPruning(t *testing.T) {
	m, reg := newTestMetrics(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	m.users.now = func() time.Time { return now }

	a, b := uuid.New(), uuid.New()
	m.SawUser(a)
	m.SawUser(a)
	m.SawUser(b)
	m.SawUser(uuid.Nil) // no user: ignored
	if v := mustValue(t, reg, "taskgraph_active_users", nil); v != 2 {
		t.Fatalf("active users %v, want 2", v)
	}

	now = now.Add(3 * time.Minute)
	m.SawUser(a) // a stays active, b ages
	now = now.Add(3 * time.Minute)
	if v := mustValue(t, reg, "taskgraph_active_users", nil); v != 1 {
		t.Fatalf("after 6 minutes: %v active, want 1 (a, seen 3 minutes ago)", v)
	}
	if len(m.users.lastSeen) != 1 {
		t.Errorf("scrape left %d entries, want 1", len(m.users.lastSeen))
	}
	now = now.Add(5 * time.Minute)
	if v := mustValue(t, reg, "taskgraph_active_users", nil); v != 0 {
		t.Fatalf("after 11 minutes: %v active, want 0", v)
	}
}

func TestActiveUsersCapped(t *testing.T) {
	u := newActiveUsers(3, 5*time.Minute)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	u.now = func() time.Time { return now }
	for range 5 {
		u.saw(uuid.New())
	}
	if n := len(u.lastSeen); n != 3 {
		t.Fatalf("%d entries, want the cap 3", n)
	}
	// Once the old entries expire, a full map makes room for new users.
	now = now.Add(6 * time.Minute)
	fresh := uuid.New()
	u.saw(fresh)
	if _, ok := u.lastSeen[fresh]; !ok || len(u.lastSeen) != 1 {
		t.Fatalf("after expiry: %d entries, fresh user kept %v", len(u.lastSeen), ok)
	}
}
