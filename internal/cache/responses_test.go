package cache

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

// An answer is served while its dependencies are untouched, on any instance, and never after one
// of them was invalidated: not even one stored with tokens read before an invalidation that landed
// while it was being computed.
func TestResponsesServeOnlyCurrentAnswers(t *testing.T) {
	ctx := context.Background()
	prefix := testPrefix(t)
	a, b := newRedisCache(t, prefix).Responses(time.Minute), newRedisCache(t, prefix).Responses(time.Minute)
	user := uuid.New()
	deps := []db.EntityKey{{Kind: db.EntityUser, ID: user}, {Kind: db.EntityTaskCounts, ID: user}}
	answer := json.RawMessage(`{"me":{"name":"Ada"}}`)

	_, tokens, hit := a.Lookup(ctx, "q1", deps)
	if hit || len(tokens.shared) != 2 || tokens.shared[0] == "" || tokens.shared[1] == "" || tokens.local != nil {
		t.Fatalf("first lookup: hit %v, tokens %q; want a miss with two tokens", hit, tokens)
	}
	a.Store(ctx, "q1", tokens, answer)
	if got, _, hit := b.Lookup(ctx, "q1", deps); !hit || string(got) != string(answer) {
		t.Fatalf("another instance's lookup: hit %v, %s", hit, got)
	}
	if _, _, hit := b.Lookup(ctx, "q2", deps); hit {
		t.Fatal("another key hit")
	}

	// An invalidation of either dependency, from any instance, retires the answer.
	for _, dep := range deps {
		_, tokens, _ := a.Lookup(ctx, "q1", deps)
		a.Store(ctx, "q1", tokens, answer)
		b.c.Invalidate(ctx, []db.EntityKey{dep})
		if _, _, hit := a.Lookup(ctx, "q1", deps); hit {
			t.Fatalf("served after %s was invalidated", dep.Kind)
		}
	}

	// Tokens read, then a write lands while the answer is computed, then it is stored: never served.
	_, tokens, _ = a.Lookup(ctx, "q3", deps)
	b.c.Invalidate(ctx, deps[1:])
	a.Store(ctx, "q3", tokens, answer)
	if _, _, hit := a.Lookup(ctx, "q3", deps); hit {
		t.Fatal("an answer computed across an invalidation was served")
	}

	// A token evicted from Redis is replaced by a new one, never by the old value.
	_, tokens, _ = a.Lookup(ctx, "q4", deps)
	a.Store(ctx, "q4", tokens, answer)
	s := a.c.redis
	if err := s.rdb.Del(ctx, s.full(s.currentEpoch(), "ver:"+string(deps[0].Kind)+":"+user.String())).Err(); err != nil {
		t.Fatal(err)
	}
	if _, fresh, hit := a.Lookup(ctx, "q4", deps); hit || fresh.shared[0] == tokens.shared[0] {
		t.Fatalf("after evicting a token: hit %v, token %q (was %q)", hit, fresh.shared[0], tokens.shared[0])
	}

	// No cache, or no TTL: no response cache.
	if (*Cache)(nil).Responses(time.Minute) != nil || newLocalCache(t).Responses(0) != nil {
		t.Error("a response cache without a cache or a TTL")
	}
}

// The in-process response cache keeps the same promise within its process: an answer is served
// while its dependencies are untouched, never after an invalidation (its own writes' or another
// instance's heard as InvalidatePeer), never one computed with tokens read before an invalidation
// that landed meanwhile, and nothing after a Purge (a gap in the events).
func TestLocalResponsesServeOnlyCurrentAnswers(t *testing.T) {
	ctx := context.Background()
	c := newLocalCache(t)
	r := c.Responses(time.Minute)
	user := uuid.New()
	deps := []db.EntityKey{{Kind: db.EntityUser, ID: user}, {Kind: db.EntityTaskCounts, ID: user}}
	answer := json.RawMessage(`{"me":{"name":"Ada"}}`)
	cached := func() bool {
		got, _, hit := r.Lookup(ctx, "q1", deps)
		if hit && string(got) != string(answer) {
			t.Fatalf("served %s, want %s", got, answer)
		}
		return hit
	}
	fill := func() {
		_, tokens, hit := r.Lookup(ctx, "q1", deps)
		if hit || len(tokens.local) != 2 || tokens.shared != nil {
			t.Fatalf("lookup before a fill: hit %v, tokens %q", hit, tokens)
		}
		r.Store(ctx, "q1", tokens, answer)
	}

	fill()
	if !cached() {
		t.Fatal("a stored answer with current tokens is not served")
	}
	c.Invalidate(ctx, deps[1:])
	if cached() {
		t.Fatal("served after its task counts were invalidated")
	}
	fill()
	c.InvalidatePeer(ctx, deps[:1])
	if cached() {
		t.Fatal("served after another instance's invalidation of the user")
	}
	// Computed while a write landed: stored with the tokens read before it.
	_, tokens, _ := r.Lookup(ctx, "q1", deps)
	c.Invalidate(ctx, deps[:1])
	r.Store(ctx, "q1", tokens, answer)
	if cached() {
		t.Fatal("served an answer computed before an invalidation that landed while it was computed")
	}
	fill()
	c.Purge()
	if cached() {
		t.Fatal("served after a purge")
	}
	// Another user's invalidation leaves the answer alone.
	fill()
	c.Invalidate(ctx, []db.EntityKey{{Kind: db.EntityUser, ID: uuid.New()}})
	if !cached() {
		t.Fatal("another user's invalidation dropped the answer")
	}
}

