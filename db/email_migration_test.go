package db

import (
	"context"
	"testing"
	"time"
)

// TestEmailNFCMigration: migration 7 puts existing emails in NFC, except where that would make
// two accounts share an email (left for the operator), and from then on refuses emails outside NFC.
func TestEmailNFCMigration(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: migrates down and up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newMigratedTestPool(ctx, t)
	provider, sqlDB, err := newMigrationProvider(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	if _, err := provider.DownTo(ctx, 6); err != nil {
		t.Fatalf("DownTo 6: %v", err)
	}
	const (
		alone   = "zoe\u0308@example.com"  // NFD, no twin: normalised
		twinNFD = "jose\u0301@example.com" // NFD with an NFC twin: left alone
		twinNFC = "jos\u00e9@example.com"
	)
	if _, err := pool.Exec(ctx, `INSERT INTO users (id, name, email, password_hash) VALUES
		(gen_random_uuid(), 'A', $1, 'x'), (gen_random_uuid(), 'B', $2, 'x'), (gen_random_uuid(), 'C', $3, 'x')`,
		alone, twinNFD, twinNFC); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var normalised, leftAlone int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE email = $1), count(*) FILTER (WHERE email = $2) FROM users`,
		"zo\u00eb@example.com", twinNFD).Scan(&normalised, &leftAlone); err != nil {
		t.Fatal(err)
	}
	if normalised != 1 || leftAlone != 1 {
		t.Errorf("after the migration: %d normalised, %d twins left alone; want 1 and 1", normalised, leftAlone)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO users (id, name, email, password_hash) VALUES (gen_random_uuid(), 'D', $1, 'x')`,
		"e\u0301ve@example.com"); err == nil {
		t.Errorf("an email outside NFC was stored")
	}
}
