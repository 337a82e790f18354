package gqllimits_test

import (
	"context"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/gqllimits"
)

// guardSeeds are documents at and around the guard's limits: real queries, fragment cycles and fan-outs.
var guardSeeds = []string{
	myTasks,
	introspectionQuery,
	nestedConnections,
	`{ me { id } }`,
	`query { tasks { edges { node { ...A } } } } fragment A on Task { id ...A }`,
	`query { me { ...U } } fragment U on User { id } fragment U on User { ...U }`,
	`query { me { ...F0 } } fragment F0 on User { ...F1 ...F1 } fragment F1 on User { ...F2 ...F2 } fragment F2 on User { id }`,
	`query { me { ...U } } fragment U on User { ... on User { ...V } } fragment V on User { ...U }`,
	`mutation { a: login(input: {email: "a@b.c", password: "x"}) { accessToken } b: login(input: {email: "a@b.c", password: "y"}) { accessToken } }`,
	`{ me { tasks(first: 1) { edges { node { owner { tasks(first: 1) { edges { node { id } } } } } } } } }`,
	`query A { me { id } } query B { me { name } }`,
	`{ me @include(if: true) @skip(if: false) { id } }`,
	`subscription { taskChanged { task { id } } }`,
}

// FuzzGuard: the guard answers every document (no panic) with nil or a QUERY_TOO_COMPLEX refusal,
// and whatever it lets through can be validated by gqlparser: validation recursing without bound
// on self-referencing fragments (vektah/gqlparser#173) would kill the process, so such documents
// must never get past the guard.
func FuzzGuard(f *testing.F) {
	for _, s := range guardSeeds {
		f.Add(s, "")
	}
	f.Add(`query A { me { id } } query B { me { name } }`, "B")
	g := gqllimits.NewGuard(gqllimits.DefaultLimits(), 64)
	f.Fuzz(func(t *testing.T, query, operationName string) {
		err := g.MutateOperationParameters(context.Background(), &graphql.RawParams{Query: query, OperationName: operationName})
		if err != nil {
			if code, _ := err.Extensions["code"].(string); code != string(apperr.QueryTooComplex) {
				t.Fatalf("refusal %v with code %q", err, code)
			}
			return
		}
		doc, perr := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, gqllimits.DefaultLimits().MaxTokens)
		if perr != nil {
			return
		}
		_ = validator.ValidateWithRules(schema, doc, rules.NewDefaultRules())
	})
}

// FuzzCost: for every valid operation and page size the cost is computed without panic, never
// negative (saturating, never wrapping), and the limit refuses exactly what is above it.
func FuzzCost(f *testing.F) {
	for _, s := range guardSeeds {
		f.Add(s, int64(10))
	}
	f.Add(`query($n: Int) { tasks(first: $n) { edges { node { owner { tasks(last: $n) { totalCount } } } } } }`, int64(1<<62))
	f.Add(`query($n: Int) { nodes(ids: ["a"]) { id } tasks(first: $n) { totalCount } }`, int64(-5))
	es := costSchema()
	limit := gqllimits.NewCostLimit(5000)
	if err := limit.Validate(es); err != nil {
		f.Fatal(err)
	}
	g := gqllimits.NewGuard(gqllimits.DefaultLimits(), 64)
	f.Fuzz(func(t *testing.T, query string, n int64) {
		// Only documents the server would get this far with: past the guard, parsed and valid.
		if g.MutateOperationParameters(context.Background(), &graphql.RawParams{Query: query}) != nil {
			return
		}
		doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, gqllimits.DefaultLimits().MaxTokens)
		if err != nil || len(validator.ValidateWithRules(es.Schema(), doc, rules.NewDefaultRules())) > 0 || len(doc.Operations) != 1 {
			return
		}
		op := doc.Operations[0]
		vars, verr := validator.VariableValues(es.Schema(), op, map[string]any{"n": n})
		if verr != nil {
			return
		}
		opCtx := &graphql.OperationContext{RawQuery: query, Doc: doc, Operation: op, Variables: vars}
		ctx := graphql.WithOperationContext(context.Background(), opCtx)
		nodes := complexity.Calculate(ctx, es, op, vars)
		if nodes < 0 {
			t.Fatalf("cost %d < 0 for n=%d", nodes, n)
		}
		refusal := limit.MutateOperationContext(ctx, opCtx)
		if (refusal != nil) != (nodes > 5000) {
			t.Fatalf("cost %d, refused %v", nodes, refusal)
		}
		if cost, ok := gqllimits.CostFrom(ctx); !ok || cost.Points < 0 || cost.Nodes != nodes {
			t.Fatalf("CostFrom = %+v, %v; computed %d", cost, ok, nodes)
		}
	})
}
