package cache

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// localResponses is the in-process layer of the response cache (the whole of it without Redis, the
// near layer in front of Redis): the same version-token scheme as in Redis, kept in this process.
// Every invalidation of a dependency gives it a new version; versions are never reused (one counter
// for all), so an answer stored with a version a write has since replaced, or one forgotten by Purge
// or eviction, can never match again.
type localResponses struct {
	mu       sync.Mutex
	versions *lru.Cache[string, uint64] // entity key → current version
	answers  *lru.Cache[string, localAnswer]
	next     uint64
	now      func() time.Time
}

type localAnswer struct {
	tokens  []string
	data    json.RawMessage
	expires time.Time
}

// maxLocalAnswerBytes keeps big answers out: the cache is for the repeated small pages of a UI.
const maxLocalAnswerBytes = 64 << 10

func newLocalResponses(maxAnswers int) (*localResponses, error) {
	versions, err := lru.New[string, uint64](maxAnswers * 4)
	if err != nil {
		return nil, err
	}
	answers, err := lru.New[string, localAnswer](maxAnswers)
	if err != nil {
		return nil, err
	}
	return &localResponses{versions: versions, answers: answers, now: time.Now}, nil
}

// tokensLocked returns the current version token of each key, creating missing ones (l.mu held).
func (l *localResponses) tokensLocked(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		v, ok := l.versions.Get(k)
		if !ok {
			l.next++
			v = l.next
			l.versions.Add(k, v)
		}
		out[i] = strconv.FormatUint(v, 10)
	}
	return out
}

func (l *localResponses) lookup(key string, deps []string) (json.RawMessage, []string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := l.tokensLocked(deps)
	if a, ok := l.answers.Get(key); ok && l.now().Before(a.expires) && equalTokens(a.tokens, tokens) {
		return a.data, nil, true
	}
	return nil, tokens, false
}

func (l *localResponses) store(key string, tokens []string, data json.RawMessage, expires time.Time) {
	if len(data) > maxLocalAnswerBytes || !l.now().Before(expires) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answers.Add(key, localAnswer{tokens: tokens, data: data, expires: expires})
}

// invalidate gives each key a new version: answers stored with the old one no longer match.
func (l *localResponses) invalidate(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		l.next++
		l.versions.Add(k, l.next)
	}
}

// purge forgets every version and answer (this process may have missed invalidations).
func (l *localResponses) purge() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.versions.Purge()
	l.answers.Purge()
}
