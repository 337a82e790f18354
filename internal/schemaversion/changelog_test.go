package schemaversion_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

const sampleChangelog = "# Changelog\n" +
	"\n" +
	"Convention: a line like `- BREAKING: Query.me removed` acknowledges Query.me (this one is outside Unreleased).\n" +
	"\n" +
	"## [Unreleased]\n" +
	"\n" +
	"### Removed\n" +
	"\n" +
	"- BREAKING: `Query.tasks` removed; use `Query.search` instead.\n" +
	"- BREAKING: TaskStatus.BLOCKED removed.\n" +
	"- `User.email` is nullable now (not marked, so not acknowledged)\n" +
	"<!-- - BREAKING: `Task.owner` (a template in a comment)\n" +
	"     - BREAKING: `Task.title` -->\n" +
	"- BREAKING: SCHEMA_QUERY_TYPE_CHANGED, the root query type is renamed\n" +
	"\n" +
	"## [1.0.0] - 2026-11-29\n" +
	"\n" +
	"- BREAKING: `Task.version` (released, so it no longer acknowledges anything)\n"

func TestUnreleasedLines(t *testing.T) {
	lines, err := schemaversion.UnreleasedLines(sampleChangelog)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(lines, "### Removed") {
		t.Errorf("sub-headings belong to the section: %q", lines)
	}
	for _, l := range lines {
		if l == "## [1.0.0] - 2026-11-29" || l == "- BREAKING: `Task.version` (released, so it no longer acknowledges anything)" {
			t.Errorf("section runs past the next release heading: %q", l)
		}
	}

	for _, heading := range []string{"## Unreleased", "## [unreleased]", "# [Unreleased]", "### Unreleased ###"} {
		if _, err := schemaversion.UnreleasedLines("# Changelog\n" + heading + "\n- x\n"); err != nil {
			t.Errorf("%q: %v", heading, err)
		}
	}
	for _, text := range []string{"# Changelog\n## [1.0.0]\n- BREAKING: `Query.me`\n", "Unreleased\n", "```\n## [Unreleased]\n```\n"} {
		if _, err := schemaversion.UnreleasedLines(text); !errors.Is(err, schemaversion.ErrNoUnreleased) {
			t.Errorf("%q: err = %v, want ErrNoUnreleased", text, err)
		}
	}
}

func TestAcknowledges(t *testing.T) {
	lines, err := schemaversion.UnreleasedLines(sampleChangelog)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"Query.tasks":               true,
		"TaskStatus.BLOCKED":        true,  // without backticks, before a full stop
		"SCHEMA_QUERY_TYPE_CHANGED": true,  // a change without a path
		"Query.task":                false, // a prefix of an acknowledged path
		"Query.tasks.first":         false, // a longer path than the acknowledged one
		"tasks":                     false, // a suffix
		"Query.search":              true,  // named on a BREAKING: line; being named is what counts
		"User.email":                false, // no BREAKING: marker on its line
		"Task.owner":                false, // in an HTML comment
		"Task.title":                false, // in the second line of an HTML comment
		"Query.me":                  false, // outside the Unreleased section (above it)
		"Task.version":              false, // outside the Unreleased section (a released version)
	} {
		if got := schemaversion.Acknowledges(lines, key); got != want {
			t.Errorf("Acknowledges(%q) = %v, want %v", key, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	d := schemaversion.Diff{
		Breaking: []schemaversion.Change{
			{Type: "FIELD_REMOVED", Path: "Query.tasks", Message: "Field 'tasks' was removed from object type 'Query'"},
			{Type: "FIELD_ARGUMENT_ADDED", Path: "Query.me.tenant", Message: "Argument 'tenant: ID!' added to field 'Query.me'"},
		},
		Dangerous: []schemaversion.Change{{Type: "ENUM_VALUE_ADDED", Path: "TaskStatus.BLOCKED"}},
	}
	v, err := schemaversion.Check(d, sampleChangelog)
	if err != nil {
		t.Fatal(err)
	}
	if v.OK() || len(v.Acknowledged) != 1 || v.Acknowledged[0].Path != "Query.tasks" ||
		len(v.Unacknowledged) != 1 || v.Unacknowledged[0].Path != "Query.me.tenant" || len(v.Dangerous) != 1 {
		t.Fatalf("verdict = %+v", v)
	}
	if hint := schemaversion.AcknowledgmentHint(v.Unacknowledged[0]); hint !=
		"- BREAKING: `Query.me.tenant`: Argument 'tenant: ID!' added to field 'Query.me'" {
		t.Errorf("hint = %q", hint)
	}

	// Dangerous changes alone never fail, and need no Unreleased section.
	if v, err := schemaversion.Check(schemaversion.Diff{Dangerous: d.Dangerous}, "# Changelog\n"); err != nil || !v.OK() {
		t.Errorf("dangerous only: %+v, %v", v, err)
	}
	// Breaking changes with nowhere to acknowledge them are an error.
	if _, err := schemaversion.Check(d, "# Changelog\n"); !errors.Is(err, schemaversion.ErrNoUnreleased) {
		t.Errorf("no Unreleased section: err = %v", err)
	}
}

func TestChangelogFollowsTheConvention(t *testing.T) {
	raw := readFile(t, repoRoot, "CHANGELOG.md")
	if _, err := schemaversion.UnreleasedLines(raw); err != nil {
		t.Fatal(err)
	}
}
