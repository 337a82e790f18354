package graphiql

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

func get(t *testing.T, h http.Handler, target string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPageLoadsNothingFromElsewhere: the page names only its own assets, and its Content Security
// Policy lets it load and send nothing beyond its origin (gqlgen's page loaded React and GraphiQL
// from a CDN and stayed on "Loading…" offline).
func TestPageLoadsNothingFromElsewhere(t *testing.T) {
	h, err := New("Taskgraph", "/graphql")
	if err != nil {
		t.Fatal(err)
	}
	res := get(t, h, "/")
	page := body(t, res)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1); len(refs) != 2 {
		t.Fatalf("page references %v, want its script and stylesheet", refs)
	} else {
		for _, ref := range refs {
			if !strings.HasPrefix(ref[1], AssetPrefix) {
				t.Errorf("page loads %q, not one of its own assets", ref[1])
			}
			if a := get(t, h, ref[1]); a.StatusCode != http.StatusOK || !strings.Contains(a.Header.Get("Cache-Control"), "immutable") {
				t.Errorf("%s: %d, Cache-Control %q", ref[1], a.StatusCode, a.Header.Get("Cache-Control"))
			}
		}
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, cdn := range []string{"jsdelivr", "unpkg", "esm.sh", "cdnjs", "googleapis"} {
		if strings.Contains(page, cdn) || strings.Contains(string(h.assets["graphiql.js"].body), cdn) {
			t.Errorf("the page or its script names %s", cdn)
		}
	}
	if !strings.Contains(page, `"endpoint":"/graphql"`) {
		t.Errorf("page does not name the endpoint: %.500s", page)
	}
	if a := get(t, h, AssetPrefix+"nope.js"); a.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %d", a.StatusCode)
	}
}

// TestLicensesShipWithTheAssets: the license of every bundled package is served next to it.
func TestLicensesShipWithTheAssets(t *testing.T) {
	h, err := New("Taskgraph", "/graphql")
	if err != nil {
		t.Fatal(err)
	}
	res := get(t, h, AssetPrefix+"THIRD_PARTY_LICENSES.txt")
	text := body(t, res)
	for _, want := range []string{"- graphiql 4.1.2 (MIT)", "- react 18.3.1 (MIT)", "- react-dom 18.3.1 (MIT)", "- graphql-ws 6.4.2 (MIT)",
		"- graphql 16.15.0 (MIT)", "- @graphiql/toolkit 0.11.3 (MIT)", "Permission is hereby granted"} {
		if !strings.Contains(text, want) {
			t.Errorf("THIRD_PARTY_LICENSES.txt lacks %q", want)
		}
	}
}

// TestExamplesCoverTheTour: the editor opens on sign-up, paging, a mutation and a subscription, with
// the Authorization hint, and every operation has a name (GraphiQL runs one by name).
func TestExamplesCoverTheTour(t *testing.T) {
	doc, err := parser.ParseQuery(&ast.Source{Input: Examples})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]ast.Operation{}
	for _, op := range doc.Operations {
		if op.Name == "" {
			t.Fatal("an example operation has no name")
		}
		kinds[op.Name] = op.Operation
	}
	for name, kind := range map[string]ast.Operation{"SignUp": ast.Mutation, "SignIn": ast.Mutation, "CreateTask": ast.Mutation,
		"MyTasks": ast.Query, "FinishTask": ast.Mutation, "TaskChanged": ast.Subscription} {
		if kinds[name] != kind {
			t.Errorf("example %s is %q, want a %s", name, kinds[name], kind)
		}
	}
	if !strings.Contains(Examples, `{"Authorization": "Bearer <accessToken>"}`) || !strings.Contains(Headers, `"Authorization": ""`) {
		t.Error("the examples lack the Authorization hint")
	}
}
