package db

import (
	"context"
	"testing"
	"time"
)

// TestNotificationsMigrationDownAndUp checks that migration 3 (notifications) rolls back cleanly and
// applies again, leaving River's tables and the tasks alone.
func TestNotificationsMigrationDownAndUp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: migrates down and up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newMigratedTestPool(ctx, t)
	// The latest version, whatever later migrations exist: Migrate must come back to it.
	latest, err := MigrationStatus(ctx, pool)
	if err != nil || latest < 4 {
		t.Fatalf("MigrationStatus after Migrate = %d, %v; want at least 4", latest, err)
	}
	if _, err := pool.Exec(ctx, `
		WITH u AS (INSERT INTO users (id, name, email, password_hash) VALUES (gen_random_uuid(), 'M', 'm@example.com', 'x') RETURNING id),
		     t AS (INSERT INTO tasks (id, owner_id, title) SELECT gen_random_uuid(), id, 'kept' FROM u RETURNING id, owner_id)
		INSERT INTO notifications (user_id, kind, task_id, dedupe_key) SELECT owner_id, 'TASK_ASSIGNED', id, 'v1' FROM t`); err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		t.Helper()
		var found *string
		if err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", "public."+name).Scan(&found); err != nil {
			t.Fatal(err)
		}
		return found != nil
	}
	provider, sqlDB, err := newMigrationProvider(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	// Down to 2 rolls back 00004 (webhooks) and anything later too.
	if _, err := provider.DownTo(ctx, 2); err != nil {
		t.Fatalf("DownTo 2: %v", err)
	}
	if v, err := MigrationStatus(ctx, pool); err != nil || v != 2 || exists("notifications") || exists("tasks_open_due_at_idx") || exists("webhooks") {
		t.Fatalf("after Down: version %d, %v, notifications %v, due index %v, webhooks %v; want 2 without any",
			v, err, exists("notifications"), exists("tasks_open_due_at_idx"), exists("webhooks"))
	}
	if !exists("river_job") {
		t.Fatal("rolling back migration 3 dropped River's tables")
	}
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var tasks, notifications int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM notifications)`).Scan(&tasks, &notifications); err != nil {
		t.Fatal(err)
	}
	if v, err := MigrationStatus(ctx, pool); err != nil || v != latest || tasks != 1 || notifications != 0 || !exists("webhooks") {
		t.Fatalf("after Up: version %d, %v, %d tasks, %d notifications; want %d, 1 task, none, webhooks", v, err, tasks, notifications, latest)
	}
}
