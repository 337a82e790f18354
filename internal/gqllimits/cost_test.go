package gqllimits_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/gqllimits"
)

const nestedConnections = `query { tasks(first: 100) { edges { node { owner { tasks(first: 100) { edges { node { id } } } } } } } }`

func costSchema() graphql.ExecutableSchema {
	cfg := graph.Config{}
	gqllimits.Complexity(&cfg.Complexity)
	return graph.NewExecutableSchema(cfg)
}

// operation parses, validates and coerces variables as gqlgen does before OperationContextMutators run.
func operation(t *testing.T, es graphql.ExecutableSchema, query string, vars map[string]any) (context.Context, *graphql.OperationContext) {
	t.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if errs := validator.ValidateWithRules(es.Schema(), doc, rules.NewDefaultRules()); len(errs) > 0 {
		t.Fatalf("validate: %v", errs)
	}
	op := doc.Operations.ForName("")
	coerced, err := validator.VariableValues(es.Schema(), op, vars)
	if err != nil {
		t.Fatalf("variables: %v", err)
	}
	opCtx := &graphql.OperationContext{RawQuery: query, Doc: doc, Operation: op, Variables: coerced}
	return graphql.WithOperationContext(context.Background(), opCtx), opCtx
}

func nodes(t *testing.T, query string, vars map[string]any) int {
	t.Helper()
	es := costSchema()
	ctx, opCtx := operation(t, es, query, vars)
	return complexity.Calculate(ctx, es, opCtx.Operation, opCtx.Variables)
}

func TestConnectionCost(t *testing.T) {
	cases := []struct {
		name  string
		query string
		vars  map[string]any
		want  int
	}{
		// 10 × (1 + edges(1 + node(1 + id 1 + title 1)))
		{"first", `query { tasks(first: 10) { edges { node { id title } } } }`, nil, 10 * (1 + 4)},
		{"default page size", `query { tasks { edges { node { id } } } }`, nil, 20 * (1 + 3)},
		{"last", `query { users(last: 5) { edges { node { id } } } }`, nil, 5 * (1 + 3)},
		{"variable", `query ($n: Int) { tasks(first: $n) { totalCount } }`, map[string]any{"n": 3}, 3 * (1 + 1)},
		{"capped at 100", `query { tasks(first: 1000) { totalCount } }`, nil, 100 * (1 + 1)},
		{"nested", `query { me { tasks(first: 2) { edges { node { id } } } } }`, nil, 1 + 2*(1+3)},
		{"nodes", `query { nodes(ids: ["a", "b", "c"]) { id ... on Task { title } } }`, nil, 3 * 2},
		{"plain fields keep the default", `query { me { id name } }`, nil, 3},
		{"notifications", `query { notifications(first: 7) { edges { node { id } } } }`, nil, 7 * (1 + 3)},
		{"jobs", `query { jobs(last: 4) { edges { node { id status } } } }`, nil, 4 * (1 + 4)},
		{"a requested job costs 50 more", `mutation { requestTaskReport { id } }`, nil, 50 + 1},
		{"bulk", `mutation { bulkDeleteTasks(filter: {}) { id status } }`, nil, 50 + 2},
		{"MyTasks", myTasks, nil, 10 * (1 + 1 + (1 + 1 + (1 + 3 + (1 + 1 + (1 + 3)))) + (1 + 2))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := nodes(t, c.query, c.vars); got != c.want {
				t.Fatalf("cost = %d, want %d", got, c.want)
			}
		})
	}
}

func TestCostLimit(t *testing.T) {
	es := costSchema()
	limit := gqllimits.NewCostLimit(5000)
	if err := limit.Validate(es); err != nil {
		t.Fatal(err)
	}

	ctx, opCtx := operation(t, es, nestedConnections, nil)
	err := limit.MutateOperationContext(ctx, opCtx)
	// 100 × (1 + edges(1 + node(1 + owner(1 + 100 × (1 + 3)))))
	refused(t, err, "query would fetch up to 40400 nodes; the limit is 5000: ask for smaller pages or fewer nested connections")
	if cost, ok := gqllimits.CostFrom(ctx); !ok || cost != (gqllimits.Cost{Nodes: 40400, Points: 404}) {
		t.Fatalf("CostFrom = %+v, %v", cost, ok)
	}

	ctx, opCtx = operation(t, es, `query { tasks(first: 10) { edges { node { id title } } } }`, nil)
	if err := limit.MutateOperationContext(ctx, opCtx); err != nil {
		t.Fatal(err)
	}
	if cost, ok := gqllimits.CostFrom(ctx); !ok || cost != (gqllimits.Cost{Nodes: 50, Points: 1}) {
		t.Fatalf("CostFrom = %+v, %v", cost, ok)
	}

	if _, ok := gqllimits.CostFrom(context.Background()); ok {
		t.Fatal("CostFrom without an operation")
	}
}

