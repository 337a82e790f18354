package schemaversion_test

import (
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

// TestDeprecationReasons enforces the deprecation policy of docs/schema-versioning.md on the served schema: every
// @deprecated has a reason of the form "Removal after YYYY-MM-DD; use X instead".
func TestDeprecationReasons(t *testing.T) {
	for _, p := range schemaversion.DeprecationProblems(schemaversion.Schema()) {
		t.Error(p)
	}
}

func TestDeprecationProblemsFindsBadReasons(t *testing.T) {
	s, err := gqlparser.LoadSchema(&ast.Source{Name: "test.graphqls", Input: `
		type Query {
			good: Int @deprecated(reason: "Removal after 2027-03-01; use better instead.")
			better(old: Int @deprecated(reason: "No date"), new: Int): Int
			bare: Int @deprecated
			badDate: Int @deprecated(reason: "Removal after 2027-13-45; use better.")
			lower: Int @deprecated(reason: "removal after 2027-03-01")
		}
		enum Color { RED GREEN @deprecated(reason: "Removal after 2027-01-31; use RED.") BLUE @deprecated(reason: "gone soon") }
		input Filter { old: Int @deprecated(reason: "Use new.") new: Int }
	`})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(schemaversion.DeprecationProblems(s), "\n")
	for _, want := range []string{"Query.better.old:", "Query.bare:", "Query.badDate:", "Query.lower:", "Color.BLUE:", "Filter.old:"} {
		if !strings.Contains(got, want) {
			t.Errorf("no problem reported for %s in:\n%s", strings.TrimSuffix(want, ":"), got)
		}
	}
	for _, ok := range []string{"Query.good:", "Color.GREEN:", "Query.better:"} {
		if strings.Contains(got, ok) {
			t.Errorf("%s is fine, but was reported:\n%s", strings.TrimSuffix(ok, ":"), got)
		}
	}
}
