package schemaversion_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

var update = flag.Bool("update", false, "rewrite schema/schema.snapshot.graphql from the code")

// repoRoot is the module root, two levels above this package.
var repoRoot = filepath.Join("..", "..")

var snapshotPath = filepath.Join(repoRoot, "schema", "schema.snapshot.graphql")

// TestSnapshotIsCurrent keeps the committed schema/schema.snapshot.graphql equal to the schema the
// server builds, so every schema change shows up in review as a diff of the full printed schema and
// scripts/schema-check.sh compares the real thing.
func TestSnapshotIsCurrent(t *testing.T) {
	got := schemaversion.PrintSchema()
	if *update {
		if err := os.WriteFile(snapshotPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", snapshotPath)
		return
	}
	want, err := os.ReadFile(snapshotPath)
	if err != nil {
		t.Fatalf("%v\nCreate it with: go test ./internal/schemaversion -update", err)
	}
	if string(want) != got {
		t.Fatalf("schema/schema.snapshot.graphql is out of date with schema/*.graphqls (first difference at %s).\n"+
			"Update it with:  go test ./internal/schemaversion -update\n"+
			"then review and commit the diff (and run bash scripts/schema-check.sh for breaking changes).",
			firstDifference(string(want), got))
	}
}

func TestPrintSchemaIsDeterministic(t *testing.T) {
	first := schemaversion.PrintSchema()
	for range 5 {
		if schemaversion.PrintSchema() != first {
			t.Fatal("PrintSchema differs between calls")
		}
	}
	for _, want := range []string{
		"The API's semantic version; also sent in every response's extensions.apiVersion.",
		"apiVersion: String!",
		"directive @auth on FIELD_DEFINITION | OBJECT",
		"enum ErrorCode {",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("printed schema lacks %q", want)
		}
	}
	if strings.Contains(first, "type __Schema") || strings.Contains(first, "scalar String") {
		t.Error("printed schema includes built-in definitions")
	}
}

// firstDifference names the first line where the committed snapshot and the code's schema differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl || i >= len(w) || i >= len(g) {
			return fmt.Sprintf("line %d: committed %q, code %q", i+1, wl, gl)
		}
	}
	return "end of file"
}

// TestSnapshotShowsWhatClientsSee: the committed snapshot is what a client that introspects the
// server gets (GraphiQL, codegen, a schema registry diffing it): the schema description and every
// directive introspection lists (@defer included), and nothing introspection does not show. A
// server built from the snapshot answers the introspection query exactly like the real one.
func TestSnapshotShowsWhatClientsSee(t *testing.T) {
	snapshot, err := os.ReadFile(snapshotPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"directive @defer(",
		"Taskgraph: register, log in, and manage your own tasks.",
		"schema {\n  query: Query\n  mutation: Mutation\n  subscription: Subscription\n}",
	} {
		if !strings.Contains(string(snapshot), want) {
			t.Errorf("the snapshot lacks %q, which introspection shows", want)
		}
	}
	live, err := schemaversion.Introspect(graph.NewExecutableSchema(graph.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	fromSnapshot, err := schemaversion.IntrospectSDL(snapshotPath, string(snapshot))
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, live, fromSnapshot) {
		l, _ := schemaversion.PrintIntrospection(live)
		s, _ := schemaversion.PrintIntrospection(fromSnapshot)
		t.Fatalf("introspecting the snapshot differs from introspecting the server (first difference at %s)", firstDifference(s, l))
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}