// server wires the extensions as internal/server does, with a presenter that keeps apperr codes. No
// resolvers: only documents that never reach one are sent.
func server(t *testing.T, around func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response) *httptest.Server {
	t.Helper()
	srv := handler.New(costSchema())
	srv.AddTransport(transport.POST{})
	srv.SetErrorPresenter(func(ctx context.Context, err error) *gqlerror.Error {
		out := graphql.DefaultErrorPresenter(ctx, err)
		var app *apperr.Error
		if errors.As(err, &app) {
			out.Extensions = map[string]any{"code": string(app.Code)}
		}
		return out
	})
	limits := gqllimits.DefaultLimits()
	srv.Use(gqllimits.NewGuard(limits, 100))
	srv.Use(gqllimits.NewCostLimit(limits.MaxNodes))
	if around != nil {
		srv.AroundResponses(around)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	Extensions map[string]any `json:"extensions"`
}

func post(t *testing.T, ts *httptest.Server, query string) response {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	res, err := http.Post(ts.URL, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out response
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestThroughTheHandler(t *testing.T) {
	ts := server(t, func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		gqllimits.AddCostInfo(ctx, "remaining", 42)
		return next(ctx)
	})

	cyclic := post(t, ts, `query { me { ...A } } fragment A on User { ...B } fragment B on User { ...A }`)
	if len(cyclic.Errors) != 1 || cyclic.Errors[0].Extensions["code"] != "QUERY_TOO_COMPLEX" ||
		cyclic.Errors[0].Message != "fragment A spreads itself (cycle A → B → A)" {
		t.Fatalf("cyclic: %+v", cyclic)
	}

	expensive := post(t, ts, nestedConnections)
	if len(expensive.Errors) != 1 || expensive.Errors[0].Extensions["code"] != "QUERY_TOO_COMPLEX" {
		t.Fatalf("expensive: %+v", expensive)
	}
	want := map[string]any{"requestedNodes": 40400.0, "points": 404.0, "maxNodes": 5000.0, "remaining": 42.0}
	if got, _ := expensive.Extensions["cost"].(map[string]any); !equal(got, want) {
		t.Fatalf("cost extension = %v, want %v", expensive.Extensions["cost"], want)
	}

	cheap := post(t, ts, `query { __typename }`)
	if len(cheap.Errors) != 0 || cheap.Data["__typename"] != "Query" {
		t.Fatalf("cheap: %+v", cheap)
	}
	want = map[string]any{"requestedNodes": 1.0, "points": 1.0, "maxNodes": 5000.0, "remaining": 42.0}
	if got, _ := cheap.Extensions["cost"].(map[string]any); !equal(got, want) {
		t.Fatalf("cost extension = %v, want %v", cheap.Extensions["cost"], want)
	}
}

func TestSetCostExtension(t *testing.T) {
	ts := server(t, func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		gqllimits.SetCostExtension(ctx, map[string]any{"remaining": 7, "resetAt": "soon"})
		return next(ctx)
	})
	got := post(t, ts, `query { __typename }`)
	want := map[string]any{"requestedNodes": 1.0, "points": 1.0, "maxNodes": 5000.0, "remaining": 7.0, "resetAt": "soon"}
	if cost, _ := got.Extensions["cost"].(map[string]any); !equal(cost, want) {
		t.Fatalf("cost extension = %v, want %v", got.Extensions["cost"], want)
	}
}

func equal(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// CostLimit remembers the cost of an operation whose variables cannot change it (by its parsed
// operation, which gqlgen reuses for a repeated query): the remembered cost, and the refusal, must be
// what computing it again gives; an operation whose variables size a page or list ids is costed
// afresh, as its variables change it. (Variables in @skip/@include are treated the same way, though
// gqlgen's complexity counts skipped fields today.)
func TestCostLimitRemembersOnlyWhatVariablesCannotChange(t *testing.T) {
	es := costSchema()
	limit := gqllimits.NewCostLimit(5000)
	if err := limit.Validate(es); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{nestedConnections, `query { tasks(first: 10) { edges { node { id title } } } }`,
		`query { tasks { edges { node { id } } } }`} {
		_, first := operation(t, es, q, nil)
		want := nodes(t, q, nil)
		for range 3 { // the same parsed operation, as gqlgen's query cache hands it out
			ctx, opCtx := operation(t, es, q, nil)
			opCtx.Doc, opCtx.Operation = first.Doc, first.Operation
			err := limit.MutateOperationContext(ctx, opCtx)
			if cost, _ := gqllimits.CostFrom(ctx); cost.Nodes != want || (err != nil) != (want > 5000) {
				t.Fatalf("%s: cost %d (refused: %v), computed %d", q, cost.Nodes, err, want)
			}
		}
	}
	// Each document is sent with variables whose costs differ, on one parsed operation: the cost
	// must follow the variables every time.
	varying := map[string][]map[string]any{
		`query($n: Int) { tasks(first: $n) { edges { node { id } } } }`:                       {{"n": 10}, {"n": 50}, {"n": 10}},
		`query($n: Int) { me { id } tasks(last: $n, after: null) { edges { node { id } } } }`: {{"n": 3}, {"n": 90}},
		`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`:                                     {{"ids": []any{"a"}}, {"ids": []any{"a", "b", "c"}}},
		`query($f: TaskFilter, $n: Int) { tasks(filter: $f) { edges { node { ...T } } } } fragment T on Task { owner { tasks(first: $n) { totalCount } } }`: {
			{"f": nil, "n": 5}, {"f": nil, "n": 80}},
	}
	for q, runs := range varying {
		_, first := operation(t, es, q, runs[0])
		costs := map[int]bool{}
		for _, vars := range runs {
			ctx, opCtx := operation(t, es, q, vars)
			opCtx.Doc, opCtx.Operation = first.Doc, first.Operation
			_ = limit.MutateOperationContext(ctx, opCtx)
			want := nodes(t, q, vars)
			costs[want] = true
			if cost, _ := gqllimits.CostFrom(ctx); cost.Nodes != want {
				t.Fatalf("%s with %v: cost %d, computed %d", q, vars, cost.Nodes, want)
			}
		}
		if len(costs) < 2 {
			t.Fatalf("%s: its variables do not change its cost, so this case proves nothing", q)
		}
	}
	// Variables that only name what to read (an id, a cursor, a filter, an order) do not change the
	// cost: it is remembered, and still what computing it gives.
	for _, q := range []string{
		`query($id: ID!) { task(id: $id) { id owner { id } } }`,
		`query($after: String, $f: TaskFilter, $o: TaskOrder) { tasks(first: 20, after: $after, filter: $f, orderBy: $o) { edges { node { id } } } }`,
	} {
		vars := map[string]any{"id": "VGFzazox", "after": nil}
		_, first := operation(t, es, q, vars)
		want := nodes(t, q, vars)
		for range 2 {
			ctx, opCtx := operation(t, es, q, vars)
			opCtx.Doc, opCtx.Operation = first.Doc, first.Operation
			if err := limit.MutateOperationContext(ctx, opCtx); err != nil {
				t.Fatal(err)
			}
			if cost, _ := gqllimits.CostFrom(ctx); cost.Nodes != want {
				t.Fatalf("%s: cost %d, computed %d", q, cost.Nodes, want)
			}
		}
	}
}

// Which operations have a cost their variables cannot change.
func TestCostNeutralOperations(t *testing.T) {
	es := costSchema()
	for q, want := range map[string]bool{
		`query { tasks(first: 5) { totalCount } }`:                                          true,
		`query($id: ID!) { task(id: $id) { id } }`:                                          true,
		`query($a: String) { tasks(after: $a) { totalCount } }`:                             true,
		`query($n: Int) { tasks(first: $n) { totalCount } }`:                                false,
		`query($n: Int) { me { tasks(last: $n) { totalCount } } }`:                          false,
		`query($ids: [ID!]!) { nodes(ids: $ids) { id } }`:                                   false,
		`query($b: Boolean!) { me @include(if: $b) { id } }`:                                false,
		`query($b: Boolean!) { ... @skip(if: $b) { me { id } } }`:                           false,
		`query($n: Int) { ...F } fragment F on Query { tasks(first: $n) { totalCount } }`:   false,
		`query($s: String) { tasks(filter: {search: $s}) { totalCount } }`:                  true,
		`query($n: Int, $id: ID!) { task(id: $id) { id } tasks(first: $n) { totalCount } }`: false,
	} {
		_, opCtx := operation(t, es, q, map[string]any{"n": 1, "ids": []any{"x"}, "b": true, "id": "x"})
		if got := gqllimits.CostNeutral(opCtx.Operation); got != want {
			t.Errorf("%s: cost-neutral %v, want %v", q, got, want)
		}
	}
}
