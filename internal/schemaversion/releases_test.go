package schemaversion_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

func readFile(t *testing.T, elem ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(elem...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVersionMatchesReleases keeps Version honest: a released version's schema is frozen, so once the
// schema differs from schema/released/<Version>.graphql, Version must move past every release.
func TestVersionMatchesReleases(t *testing.T) {
	cur, err := schemaversion.ParseSemver(schemaversion.Version)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	dir := filepath.Join(repoRoot, "schema", "released")
	releases, err := schemaversion.Releases(dir)
	if err != nil {
		t.Fatal(err)
	}
	latest := releases[len(releases)-1]
	released := filepath.Join(dir, schemaversion.Version+".graphql")
	if _, err := os.Stat(released); err == nil {
		if !sameContract(t, readFile(t, released)) {
			t.Fatalf("the schema changed, but Version is still %s, which is released (%s).\n"+
				"Bump Version in internal/schemaversion/version.go (minor for additions, major for breaking changes);\n"+
				"see docs/schema-versioning.md.", schemaversion.Version, released)
		}
		return
	}
	if cur.Compare(latest) <= 0 {
		t.Fatalf("Version %s is unreleased but not newer than the latest release %s", cur, latest)
	}
}

// sameContract reports whether a released snapshot shows clients what the server shows them now:
// both are compared as introspection answers, so the printer's format does not count. Releases
// frozen before snapshots were printed from introspection lack the schema description (the old
// printer dropped it although the server served it); it is not compared for them.
func sameContract(t *testing.T, releasedSDL string) bool {
	t.Helper()
	released, err := schemaversion.IntrospectSDL("released", releasedSDL)
	if err != nil {
		t.Fatal(err)
	}
	live, err := schemaversion.Introspect(graph.NewExecutableSchema(graph.Config{}))
	if err != nil {
		t.Fatal(err)
	}
	var r, l map[string]map[string]any
	if err := json.Unmarshal(released, &r); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(live, &l); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(releasedSDL, "\nschema {") {
		delete(r["__schema"], "description")
		delete(l["__schema"], "description")
	}
	return reflect.DeepEqual(r, l)
}

func TestParseSemver(t *testing.T) {
	for _, s := range []string{"1.0.0", "0.1.0", "10.20.30"} {
		v, err := schemaversion.ParseSemver(s)
		if err != nil || v.String() != s {
			t.Errorf("ParseSemver(%q) = %v, %v", s, v, err)
		}
	}
	for _, s := range []string{"", "1", "1.0", "v1.0.0", "1.0.0-rc.1", "01.0.0", "1.-1.0", "1.0.0.0"} {
		if _, err := schemaversion.ParseSemver(s); err == nil {
			t.Errorf("ParseSemver(%q) accepted", s)
		}
	}
	a, _ := schemaversion.ParseSemver("1.9.0")
	b, _ := schemaversion.ParseSemver("1.10.0")
	if a.Compare(b) >= 0 || b.Compare(a) <= 0 || a.Compare(a) != 0 {
		t.Error("Compare is not numeric")
	}
}

func TestReleasesSortsNumerically(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"1.10.0", "1.9.0", "2.0.0", "1.0.0"} {
		if err := os.WriteFile(filepath.Join(dir, v+".graphql"), []byte("type Query { a: Int }\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := schemaversion.Releases(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].String() != "1.0.0" || got[2].String() != "1.10.0" || got[3].String() != "2.0.0" {
		t.Fatalf("Releases = %v", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "next.graphql"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := schemaversion.Releases(dir); err == nil {
		t.Error("a file not named <version>.graphql was accepted")
	}
}
