package cache

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
)

// Responses caches whole GraphQL answers whose content depends only on a few cached entities (the
// viewer's user row and task counts: every write to a user's tasks invalidates their counts). Each
// such entity has a version token in Redis that every invalidation replaces; an answer is stored
// with the tokens read before it was computed and served only while they are all still current.
// A write that lands while an answer is being computed replaces a token the answer was stored
// with, so that answer is never served.
//
// With Redis the tokens are shared by every instance, and it shares the entity cache's epoch: a
// lost invalidation bypasses it, and the epoch bump retires every answer too. An in-process cache
// keeps its tokens in the process (localResponses), bumped by the same invalidations (its own
// writes', and other instances' heard over the event bus) and forgotten by Purge.
type Responses struct {
	c            *Cache
	local        *localResponses // set when the cache lives in this process
	ttl          time.Duration
	hits, misses atomic.Int64
}

// localResponseEntries bounds the answers an in-process response cache keeps.
const localResponseEntries = 4096

// Responses returns the response cache with entries living ttl, or nil when there is no cache (or
// ttl is 0). Call it once per Cache.
func (c *Cache) Responses(ttl time.Duration) *Responses {
	if c == nil || ttl <= 0 {
		return nil
	}
	if c.redis != nil {
		return &Responses{c: c, ttl: ttl}
	}
	local, err := newLocalResponses(localResponseEntries)
	if err != nil {
		return nil
	}
	c.responses.Store(local)
	return &Responses{c: c, local: local, ttl: ttl}
}

// An answer is stored as its tokens, one per line, a blank line, then the answer's JSON as it
// is: no JSON decoding on a hit (decoding the answer only to validate it took half the server's
// time of a cached page).
func encodeResponse(tokens []string, data []byte) string {
	return strings.Join(tokens, "\n") + "\n\n" + string(data)
}

func decodeResponse(raw string) (tokens []string, data string, ok bool) {
	head, data, ok := strings.Cut(raw, "\n\n")
	if !ok || data == "" {
		return nil, "", false
	}
	return strings.Split(head, "\n"), data, true
}

// Lookup returns the stored answer for key if every dependency's token is still the one it was
// computed with. Otherwise it returns the current tokens (creating missing ones) for Store; nil
// tokens mean the answer must not be stored (Redis unusable).
func (r *Responses) Lookup(ctx context.Context, key string, deps []db.EntityKey) (data json.RawMessage, tokens []string, hit bool) {
	if r == nil {
		return nil, nil, false
	}
	if r.local != nil {
		data, tokens, hit := r.local.lookup(key, entityKeys(deps))
		if hit {
			r.hits.Add(1)
		} else {
			r.misses.Add(1)
		}
		return data, tokens, hit
	}
	if !r.c.usable(ctx) {
		return nil, nil, false
	}
	s := r.c.redis
	epoch := s.currentEpoch()
	keys := make([]string, 0, len(deps)+1)
	keys = append(keys, "resp:"+key)
	for _, d := range deps {
		keys = append(keys, "ver:"+string(d.Kind)+":"+d.ID.String())
	}
	var found map[string]string
	if err := r.c.do(ctx, func(ctx context.Context) (err error) {
		found, err = s.getMulti(ctx, keys)
		return err
	}); err != nil {
		return nil, nil, false
	}
	if s.currentEpoch() != epoch {
		return nil, nil, false // retired meanwhile: start over next time
	}
	tokens = make([]string, len(deps))
	var missing []string
	for i, k := range keys[1:] {
		tokens[i] = found[k]
		if tokens[i] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		if raw, ok := found[keys[0]]; ok {
			if stored, data, ok := decodeResponse(raw); ok && equalTokens(stored, tokens) {
				r.hits.Add(1)
				return json.RawMessage(data), nil, true
			}
		}
		r.misses.Add(1)
		return nil, tokens, false
	}
	// No token yet (never written, expired or evicted): create one. Answers stored under an older
	// token, if any, can never match it.
	var created []string
	if err := r.c.do(ctx, func(ctx context.Context) (err error) {
		created, err = ensureTokensScript.Run(ctx, s.rdb, []string{s.epochKey}, append([]any{s.prefix}, toAny(missing)...)...).StringSlice()
		return err
	}); err != nil || len(created) != len(missing) {
		return nil, nil, false
	}
	for i, j := 0, 0; i < len(tokens); i++ {
		if tokens[i] == "" {
			tokens[i] = created[j]
			j++
		}
	}
	r.misses.Add(1)
	return nil, tokens, false
}

// Stats returns how many lookups found a current answer and how many did not.
func (r *Responses) Stats() (hits, misses int64) {
	if r == nil {
		return 0, 0
	}
	return r.hits.Load(), r.misses.Load()
}

// Store keeps data as the answer for key, computed with tokens (from Lookup).
func (r *Responses) Store(ctx context.Context, key string, tokens []string, data json.RawMessage) {
	if r == nil || tokens == nil {
		return
	}
	if r.local != nil {
		r.local.store(key, tokens, data, r.ttl)
		return
	}
	if !r.c.usable(ctx) {
		return
	}
	raw := encodeResponse(tokens, data)
	s := r.c.redis
	_ = r.c.do(ctx, func(ctx context.Context) error {
		return s.rdb.Set(ctx, s.full(s.currentEpoch(), "resp:"+key), raw, r.ttl).Err()
	})
}

// ensureTokensScript returns the version token of each key, creating missing ones, under the epoch
// Redis holds now. ARGV = prefix, keys... (each "ver:kind:id").
var ensureTokensScript = redis.NewScript(`
local epoch = redis.call('GET', KEYS[1]) or '0'
local out = {}
for i = 2, #ARGV do
  local k = ARGV[1] .. epoch .. ':' .. ARGV[i]
  local v = redis.call('GET', k)
  if not v then
    local t = redis.call('TIME')
    v = t[1] .. t[2] .. ':' .. redis.call('INCR', ARGV[1] .. 'verseq')
    redis.call('SET', k, v, 'PX', 86400000)
  end
  out[#out + 1] = v
end
return out
`)

// entityKeys names deps as the entity cache does (what Invalidate is given).
func entityKeys(deps []db.EntityKey) []string {
	out := make([]string, len(deps))
	for i, d := range deps {
		out[i] = key(d.Kind, d.ID)
	}
	return out
}

func equalTokens(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
