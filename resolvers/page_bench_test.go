package resolvers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// benchPageQuery is the benchmark's page scenario (internal/bench): 20 tasks with owners and the
// owners' task counts.
const benchPageQuery = `query Page { tasks(first: 20) { edges { cursor node { id title status priority dueAt tags
	owner { id name taskCounts { total todo inProgress done overdue } } } } pageInfo { hasNextPage hasPreviousPage endCursor } } }`

// BenchmarkTaskPage serves the page scenario through the real handler, in process (no network),
// with the cache off and with the Redis cache: time and allocations per page are the server's own
// cost, which the load benchmark (`taskgraph bench`) shows to be its bottleneck.
func BenchmarkTaskPage(b *testing.B) {
	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{"cache-off", map[string]string{"CACHE_ENABLED": "false", "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
		{"redis-cache", map[string]string{"REDIS_URL": testenv.RedisURL(0), "RATE_LIMIT_ENABLED": "false", "LOG_LEVEL": "warn"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			env := testsupport.NewEnv(b, mode.env)
			u := env.Register(b, "Bench")
			for i := range 40 {
				env.CreateTask(b, u.ID, db.NewTask{Title: fmt.Sprintf("task %d", i), Tags: []string{"a", "b"}})
			}
			body, _ := json.Marshal(map[string]any{"query": benchPageQuery})
			serve := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+u.Token)
				rec := httptest.NewRecorder()
				env.App.Handler.ServeHTTP(rec, req)
				return rec
			}
			if rec := serve(); rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"errors"`)) {
				b.Fatalf("page: %d %s", rec.Code, rec.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if rec := serve(); rec.Code != http.StatusOK {
						b.Errorf("page: %d", rec.Code)
					}
				}
			})
		})
	}
}
