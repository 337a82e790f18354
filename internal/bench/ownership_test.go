package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/taskgraph/taskgraph/internal/testenv"
)

// adminExec runs one statement on the maintenance database.
func adminExec(t *testing.T, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL()+"/"+maintenanceDatabase+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// unusedDatabase returns the URL of a database that does not exist yet, and drops it (if anyone
// created it) when the test ends.
func unusedDatabase(t *testing.T) (name, url string) {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "taskgraph_bench_test_" + hex.EncodeToString(b)
	t.Cleanup(func() { adminExec(t, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") })
	return name, testenv.PostgresURL() + "/" + name + "?sslmode=disable"
}

// databaseState reads what the ownership tests look at: whether the database exists, its comment,
// and whether it has a users table (which only migrations create).
func databaseState(t *testing.T, name string) (exists bool, comment string, migrated bool) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL()+"/"+maintenanceDatabase+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	comment, exists, err = databaseComment(ctx, conn, name)
	if err != nil || !exists {
		return exists, comment, false
	}
	db, err := pgx.Connect(ctx, testenv.PostgresURL()+"/"+name+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if err := db.QueryRow(ctx, `SELECT to_regclass('users') IS NOT NULL`).Scan(&migrated); err != nil {
		t.Fatal(err)
	}
	return exists, comment, migrated
}

// TestRefusesDatabaseItDidNotCreate: a database someone else made (with their data in it, or empty) is
// refused before anything is written to it; -force-reseed takes it over; a database the benchmark
// created is accepted on the next run.
func TestRefusesDatabaseItDidNotCreate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name, url := unusedDatabase(t)
	adminExec(t, "CREATE DATABASE "+name)
	other, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, err := other.Exec(ctx, `CREATE TABLE notes (body text); INSERT INTO notes VALUES ('precious')`); err != nil {
		t.Fatal(err)
	}

	c := QuickConfig()
	c.DatabaseURL, c.RedisURL, c.Out = url, testenv.FlushedRedisDB(t, 12), ""
	c.Peer = false
	_, err = Run(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "was not created by taskgraph bench") || !strings.Contains(err.Error(), "-force-reseed") {
		t.Fatalf("Run on someone else's database: err = %v, want a refusal naming -force-reseed", err)
	}
	var body string
	if err := other.QueryRow(ctx, `SELECT body FROM notes`).Scan(&body); err != nil || body != "precious" {
		t.Errorf("their data after the refusal: %q, %v", body, err)
	}
	if _, comment, migrated := databaseState(t, name); migrated || comment != "" {
		t.Errorf("after the refusal: migrated %v, comment %q; want the database untouched", migrated, comment)
	}

	// An empty database is refused too: the benchmark did not create it.
	emptyName, emptyURL := unusedDatabase(t)
	adminExec(t, "CREATE DATABASE "+emptyName)
	if _, err := claimDatabase(ctx, emptyURL, false, t.Logf); err == nil {
		t.Error("claimDatabase accepted an empty database someone else created")
	}

	// -force-reseed takes the first one over: marked, migrated and seeded.
	c.ForceReseed = true
	pool, err := openDatabase(ctx, c, t.Logf)
	if err != nil {
		t.Fatalf("openDatabase with -force-reseed: %v", err)
	}
	pool.Close()
	if reseeded, err := ensureSeed(ctx, c, t.Logf); err != nil || !reseeded {
		t.Fatalf("ensureSeed with -force-reseed: reseeded %v, err %v", reseeded, err)
	}
	if _, comment, migrated := databaseState(t, name); !migrated || comment != databaseMark {
		t.Errorf("after -force-reseed: migrated %v, comment %q; want migrated and marked", migrated, comment)
	}

	// A database the benchmark creates is marked, and accepted on the next run without a flag.
	freshName, freshURL := unusedDatabase(t)
	if created, err := claimDatabase(ctx, freshURL, false, t.Logf); err != nil || !created {
		t.Fatalf("claimDatabase on a missing database: created %v, err %v", created, err)
	}
	if exists, comment, _ := databaseState(t, freshName); !exists || comment != databaseMark {
		t.Fatalf("created database: exists %v, comment %q", exists, comment)
	}
	if created, err := claimDatabase(ctx, freshURL, false, t.Logf); err != nil || created {
		t.Errorf("claimDatabase on the benchmark's own database: created %v, err %v; want it accepted", created, err)
	}
}

// TestRefusesRedisWithForeignKeys: a Redis database holding a key the benchmark did not write, or only
// another server's Taskgraph keys, is refused before anything is written anywhere; -force-flush empties
// it; a database the benchmark marked is flushed between runs only while nothing foreign arrived.
func TestRefusesRedisWithForeignKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	redisURL := testenv.FlushedRedisDB(t, 13)
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	if err := rdb.Set(ctx, "someone:else", "precious", 0).Err(); err != nil {
		t.Fatal(err)
	}

	dbName, dbURL := unusedDatabase(t)
	c := QuickConfig()
	c.DatabaseURL, c.RedisURL, c.Out = dbURL, redisURL, ""
	c.Peer = false
	_, err = Run(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "did not write") || !strings.Contains(err.Error(), "-force-flush") {
		t.Fatalf("Run with a foreign Redis key: err = %v, want a refusal naming -force-flush", err)
	}
	if v, err := rdb.Get(ctx, "someone:else").Result(); err != nil || v != "precious" {
		t.Errorf("their key after the refusal: %q, %v", v, err)
	}
	if exists, _, _ := databaseState(t, dbName); exists {
		t.Error("the refused run created its database: the refusal must come before anything is written")
	}
	if n, _ := rdb.Exists(ctx, redisMarkKey).Result(); n != 0 {
		t.Error("the refused run marked the Redis database")
	}

	// Only Taskgraph keys but no mark: another Taskgraph server's cache, refused as well.
	if err := rdb.Del(ctx, "someone:else").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "taskgraph:cache:u:1", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := claimRedis(ctx, rdb, false, t.Logf); err == nil || !strings.Contains(err.Error(), "another server's cache") {
		t.Fatalf("claimRedis over another server's Taskgraph keys: err = %v, want a refusal", err)
	}
	if n, _ := rdb.Exists(ctx, "taskgraph:cache:u:1").Result(); n != 1 {
		t.Error("the other server's key is gone after the refusal")
	}

	// -force-flush empties and marks it.
	if err := rdb.Set(ctx, "someone:else", "precious", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := claimRedis(ctx, rdb, true, t.Logf); err != nil {
		t.Fatalf("claimRedis with -force-flush: %v", err)
	}
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 1 || keys[0] != redisMarkKey {
		t.Errorf("after -force-flush: keys %v, want only the mark", keys)
	}

	// Marked, with what the servers wrote: flushed, and marked again.
	if err := rdb.Set(ctx, "taskgraph:cache:u:2", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := flushBenchRedis(ctx, rdb); err != nil {
		t.Fatalf("flushBenchRedis on the benchmark's own keys: %v", err)
	}
	if keys, _ := rdb.Keys(ctx, "*").Result(); len(keys) != 1 || keys[0] != redisMarkKey {
		t.Errorf("after the flush: keys %v, want only the mark", keys)
	}
	// A foreign key arriving later stops the next flush.
	if err := rdb.Set(ctx, "late:arrival", "precious", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := flushBenchRedis(ctx, rdb); err == nil {
		t.Fatal("flushBenchRedis flushed a database holding a key the benchmark did not write")
	}
	if v, err := rdb.Get(ctx, "late:arrival").Result(); err != nil || v != "precious" {
		t.Errorf("the late key after the refused flush: %q, %v", v, err)
	}
	// And an empty database is claimed (marked) without a flag.
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := claimRedis(ctx, rdb, false, t.Logf); err != nil {
		t.Fatalf("claimRedis on an empty database: %v", err)
	}
	if err := rdb.Get(ctx, redisMarkKey).Err(); errors.Is(err, redis.Nil) {
		t.Error("an empty database was claimed without the mark")
	}
}

// TestRunStopsAtTimeout: a run that outlasts -timeout stops by itself, servers included, and says why.
func TestRunStopsAtTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL and Redis")
	}
	_, url := unusedDatabase(t)
	c := QuickConfig()
	c.DatabaseURL, c.RedisURL, c.Out, c.Peer = url, testenv.FlushedRedisDB(t, 10), "", false
	c.Duration, c.Timeout = time.Minute, 8*time.Second // the ceiling's first scenario alone outlasts the limit
	start := time.Now()
	_, err := Run(context.Background(), c)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "took longer than -timeout 8s") {
		t.Fatalf("Run past its timeout: err = %v", err)
	}
	if took > c.Timeout+stopTimeout {
		t.Errorf("Run returned %s after starting, want soon after the %s timeout", took.Round(time.Second), c.Timeout)
	}
}
