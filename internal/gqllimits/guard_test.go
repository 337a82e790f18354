package gqllimits_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/gqllimits"
)

const myTasks = `query MyTasks {
  tasks(first: 10, filter: { status: [TODO, IN_PROGRESS], search: "report" }, orderBy: { field: DUE_AT, direction: ASC }) {
    totalCount
    edges { cursor node { id title dueAt owner { name taskCounts { total done overdue } } } }
    pageInfo { hasNextPage endCursor }
  }
}`

// introspectionQuery is graphql-js's getIntrospectionQuery() (v16), what GraphiQL sends.
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name } } } } } } }
}`

var schema = graph.NewExecutableSchema(graph.Config{}).Schema()

func guard(t *testing.T, l gqllimits.Limits, query, operationName string) *gqlerror.Error {
	t.Helper()
	g := gqllimits.NewGuard(l, 16)
	return g.MutateOperationParameters(context.Background(), &graphql.RawParams{Query: query, OperationName: operationName})
}

func accepted(t *testing.T, query string) {
	t.Helper()
	if err := guard(t, gqllimits.DefaultLimits(), query, ""); err != nil {
		t.Fatalf("refused a document that should pass: %v", err)
	}
}

func refused(t *testing.T, err *gqlerror.Error, wantMessage string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted a document that should be refused (want %q)", wantMessage)
	}
	var app *apperr.Error
	if !errors.As(err, &app) || app.Code != apperr.QueryTooComplex {
		t.Fatalf("error %v does not wrap a QUERY_TOO_COMPLEX *apperr.Error", err)
	}
	if err.Extensions["code"] != string(apperr.QueryTooComplex) {
		t.Fatalf("extensions.code = %v", err.Extensions["code"])
	}
	if !strings.Contains(err.Message, wantMessage) || app.Message != err.Message {
		t.Fatalf("message = %q (app %q), want it to contain %q", err.Message, app.Message, wantMessage)
	}
}

// valid proves a benign document still passes gqlparser's validator: the process and the validator are fine.
func valid(t *testing.T, query string) {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if errs := validator.ValidateWithRules(schema, doc, rules.NewDefaultRules()); len(errs) > 0 {
		t.Fatalf("validate: %v", errs)
	}
}

func quick(t *testing.T, d time.Duration) {
	t.Helper()
	if d > 100*time.Millisecond {
		t.Fatalf("took %v, want < 100ms", d)
	}
}

func TestDefaultLimits(t *testing.T) {
	want := gqllimits.Limits{MaxTokens: 10000, MaxDepth: 12, MaxAliases: 30, MaxRootFields: 20, MaxNodes: 5000}
	if got := gqllimits.DefaultLimits(); got != want {
		t.Fatalf("DefaultLimits() = %+v", got)
	}
}

func TestFragmentCyclesRefused(t *testing.T) {
	cases := []struct{ name, query, message string }{
		{"self", `query { me { ...A } } fragment A on User { id ...A }`,
			"fragment A spreads itself (cycle A → A)"},
		{"two", `query { me { ...A } }
			fragment A on User { tasks { edges { node { owner { ...B } } } } }
			fragment B on User { id ...A }`,
			"fragment A spreads itself (cycle A → B → A)"},
		{"three through inline fragments", `query { me { ...A } }
			fragment A on User { ... on User { ...B } }
			fragment B on User { tasks { edges { node { ... on Task { owner { ...C } } } } } }
			fragment C on User { ... on User { ... on User { name ...A } } }`,
			"fragment A spreads itself (cycle A → B → C → A)"},
		{"unused by the selected operation", `query Fine { me { id } }
			fragment X on User { ...Y } fragment Y on User { ...Z } fragment Z on User { ...X }`,
			"fragment X spreads itself (cycle X → Y → Z → X)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			err := guard(t, gqllimits.DefaultLimits(), c.query, "Fine")
			quick(t, time.Since(start))
			refused(t, err, c.message)
		})
	}
	// Nothing broke: the validator still works on a small benign document.
	valid(t, `query { me { id name } }`)
}

// fanOut builds levels fragments, each spreading the next twice; body wraps the two spreads.
func fanOut(levels int, body string) string {
	var b strings.Builder
	b.WriteString("query { me { ...F1 } }\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "fragment F%d on User { %s }\n", i, fmt.Sprintf(body, i+1, i+1))
	}
	fmt.Fprintf(&b, "fragment F%d on User { id }\n", levels)
	return b.String()
}

func TestExponentialFragmentFanOutIsFast(t *testing.T) {
	flat := fanOut(20, "id ...F%d ...F%d")
	nested := fanOut(20, "tasks { edges { node { owner { ...F%d ...F%d } } } }")

	start := time.Now()
	err := guard(t, gqllimits.DefaultLimits(), flat, "")
	quick(t, time.Since(start))
	refused(t, err, "query expands to more than 5000 selections")

	start = time.Now()
	err = guard(t, gqllimits.DefaultLimits(), nested, "")
	quick(t, time.Since(start))
	refused(t, err, "query depth 78 exceeds the limit of 12")

	// With the size limit off, 2^40 expansions are still checked in linear time (and accepted).
	noSize := gqllimits.DefaultLimits()
	noSize.MaxNodes = 0
	start = time.Now()
	err = guard(t, noSize, fanOut(40, "id ...F%d ...F%d"), "")
	quick(t, time.Since(start))
	if err != nil {
		t.Fatalf("flat fan-out without a size limit: %v", err)
	}
}

// deepQuery selects a field chain of exactly depth fields: me, tasks, edges, node, owner, tasks, ...
func deepQuery(depth int) string {
	chain := []string{"tasks", "edges", "node", "owner"}
	leaf := map[string]string{"me": "id", "owner": "id", "tasks": "totalCount", "edges": "cursor", "node": "id"}
	path := []string{"me"}
	for len(path) < depth-1 {
		path = append(path, chain[(len(path)-1)%len(chain)])
	}
	return "query { " + strings.Join(path, " { ") + " { " + leaf[path[len(path)-1]] + strings.Repeat(" }", len(path)) + " }"
}

func TestDepth(t *testing.T) {
	ok := deepQuery(12)
	valid(t, ok)
	accepted(t, ok)

	deep := deepQuery(13)
	valid(t, deep)
	refused(t, guard(t, gqllimits.DefaultLimits(), deep, ""), "query depth 13 exceeds the limit of 12")

	// Through fragments and inline fragments: me, tasks, edges, node, owner, tasks, edges, node, owner, tasks, edges, node, id.
	viaFragments := `query { me { ...U } }
		fragment U on User { tasks { ... on TaskConnection { edges { ...E } } } }
		fragment E on TaskEdge { node { owner { ... { tasks { edges { node { owner { tasks { edges { node { id } } } } } } } } } } }`
	valid(t, viaFragments)
	refused(t, guard(t, gqllimits.DefaultLimits(), viaFragments, ""), "query depth 13 exceeds the limit of 12")
}

func aliases(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a%d: id ", i)
	}
	return b.String()
}

func TestAliases(t *testing.T) {
	accepted(t, "query { me { "+aliases(30)+"} }")
	refused(t, guard(t, gqllimits.DefaultLimits(), "query { me { "+aliases(31)+"} }", ""),
		"query uses more than 30 aliases; the limit is 30")
	// A fragment counts once per spread: 2×15 + 1 = 31.
	refused(t, guard(t, gqllimits.DefaultLimits(),
		"query { me { ...F } other: me { ...F } } fragment F on User { "+aliases(15)+"}", ""),
		"more than 30 aliases")
}

func rootFields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "r%d: me { id } ", i)
	}
	return b.String()
}

func TestRootFields(t *testing.T) {
	accepted(t, "query { "+rootFields(20)+"}")
	refused(t, guard(t, gqllimits.DefaultLimits(), "query { "+rootFields(21)+"}", ""),
		"operation selects 21 root fields; the limit is 20")
	refused(t, guard(t, gqllimits.DefaultLimits(), "query { extra: me { id } ...R } fragment R on Query { "+rootFields(20)+"}", ""),
		"operation selects 21 root fields")
	// Repeating a key selects it once.
	accepted(t, "query { me { id } me { name } ...R ...R } fragment R on Query { me { email } }")
}

func TestTokenLimit(t *testing.T) {
	big := "query { me { " + strings.Repeat("id ", 10001) + "} }"
	refused(t, guard(t, gqllimits.DefaultLimits(), big, ""), "query exceeds the limit of 10000 tokens")
	// Any other parse error is left for gqlgen to report.
	if err := guard(t, gqllimits.DefaultLimits(), "query { me { id }", ""); err != nil {
		t.Fatalf("syntax error should pass through: %v", err)
	}
}

func TestClientDocumentsAccepted(t *testing.T) {
	valid(t, myTasks)
	accepted(t, myTasks)
	valid(t, introspectionQuery)
	accepted(t, introspectionQuery)
}

func TestSelectedOperationOnly(t *testing.T) {
	doc := "query Small { me { id } }\n" + strings.Replace(deepQuery(13), "query", "query Deep", 1)
	if err := guard(t, gqllimits.DefaultLimits(), doc, "Small"); err != nil {
		t.Fatalf("Small: %v", err)
	}
	refused(t, guard(t, gqllimits.DefaultLimits(), doc, "Deep"), "query depth 13")
	refused(t, guard(t, gqllimits.DefaultLimits(), doc, ""), "query depth 13")
	refused(t, guard(t, gqllimits.DefaultLimits(), doc, "Missing"), "query depth 13")
}

func TestVerdictsAreCached(t *testing.T) {
	g := gqllimits.NewGuard(gqllimits.DefaultLimits(), 4)
	params := &graphql.RawParams{Query: deepQuery(13)}
	first := g.MutateOperationParameters(context.Background(), params)
	second := g.MutateOperationParameters(context.Background(), params)
	refused(t, first, "query depth 13")
	refused(t, second, "query depth 13")
	if first == second {
		t.Fatal("a cached refusal must be a fresh error each time")
	}
	ok := &graphql.RawParams{Query: myTasks}
	for range 2 {
		if err := g.MutateOperationParameters(context.Background(), ok); err != nil {
			t.Fatal(err)
		}
	}
}
