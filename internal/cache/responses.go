package cache

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/db"
)

// Responses caches whole GraphQL answers whose content depends only on a few cached entities (the
// viewer's user row and task counts: every write to a user's tasks invalidates their counts). Each
// such entity has a version token that every invalidation replaces; an answer is stored with the
// tokens read before it was computed and served only while they are all still current. A write
// that lands while an answer is being computed replaces a token the answer was stored with, so
// that answer is never served.
//
// Where the tokens live:
//   - With Redis they are shared by every instance, under the entity cache's epoch: a lost
//     invalidation bypasses them, and the epoch bump retires every answer too.
//   - In front of Redis, when the cache has a near cache, a near layer (localResponses) keeps
//     answers and tokens in the process, so a repeated answer costs no round trip. Its tokens
//     are bumped wherever the near cache is invalidated (this process's writes, other processes'
//     acknowledged broadcasts, the event bus) and forgotten wherever it is emptied; it answers only
//     while the near cache's lease is current (see nearSync).
//   - An in-process cache (no Redis) has only the local layer, bumped by its own invalidations and
//     by other instances' heard over the event bus, and forgotten by Purge.
type Responses struct {
	c            *Cache
	local        *localResponses // the in-process layer: the only one without Redis, the near one with it
	ttl          time.Duration
	hits, misses atomic.Int64
	nearHits     atomic.Int64
}

// Tokens are the versions an answer was computed under: Lookup returns them, Store stores with
// them. The zero value stores nothing.
type Tokens struct {
	shared []string // Redis's; nil without Redis or when Redis is unusable
	local  []string // the in-process layer's; nil when it may not be filled now
}

// localResponseEntries bounds the answers an in-process response cache keeps.
const localResponseEntries = 4096

// Responses returns the response cache with entries living ttl, or nil when there is no cache (or
// ttl is 0). Call it once per Cache, after EnableNear.
func (c *Cache) Responses(ttl time.Duration) *Responses {
	if c == nil || ttl <= 0 {
		return nil
	}
	r := &Responses{c: c, ttl: ttl}
	if c.redis == nil || c.near != nil {
		local, err := newLocalResponses(localResponseEntries)
		if err != nil {
			return nil
		}
		c.responses.Store(local)
		r.local = local
	}
	return r
}

// An answer is stored in Redis as the time it expires (Unix milliseconds, for the near layer's
// copies), its tokens, one per line, a blank line, then the answer's JSON as it is: no JSON
// decoding on a hit (decoding the answer only to validate it took half the server's time of a
// cached page).
func encodeResponse(expires time.Time, tokens []string, data []byte) string {
	return strconv.FormatInt(expires.UnixMilli(), 10) + "\n" + strings.Join(tokens, "\n") + "\n\n" + string(data)
}

func decodeResponse(raw string) (expires time.Time, tokens []string, data string, ok bool) {
	head, data, ok := strings.Cut(raw, "\n\n")
	if !ok || data == "" {
		return time.Time{}, nil, "", false
	}
	exp, head, ok := strings.Cut(head, "\n")
	ms, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil {
		return time.Time{}, nil, "", false
	}
	return time.UnixMilli(ms), strings.Split(head, "\n"), data, true
}

// localUsable reports whether the in-process layer may answer and be filled now: always without
// Redis; in front of Redis only while Redis is trusted and the near cache's lease is current (it
// may have missed another process's invalidation otherwise).
func (r *Responses) localUsable(ctx context.Context) bool {
	if r.local == nil {
		return false
	}
	if r.c.redis == nil {
		return true
	}
	return r.c.sync.serving() && r.c.usable(ctx)
}

// Lookup returns the stored answer for key if every dependency's token is still the one it was
// computed with. Otherwise it returns the current tokens (creating missing ones) for Store.
func (r *Responses) Lookup(ctx context.Context, key string, deps []db.EntityKey) (data json.RawMessage, tokens Tokens, hit bool) {
	if r == nil {
		return nil, Tokens{}, false
	}
	if r.localUsable(ctx) {
		data, local, hit := r.local.lookup(key, entityKeys(deps))
		if hit {
			r.hits.Add(1)
			if r.c.redis != nil {
				r.nearHits.Add(1)
			}
			return data, Tokens{}, true
		}
		tokens.local = local
	}
	if r.c.redis == nil || !r.c.usable(ctx) {
		r.misses.Add(1)
		return nil, tokens, false
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
		return nil, Tokens{}, false
	}
	if s.currentEpoch() != epoch {
		return nil, Tokens{}, false // retired meanwhile: start over next time
	}
	shared := make([]string, len(deps))
	var missing []string
	for i, k := range keys[1:] {
		shared[i] = found[k]
		if shared[i] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		if raw, ok := found[keys[0]]; ok {
			if expires, stored, data, ok := decodeResponse(raw); ok && equalTokens(stored, shared) {
				r.hits.Add(1)
				if tokens.local != nil {
					// The near layer's tokens were read before Redis's: a write since then has
					// replaced them (or will, before it answers), so this copy cannot outlive it.
					r.local.store(key, tokens.local, json.RawMessage(data), expires)
				}
				return json.RawMessage(data), Tokens{}, true
			}
		}
		r.misses.Add(1)
		tokens.shared = shared
		return nil, tokens, false
	}
	// No token yet (never written, expired or evicted): create one. Answers stored under an older
	// token, if any, can never match it.
	var created []string
	if err := r.c.do(ctx, func(ctx context.Context) (err error) {
		created, err = ensureTokensScript.Run(ctx, s.rdb, []string{s.epochKey}, append([]any{s.prefix}, toAny(missing)...)...).StringSlice()
		return err
	}); err != nil || len(created) != len(missing) {
		return nil, Tokens{}, false
	}
	for i, j := 0, 0; i < len(shared); i++ {
		if shared[i] == "" {
			shared[i] = created[j]
			j++
		}
	}
	r.misses.Add(1)
	tokens.shared = shared
	return nil, tokens, false
}

// ResponseStats are the response cache's counters since start.
type ResponseStats struct {
	Hits, Misses int64
	// NearHits are the hits (counted in Hits too) answered in front of Redis, without a round trip.
	NearHits int64
}

// Stats returns how many lookups found a current answer and how many did not.
func (r *Responses) Stats() ResponseStats {
	if r == nil {
		return ResponseStats{}
	}
	return ResponseStats{Hits: r.hits.Load(), Misses: r.misses.Load(), NearHits: r.nearHits.Load()}
}

// Store keeps data as the answer for key, computed under tokens (from Lookup).
func (r *Responses) Store(ctx context.Context, key string, tokens Tokens, data json.RawMessage) {
	if r == nil {
		return
	}
	expires := time.Now().Add(r.ttl)
	if tokens.local != nil {
		r.local.store(key, tokens.local, data, expires)
	}
	if tokens.shared == nil || !r.c.usable(ctx) {
		return
	}
	raw := encodeResponse(expires, tokens.shared, data)
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