// With a near cache in front of Redis, the response cache keeps answers in the process too: a
// repeated answer costs no round trip, on the instance that computed it and on one that found it
// in Redis. It keeps the promise of the shared cache: another instance's write retires the near
// copies before that write returns, an answer computed across a write is never served, and an
// instance whose subscription hangs stops answering from its near layer within its lease.
func TestNearResponsesServeOnlyCurrentAnswers(t *testing.T) {
	ctx := context.Background()
	prefix := testPrefix(t)
	a, b := nearServer(t, prefix), nearServer(t, prefix)
	ra, rb := a.Responses(time.Minute), b.Responses(time.Minute)
	user := uuid.New()
	deps := []db.EntityKey{{Kind: db.EntityUser, ID: user}, {Kind: db.EntityTaskCounts, ID: user}}
	answer := json.RawMessage(`{"me":{"name":"Ada"}}`)
	// served reports whether r answers key with answer, and whether it did so without Redis.
	served := func(r *Responses, key string) (hit, near bool) {
		before := r.Stats().NearHits
		got, _, hit := r.Lookup(ctx, key, deps)
		if hit && string(got) != string(answer) {
			t.Fatalf("served %s, want %s", got, answer)
		}
		return hit, r.Stats().NearHits > before
	}
	fill := func(r *Responses, key string) {
		_, tokens, hit := r.Lookup(ctx, key, deps)
		if hit || len(tokens.local) != 2 || len(tokens.shared) != 2 {
			t.Fatalf("lookup before a fill: hit %v, tokens %+v; want a miss with both layers' tokens", hit, tokens)
		}
		r.Store(ctx, key, tokens, answer)
	}

	fill(ra, "q1")
	if hit, near := served(ra, "q1"); !hit || !near {
		t.Fatalf("the instance that stored the answer: hit %v, without Redis %v", hit, near)
	}
	if hit, near := served(rb, "q1"); !hit || near {
		t.Fatalf("another instance's first lookup: hit %v, without Redis %v; want a hit from Redis", hit, near)
	}
	if hit, near := served(rb, "q1"); !hit || !near {
		t.Fatalf("another instance's second lookup: hit %v, without Redis %v; want a near hit", hit, near)
	}

	// Another instance's write retires the near copies on both before it returns.
	for _, dep := range deps {
		b.Invalidate(ctx, []db.EntityKey{dep})
		for name, r := range map[string]*Responses{"writer": rb, "other instance": ra} {
			if hit, _ := served(r, "q1"); hit {
				t.Fatalf("the %s served the answer after %s was invalidated", name, dep.Kind)
			}
		}
		fill(ra, "q1")
		served(rb, "q1") // fills b's near layer again
	}

	// Tokens read, then a write lands on another instance while the answer is computed, then it is
	// stored: never served, from either layer.
	_, tokens, _ := ra.Lookup(ctx, "q2", deps)
	b.Invalidate(ctx, deps[:1])
	ra.Store(ctx, "q2", tokens, answer)
	if hit, _ := served(ra, "q2"); hit {
		t.Fatal("an answer computed across another instance's write was served")
	}

	// a hangs: b's write waits out a's lease, after which a answers only through Redis, which has
	// the write's tokens.
	fill(ra, "q3")
	if hit, near := served(ra, "q3"); !hit || !near {
		t.Fatal("the near layer does not serve the answer: the rest would prove nothing")
	}
	a.PauseNearSync(true)
	defer a.PauseNearSync(false)
	b.Invalidate(ctx, deps[1:])
	if hit, _ := served(ra, "q3"); hit {
		t.Fatal("the hung instance served an answer another instance's write retired")
	}
}

// A reader that lands inside a write's Invalidate, between its two steps, never gets an answer
// stored that outlives the write: the rows are dropped before the versions are bumped, so a reader
// that sees the new versions also misses the old rows, and one that read the old versions has its
// answer retired by the bump.
func TestLocalResponsesNeverOutliveAWriteTheyRaced(t *testing.T) {
	ctx := context.Background()
	c := newLocalCache(t)
	r := c.Responses(time.Minute)
	tb := newTable()
	id := uuid.New()
	tb.set(id, "v1")
	deps := []db.EntityKey{{Kind: kind, ID: id}}
	if value(many(t, c, tb, id), id) != "v1" || stored(t, c, id) == "<absent>" {
		t.Fatal("the row is not cached: the test would prove nothing")
	}
	tb.set(id, "v2") // the write commits, then invalidates
	c.afterDrop = func() {
		_, tokens, _ := r.Lookup(ctx, "q", deps)
		answer := `"` + value(many(t, c, tb, id), id) + `"`
		r.Store(ctx, "q", tokens, json.RawMessage(answer))
	}
	invalidate(c, id)
	c.afterDrop = nil
	if got, _, hit := r.Lookup(ctx, "q", deps); hit && string(got) != `"v2"` {
		t.Fatalf("after the write returned, the response cache served %s", got)
	}
}
