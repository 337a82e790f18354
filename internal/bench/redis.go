package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// cacheEpochKey is the key the server's Redis cache reads with every lookup (internal/cache: prefix
// "taskgraph:" + "cache:" + "epoch"). It exists only after the cache was retired once.
const cacheEpochKey = "taskgraph:cache:epoch"

// redisCounters are Redis's own counters (INFO stats and commandstats), server-wide.
type redisCounters struct {
	hits, misses int64 // keyspace_hits, keyspace_misses: key lookups by read commands
	mgets        int64 // MGET calls
	epochSet     bool  // whether cacheEpochKey exists
}

func readRedisCounters(ctx context.Context, rdb *redis.Client) (redisCounters, error) {
	info, err := rdb.Info(ctx, "stats", "commandstats").Result()
	if err != nil {
		return redisCounters{}, fmt.Errorf("redis INFO: %w", err)
	}
	var c redisCounters
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "keyspace_hits":
			c.hits, _ = strconv.ParseInt(v, 10, 64)
		case "keyspace_misses":
			c.misses, _ = strconv.ParseInt(v, 10, 64)
		case "cmdstat_mget":
			// calls=N,usec=...
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			c.mgets, _ = strconv.ParseInt(calls, 10, 64)
		}
	}
	n, err := rdb.Exists(ctx, cacheEpochKey).Result()
	if err != nil {
		return redisCounters{}, fmt.Errorf("redis EXISTS: %w", err)
	}
	c.epochSet = n > 0
	return c, nil
}

// cacheHitRatio is the share of cache lookups Redis answered with a value between two readings.
// Every cache lookup is one MGET that also reads the epoch key, so one key per MGET is taken out of
// Redis's count: a miss while the epoch key is absent, a hit once it exists. (Tombstones, briefly
// left by invalidations, count as hits here though the cache treats them as misses.) It returns -1
// when nothing was looked up.
func cacheHitRatio(before, after redisCounters) float64 {
	hits, misses, mgets := after.hits-before.hits, after.misses-before.misses, after.mgets-before.mgets
	if after.epochSet {
		hits -= mgets
	} else {
		misses -= mgets
	}
	hits, misses = max(hits, 0), max(misses, 0)
	if hits+misses == 0 {
		return -1
	}
	return float64(hits) / float64(hits+misses)
}
