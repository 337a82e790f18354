package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/server"
)

// The benchmark overwrites its database (reseeds it, ends its sessions, updates tasks in the mix) and
// empties its Redis database. It does so only to what it can tell is its own: a PostgreSQL database it
// created, which it marks with a comment, and a Redis database that holds nothing but its marker key
// and the keys its servers write. Anything else is refused unless -force-reseed or -force-flush says
// to take it over.

// databaseMark is the comment (COMMENT ON DATABASE) on every database the benchmark created.
const databaseMark = "taskgraph bench: created by `taskgraph bench`, which reseeds this database at will"

// maintenanceDatabase is where the benchmark connects to create and inspect its own database.
const maintenanceDatabase = "postgres"

// redisMarkKey is the key the benchmark sets in a Redis database it owns. It is outside the servers'
// prefix (server.RedisPrefix), so no server ever writes or deletes it.
const redisMarkKey = "taskgraph-bench:owner"

// claimDatabase makes sure the database that url names is the benchmark's to overwrite, before
// anything (migrations included) is written to it: a missing database is created and marked; one that
// carries the mark is accepted; any other is refused, unless force, which marks it as the benchmark's.
// It reports whether it created the database.
func claimDatabase(ctx context.Context, url string, force bool, logf func(string, ...any)) (bool, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return false, fmt.Errorf("parse -database: %w", err)
	}
	name := cfg.Database
	if name == "" || name == maintenanceDatabase {
		return false, fmt.Errorf("-database must name the benchmark's own database, not %q", name)
	}
	maint := cfg.Copy()
	maint.Database = maintenanceDatabase
	conn, err := pgx.ConnectConfig(ctx, maint)
	if err != nil {
		return false, fmt.Errorf("connect to %s to look for database %q: %w", maintenanceDatabase, name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	mark := func() error {
		_, err := conn.Exec(ctx, "COMMENT ON DATABASE "+pgx.Identifier{name}.Sanitize()+" IS "+quoteLiteral(databaseMark))
		if err != nil {
			return fmt.Errorf("mark database %q as the benchmark's: %w", name, err)
		}
		return nil
	}
	comment, exists, err := databaseComment(ctx, conn, name)
	if err != nil {
		return false, err
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: someone was faster
			return false, fmt.Errorf("database %q appeared while the benchmark was about to create it: run again", name)
		}
		if err != nil {
			return false, fmt.Errorf("create database %q: %w", name, err)
		}
		logf("created database %q", name)
		return true, mark()
	}
	if comment == databaseMark {
		return false, nil
	}
	if !force {
		return false, fmt.Errorf("database %q exists but was not created by taskgraph bench (it lacks the benchmark's mark), "+
			"so the benchmark will not reseed or write to it: give -database a name that does not exist yet, "+
			"or pass -force-reseed to hand this database over to the benchmark (its users and tasks are deleted)", name)
	}
	logf("-force-reseed: taking over database %q (it was not created by the benchmark)", name)
	return false, mark()
}

// databaseComment returns the comment on database name and whether the database exists.
func databaseComment(ctx context.Context, conn *pgx.Conn, name string) (string, bool, error) {
	var comment *string
	err := conn.QueryRow(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up database %q: %w", name, err)
	}
	if comment == nil {
		return "", true, nil
	}
	return *comment, true, nil
}

// quoteLiteral quotes s as an SQL string literal (COMMENT takes no parameters).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// redisKeys describes the keys of a Redis database, as far as ownership is concerned.
type redisKeys struct {
	total   int64  // keys in the database
	marked  bool   // redisMarkKey is there
	foreign string // a key that is neither the mark nor a server's (""): proof of someone else's data
}

// inspectRedis scans the whole database. Keys under server.RedisPrefix count as the benchmark's only
// when the mark is there too: without it they may be another Taskgraph server's cache.
func inspectRedis(ctx context.Context, rdb *redis.Client) (redisKeys, error) {
	var k redisKeys
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "", 1000).Result()
		if err != nil {
			return k, fmt.Errorf("redis SCAN: %w", err)
		}
		for _, key := range keys {
			k.total++
			switch {
			case key == redisMarkKey:
				k.marked = true
			case strings.HasPrefix(key, server.RedisPrefix):
			case k.foreign == "":
				k.foreign = key
			}
		}
		if cursor = next; cursor == 0 {
			return k, nil
		}
	}
}

// owned reports whether the benchmark may flush the database: nothing in it but its mark and what its
// servers wrote, or nothing at all.
func (k redisKeys) owned() bool { return k.total == 0 || (k.marked && k.foreign == "") }

// claimRedis makes sure the Redis database is the benchmark's to flush, before the run writes anything
// anywhere: an empty one gets the mark; a marked one holding only the servers' keys is accepted; any
// other is refused, unless force, which flushes it and marks it.
func claimRedis(ctx context.Context, rdb *redis.Client, force bool, logf func(string, ...any)) error {
	k, err := inspectRedis(ctx, rdb)
	if err != nil {
		return err
	}
	db := rdb.Options().DB
	if !k.owned() {
		if !force {
			why := fmt.Sprintf("holds %d keys the benchmark did not write (for example %q)", k.total, k.foreign)
			if k.foreign == "" {
				why = fmt.Sprintf("holds %d Taskgraph keys but not the benchmark's mark (%s): another server's cache", k.total, redisMarkKey)
			}
			return fmt.Errorf("redis database %d %s, so the benchmark will not flush it: give -redis a database of its own "+
				"(e.g. an empty one), or pass -force-flush to let the benchmark empty this one", db, why)
		}
		logf("-force-flush: emptying redis database %d (%d keys the benchmark did not write)", db, k.total)
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return fmt.Errorf("flush redis database %d: %w", db, err)
		}
	}
	return markRedis(ctx, rdb)
}

func markRedis(ctx context.Context, rdb *redis.Client) error {
	if err := rdb.Set(ctx, redisMarkKey, "taskgraph bench: flushed at will by `taskgraph bench`", 0).Err(); err != nil {
		return fmt.Errorf("mark redis database %d: %w", rdb.Options().DB, err)
	}
	return nil
}

// flushBenchRedis empties the benchmark's Redis database for a cold cache, after checking once more
// that nothing but the benchmark's keys arrived since claimRedis, and marks it again.
func flushBenchRedis(ctx context.Context, rdb *redis.Client) error {
	k, err := inspectRedis(ctx, rdb)
	if err != nil {
		return err
	}
	if !k.owned() {
		return fmt.Errorf("redis database %d now holds keys the benchmark did not write (for example %q); not flushing it",
			rdb.Options().DB, k.foreign)
	}
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush the bench redis database: %w", err)
	}
	return markRedis(ctx, rdb)
}
