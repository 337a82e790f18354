package cache

import (
	"context"
	"log/slog"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/redisx"
)

// documentTTL is how long an automatic persisted query stays registered after its last use.
const documentTTL = 24 * time.Hour

// Documents stores automatic persisted queries (hash → document) for gqlgen's APQ extension
// (it implements graphql.Cache[string]). With Redis, a document registered through one instance is
// known to all; a local LRU answers when Redis is absent or failing.
type Documents struct {
	rdb    *redis.Client // nil: local only
	prefix string
	guard  *redisx.Guard
	local  *lru.Cache[string, string]
}

// NewDocuments returns a document store; rdb may be nil.
func NewDocuments(rdb *redis.Client, prefix string, localSize int, logger *slog.Logger) (*Documents, error) {
	local, err := lru.New[string, string](localSize)
	if err != nil {
		return nil, err
	}
	d := &Documents{rdb: rdb, prefix: prefix, local: local}
	if rdb != nil {
		d.guard = redisx.NewGuard("persisted-queries", logger, redisx.GuardOptions{})
	}
	return d, nil
}

// Get returns the document registered under hash.
func (d *Documents) Get(ctx context.Context, hash string) (string, bool) {
	if doc, ok := d.local.Get(hash); ok {
		return doc, true
	}
	if d.rdb == nil {
		return "", false
	}
	var doc string
	ctx, cancel := context.WithTimeout(ctx, callBudget)
	defer cancel()
	err := d.guard.Do(ctx, func(ctx context.Context) error {
		var err error
		doc, err = d.rdb.GetEx(ctx, d.prefix+hash, documentTTL).Result()
		return err
	})
	if err != nil {
		return "", false
	}
	d.local.Add(hash, doc)
	return doc, true
}

// Add registers a document under its hash (the APQ extension has checked the hash).
func (d *Documents) Add(ctx context.Context, hash, doc string) {
	d.local.Add(hash, doc)
	if d.rdb == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callBudget)
	defer cancel()
	_ = d.guard.Do(ctx, func(ctx context.Context) error {
		return d.rdb.Set(ctx, d.prefix+hash, doc, documentTTL).Err()
	})
}
