package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DATABASE_URL", "HTTP_ADDR", "JWT_SECRET", "APP_ENV", "CORS_ALLOWED_ORIGINS", "DB_MAX_CONNS",
		"postgres://postgres@127.0.0.1:5432/taskgraph?sslmode=disable", ":8080", "serve", "migrate"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("--help does not mention %q", name)
		}
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"frobnicate"}, func(string) string { return "" }, &out, &out)
	if !errors.Is(err, errUsage) {
		t.Fatalf("err = %v, want a usage error", err)
	}
}

func TestProductionWithoutSecretRefusesToStart(t *testing.T) {
	var out bytes.Buffer
	env := map[string]string{"APP_ENV": "production"}
	err := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("err = %v, want a JWT_SECRET configuration error", err)
	}
}

// TestNoArgumentsServes: the README's quick start runs the binary with no arguments, which means
// serve (it panicked once, looking for --help past the end of an empty argument list). Production
// without a secret stops at configuration, so this proves the serve path is reached.
func TestNoArgumentsServes(t *testing.T) {
	var out bytes.Buffer
	env := map[string]string{"APP_ENV": "production"}
	err := run(context.Background(), nil, func(k string) string { return env[k] }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Fatalf("err = %v, want serve's JWT_SECRET configuration error", err)
	}
}

// TestMigrateCreatesTheDatabaseAndSetRoleWorks runs the commands a fresh machine runs: the database
// does not exist yet, migrate creates and migrates it, and set-role reports a missing user clearly.
func TestMigrateCreatesTheDatabaseAndSetRoleWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "taskgraph_cmdtest_" + hex.EncodeToString(b)
	url := "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	env := map[string]string{"DATABASE_URL": url}
	getenv := func(k string) string { return env[k] }
	var out, logs bytes.Buffer
	ctx := context.Background()
	if err := run(ctx, []string{"migrate"}, getenv, &out, &logs); err != nil {
		t.Fatalf("migrate: %v\n%s", err, logs.String())
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("database was not created: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO users (id, name, email, password_hash) VALUES (gen_random_uuid(), 'Op', 'op@example.com', 'x')`); err != nil {
		t.Fatalf("schema missing after migrate: %v", err)
	}
	if err := run(ctx, []string{"set-role", "OP@example.com", "admin"}, getenv, &out, &logs); err != nil {
		t.Fatalf("set-role: %v", err)
	}
	var role string
	if err := conn.QueryRow(ctx, `SELECT role FROM users WHERE email = 'op@example.com'`).Scan(&role); err != nil || role != "ADMIN" {
		t.Fatalf("role = %q, %v; want ADMIN", role, err)
	}
	if err := run(ctx, []string{"set-role", "nobody@example.com", "ADMIN"}, getenv, &out, &logs); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("set-role of a missing user: err = %v, want not found", err)
	}
	if strings.Contains(logs.String(), "password_hash") {
		t.Fatalf("logs mention password hashes")
	}
	// One-shot commands say what they did, not the whole settings dump or the JWT_SECRET warning
	// (they issue no tokens).
	for _, noise := range []string{`"config"`, "JWT_SECRET", "DB_MAX_CONNS", `"msg":"starting"`} {
		if strings.Contains(logs.String(), noise) {
			t.Errorf("migrate and set-role logged %q:\n%s", noise, logs.String())
		}
	}
}

// TestSubcommandHelp: every command answers -h and --help with its own usage on stdout and exit
// status 0, and does nothing else: no database (DATABASE_URL points at a closed port, so any attempt
// would fail), no listener, no job, no log line.
func TestSubcommandHelp(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		"HTTP_ADDR": "127.0.0.1:1", "WORKER_HTTP_ADDR": "127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--help"}, "taskgraph [serve]"},
		{[]string{"worker", "--help"}, "taskgraph worker"},
		{[]string{"worker", "-h"}, "taskgraph worker"},
		{[]string{"migrate", "--help"}, "taskgraph migrate"},
		{[]string{"set-role", "--help"}, "taskgraph set-role EMAIL ROLE"},
		{[]string{"set-role", "ada@example.com", "-h"}, "taskgraph set-role EMAIL ROLE"},
		{[]string{"healthcheck", "--help"}, "taskgraph healthcheck [worker]"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := run(ctx, tc.args, func(k string) string { return env[k] }, &stdout, &stderr)
			if err != nil {
				t.Fatalf("err = %v (stderr %s)", err, stderr.String())
			}
			if !strings.Contains(stdout.String(), "Usage:") || !strings.Contains(stdout.String(), tc.want) {
				t.Errorf("stdout = %q, want the usage of %q", stdout.String(), tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s: it did more than print help", d)
			}
		})
	}
}
