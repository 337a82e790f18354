package schemaversion_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSchemaCheckScript runs scripts/schema-check.sh (graphql-inspector plus cmd/schemacheck) on
// edited copies of the snapshot: a removed field fails until the changelog acknowledges it, additions
// pass, dangerous changes are reported without failing. It needs node and npm (graphql-inspector is
// installed once into .tools/graphql-inspector and reused), and is skipped without them.
func TestSchemaCheckScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node; skipped with -short")
	}
	for _, tool := range []string{"bash", "node", "npm", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: %v", tool, err)
		}
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := readFile(t, root, "schema", "schema.snapshot.graphql")
	dir := t.TempDir()
	baseline := write(t, dir, "1.0.0.graphql", snapshot)

	const unacknowledged = "# Changelog\n\n## [Unreleased]\n\n- Nothing yet.\n\n## [1.0.0] - 2026-11-29\n\n" +
		"- BREAKING: `TaskCounts.todo` (in a released section: does not count)\n"
	acknowledged := strings.Replace(unacknowledged, "- Nothing yet.",
		"- BREAKING: `TaskCounts.todo` removed; use `total - inProgress - done` instead.", 1)

	edit := func(old, new string) string {
		t.Helper()
		if strings.Count(snapshot, old) != 1 {
			t.Fatalf("the snapshot no longer has exactly one %q; update this test", old)
		}
		return strings.Replace(snapshot, old, new, 1)
	}
	removedField := edit("  todo: Int!\n", "")

	cases := []struct {
		name, schema, changelog string
		wantOK                  bool
		want                    []string // in the output
	}{
		{"unchanged", snapshot, unacknowledged, true, []string{"No changes detected", "schema check: OK"}},
		{"removed field", removedField, unacknowledged, false, []string{
			"BREAKING, NOT acknowledged: TaskCounts.todo", "FAIL: 1 breaking change(s) not acknowledged",
			"- BREAKING: `TaskCounts.todo`:"}},
		{"removed field, acknowledged", removedField, acknowledged, true, []string{
			"breaking, acknowledged in", "TaskCounts.todo", "schema check: OK"}},
		{"nullable field added", edit("  todo: Int!\n", "  todo: Int!\n  blocked: Int\n"), unacknowledged, true, []string{
			"0 breaking (0 acknowledged), 0 dangerous, 1 safe", "schema check: OK"}},
		{"enum value added (dangerous)", edit("  IN_PROGRESS\n  DONE\n", "  IN_PROGRESS\n  BLOCKED\n  DONE\n"), unacknowledged, true, []string{
			"dangerous (not fatal): TaskStatus.BLOCKED", "schema check: OK"}},
		{"required argument added", edit("  me: User!\n", "  me(tenant: ID!): User!\n"), acknowledged, false, []string{
			"BREAKING, NOT acknowledged: Query.me.tenant"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			schema := write(t, sub, "schema.graphql", tc.schema)
			changelog := write(t, sub, "CHANGELOG.md", tc.changelog)
			cmd := exec.Command("bash", filepath.Join(root, "scripts", "schema-check.sh"), baseline, schema, changelog)
			cmd.Dir = root
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			t.Logf("bash scripts/schema-check.sh (%v):\n%s", err, out.String())
			var exit *exec.ExitError
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("schema-check.sh failed (%v), want success:\n%s", err, out.String())
			case !tc.wantOK && err == nil:
				t.Fatalf("schema-check.sh passed, want failure:\n%s", out.String())
			case !tc.wantOK && !(errors.As(err, &exit) && exit.ExitCode() == 1):
				t.Fatalf("schema-check.sh: %v, want exit status 1 (a breaking change, not a broken tool):\n%s", err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
