package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestCachedAnswersOverWebsocketComeOnce: the websocket transport calls the response handler until
// it answers nil. A response cache that answered every call sent a cached query's answer without
// end (and never "complete"), on both caches it stands on.
func TestCachedAnswersOverWebsocketComeOnce(t *testing.T) {
	t.Parallel()
	for name, setup := range map[string]map[string]string{
		"redis":      {"REDIS_URL": redisDB(t, 11)},
		"in-process": nil,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := testsupport.NewEnv(t, setup)
			u := env.Register(t, "Ada")
			ws := testsupport.DialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
			ws.MustAck()
			// The first run fills the cache, the others are answered from it.
			for i := range 3 {
				id := fmt.Sprintf("me-%d", i)
				ws.Subscribe(id, `{ me { id name } }`, nil)
				nexts := 0
				for done := false; !done; {
					m, ok := ws.Next(10 * time.Second)
					if !ok {
						t.Fatalf("run %d: no complete within 10 s after %d answers", i, nexts)
					}
					switch {
					case m.ID != id:
					case m.Type == "next":
						if nexts++; nexts > 1 {
							t.Fatalf("run %d: answer number %d for one query", i, nexts)
						}
					case m.Type == "complete":
						done = true
					default:
						t.Fatalf("run %d: unexpected %s: %s", i, m.Type, m.Payload)
					}
				}
				if nexts != 1 {
					t.Fatalf("run %d: %d answers, want 1", i, nexts)
				}
			}
		})
	}
}
