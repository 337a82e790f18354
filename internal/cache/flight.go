package cache

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// flightGroup collapses concurrent loads of the same entity: the first caller to miss a key loads
// it (batched with its other misses); callers that miss it meanwhile wait for that result instead of
// querying again. golang.org/x/sync/singleflight does this per call; here one call covers many keys.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done chan struct{}
	val  any // nil when the load did not find the entity
	err  error
}

// do returns the loaded value of every id that exists, loading only the ids nobody is loading yet.
func (g *flightGroup) do(ctx context.Context, kind string, ids []uuid.UUID,
	load func([]uuid.UUID) (map[uuid.UUID]any, error)) (map[uuid.UUID]any, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flightCall{}
	}
	var lead []uuid.UUID
	waits := make(map[uuid.UUID]*flightCall, len(ids))
	for _, id := range ids {
		k := kind + ":" + id.String()
		if c, ok := g.calls[k]; ok {
			waits[id] = c
			continue
		}
		c := &flightCall{done: make(chan struct{})}
		g.calls[k] = c
		waits[id] = c
		lead = append(lead, id)
	}
	g.mu.Unlock()

	if len(lead) > 0 {
		vals, err := safeLoad(load, lead)
		g.mu.Lock()
		for _, id := range lead {
			c, k := waits[id], kind+":"+id.String() // this caller's own call
			c.val, c.err = vals[id], err
			if g.calls[k] == c { // forget may have replaced it with a newer load
				delete(g.calls, k)
			}
			close(c.done)
		}
		g.mu.Unlock()
	}

	out := make(map[uuid.UUID]any, len(ids))
	for id, c := range waits {
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err != nil {
			return nil, c.err
		}
		if c.val != nil {
			out[id] = c.val
		}
	}
	return out, nil
}

// forget detaches the loads running for keys (kind:id, as in do) from later callers, which start
// their own load; callers already waiting keep waiting for the running one.
func (g *flightGroup) forget(keys []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range keys {
		delete(g.calls, k)
	}
}

// forgetAll detaches every running load from later callers (see forget).
func (g *flightGroup) forgetAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.calls)
}

// safeLoad turns a panic in load into an error, so waiters are always released.
func safeLoad(load func([]uuid.UUID) (map[uuid.UUID]any, error), ids []uuid.UUID) (vals map[uuid.UUID]any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache load panicked: %v", p)
		}
	}()
	return load(ids)
}
