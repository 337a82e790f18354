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
	if hit || len(tokens) != 2 || tokens[0] == "" || tokens[1] == "" {
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
	if _, fresh, hit := a.Lookup(ctx, "q4", deps); hit || fresh[0] == tokens[0] {
		t.Fatalf("after evicting a token: hit %v, token %q (was %q)", hit, fresh[0], tokens[0])
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
		if hit || len(tokens) != 2 {
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
