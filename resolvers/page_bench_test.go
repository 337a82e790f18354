package resolvers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// benchPageQuery is the benchmark's page scenario (internal/bench): 20 tasks with owners and the
// owners' task counts.
const benchPageQuery = `query Page { tasks(first: 20) { edges { cursor node { id title status priority dueAt tags
	owner { id name taskCounts { total todo inProgress done overdue } } } } pageInfo { hasNextPage hasPreviousPage endCursor } } }`

// The documents `taskgraph bench` sends in the comparison with PostGraphile (internal/bench/peer.go).
const (
	peerPageQuery = `query Page { tasks(first: 20, orderBy: {field: CREATED_AT, direction: DESC}) { edges { cursor node { ` +
		`id title status priority dueAt tags owner { id name } } } pageInfo { hasNextPage hasPreviousPage endCursor } } }`
	peerTaskQuery = `query Task($id: ID!) { task(id: $id) { id title description status priority dueAt tags createdAt updatedAt version ` +
		`owner { id name } } }`
)

// benchModes are the setups the page benchmarks run in: every cache off, the default (in-process
// row cache, no Redis, no response cache), Redis (row and response caches) and Redis with a near
// cache in front of it.
var benchModes = []struct {
	name string
	env  map[string]string
}{
	{"cache-off", map[string]string{"CACHE_ENABLED": "false", "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
	{"default", map[string]string{"RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
	{"redis-cache", map[string]string{"REDIS_URL": testenv.RedisURL(0), "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
	{"redis-near", map[string]string{"REDIS_URL": testenv.RedisURL(0), "CACHE_NEAR_MAX_ENTRIES": "100000",
		"RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
}

// BenchmarkTaskPage serves the page scenario through the real handler, in process (no network),
// with the cache off and with the Redis cache: time and allocations per page are the server's own
// cost, which the load benchmark (`taskgraph bench`) shows to be its bottleneck.
func BenchmarkTaskPage(b *testing.B) {
	for _, mode := range []string{"cache-off", "redis-cache"} {
		b.Run(mode, func(b *testing.B) { benchDocument(b, mode, benchPageQuery, false) })
	}
}

// BenchmarkPeerPage and BenchmarkPeerTask serve the comparison's page and task by id (issue 13's
// target: an executed page allocates at most 1,500 times).
func BenchmarkPeerPage(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) { benchDocument(b, mode.name, peerPageQuery, false) })
	}
}

func BenchmarkPeerTask(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) { benchDocument(b, mode.name, peerTaskQuery, true) })
	}
}

// benchDocument serves query (with the first task's id as $id when byID) for a user owning 40 tasks.
func benchDocument(b *testing.B, mode, query string, byID bool) {
	var env map[string]string
	for _, m := range benchModes {
		if m.name == mode {
			env = m.env
		}
	}
	e := testsupport.NewEnv(b, env)
	u := e.Register(b, "Bench")
	var first *db.Task
	for i := range 40 {
		t := e.CreateTask(b, u.ID, db.NewTask{Title: fmt.Sprintf("task %d", i), Tags: []string{"a", "b"}})
		if first == nil {
			first = t
		}
	}
	if mode != "cache-off" {
		// Creating the tasks left tombstones in the cache, which refuse fills for tombstoneTTL (2 s):
		// without this wait the first two seconds of a run would measure database reads, not hits.
		time.Sleep(2100 * time.Millisecond)
	}
	doc := map[string]any{"query": query}
	if byID {
		doc["variables"] = map[string]any{"id": globalid.Encode(globalid.KindTask, first.ID)}
	}
	body, _ := json.Marshal(doc)
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+u.Token)
		rec := httptest.NewRecorder()
		e.App.Handler.ServeHTTP(rec, req)
		return rec
	}
	if rec := serve(); rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"errors"`)) {
		b.Fatalf("%s: %d %s", query, rec.Code, rec.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := serve(); rec.Code != http.StatusOK {
				b.Errorf("%s: %d", query, rec.Code)
			}
		}
	})
}
