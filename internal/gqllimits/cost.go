package gqllimits

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/userjobs"
)

const (
	// defaultPageSize is what a connection returns without first or last (see the schema).
	defaultPageSize = 20
	// maxCostPageSize caps the page size used for costing; larger pages are refused by the resolvers.
	maxCostPageSize = 100
	// costExtension is the response extension that reports the cost.
	costExtension = "cost"
	// statsKey holds the operation's cost state in graphql.Stats.
	statsKey = "gqllimits.cost"
)

const maxInt = int(^uint(0) >> 1)

// Complexity installs the cost model (GitHub's): a connection (Query.tasks, Query.users, User.tasks)
// costs its page size — first or last, 20 when absent, at most 100 for costing — times (1 + the cost of
// its selection), so nested connections multiply; Query.nodes costs len(ids) times its selection. Every
// other field keeps gqlgen's default, 1 + the cost of its selection. Call it on the ComplexityRoot of the
// graph.Config before graph.NewExecutableSchema.
func Complexity(c *graph.ComplexityRoot) {
	c.Query.Tasks = func(child int, first *int, _ *string, last *int, _ *string, _ *db.TaskFilter, _ *db.TaskOrder) int {
		return connectionCost(child, first, last)
	}
	c.Query.Users = func(child int, first *int, _ *string, last *int, _ *string, _ *db.UserFilter, _ *db.UserOrder) int {
		return connectionCost(child, first, last)
	}
	c.User.Tasks = func(child int, first *int, _ *string, last *int, _ *string, _ *db.TaskFilter, _ *db.TaskOrder) int {
		return connectionCost(child, first, last)
	}
	c.Query.Nodes = func(child int, ids []string) int {
		return mulSat(max(len(ids), 1), max(child, 1))
	}
	c.Query.Notifications = func(child int, first *int, _ *string, last *int, _ *string, _ *bool) int {
		return connectionCost(child, first, last)
	}
	c.Query.Jobs = func(child int, first *int, _ *string, last *int, _ *string) int {
		return connectionCost(child, first, last)
	}
	// A delta-sync page costs its size like a connection (its default and cap are larger: 100, 500).
	c.Query.TaskChanges = func(child int, _ *string, first *int) int {
		n := 100
		if first != nil {
			n = min(max(*first, 1), 500)
		}
		if child < 0 || child == maxInt {
			return maxInt
		}
		return mulSat(n, 1+child)
	}
	// Requesting background work costs what its run may cost the server, so the hourly budget
	// bounds it besides JOB_MAX_ACTIVE.
	c.Mutation.RequestTaskExport = func(child int, _ userjobs.ExportFormat, _ *db.TaskFilter) int { return addSat(child, jobCost) }
	c.Mutation.RequestTaskReport = func(child int) int { return addSat(child, jobCost) }
	c.Mutation.BulkUpdateTasks = func(child int, _ db.TaskFilter, _ model.BulkTaskPatch) int { return addSat(child, jobCost) }
	c.Mutation.BulkDeleteTasks = func(child int, _ db.TaskFilter) int { return addSat(child, jobCost) }
}

// jobCost is the cost of requesting an export, report or bulk operation.
const jobCost = 50

// addSat is a+b for non-negative operands, saturated at maxInt.
func addSat(a, b int) int {
	if a > maxInt-b {
		return maxInt
	}
	return a + b
}

// pageSize is the page a connection argument pair asks for, as costed.
func pageSize(first, last *int) int {
	n := defaultPageSize
	switch {
	case first != nil && last != nil:
		n = max(*first, *last)
	case first != nil:
		n = *first
	case last != nil:
		n = *last
	}
	return min(max(n, 1), maxCostPageSize)
}

func connectionCost(child int, first, last *int) int {
	if child < 0 || child == maxInt {
		return maxInt
	}
	return mulSat(pageSize(first, last), 1+child)
}

// mulSat is a*b for non-negative operands, saturated at maxInt.
func mulSat(a, b int) int {
	if a != 0 && b > maxInt/a {
		return maxInt
	}
	return a * b
}

// Cost is what one operation may fetch.
type Cost struct {
	// Nodes is the operation's complexity under the Complexity model: the most objects it may fetch.
	Nodes int
	// Points is what the operation costs a rate limit: max(1, ceil(Nodes/100)).
	Points int
}

func newCost(nodes int) Cost {
	points := nodes / 100
	if nodes%100 != 0 {
		points++
	}
	return Cost{Nodes: nodes, Points: max(points, 1)}
}

// costState lives in the operation's Stats: the cost, the limit, and extras for the "cost" extension.
type costState struct {
	cost  Cost
	limit int

	mu     sync.Mutex
	extras map[string]any
}

func stateFrom(ctx context.Context) *costState {
	if ctx == nil || !graphql.HasOperationContext(ctx) {
		return nil
	}
	st, _ := graphql.GetOperationContext(ctx).Stats.GetExtension(statsKey).(*costState)
	return st
}

// CostFrom returns the cost CostLimit computed for the operation of ctx. It works in every extension and
// resolver that runs after CostLimit's MutateOperationContext (later OperationContextMutators,
// AroundOperations, AroundResponses, AroundFields), including on the error response of a refused
// operation.
func CostFrom(ctx context.Context) (Cost, bool) {
	if st := stateFrom(ctx); st != nil {
		return st.cost, true
	}
	return Cost{}, false
}

// AddCostInfo adds key to the "cost" response extension that CostLimit writes (a rate limiter adds
// "limit", "remaining" and "resetAt": its budget, as GitHub's rateLimit names them). It does nothing when no cost was computed for the operation of ctx.
func AddCostInfo(ctx context.Context, key string, value any) {
	st := stateFrom(ctx)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.extras == nil {
		st.extras = map[string]any{}
	}
	st.extras[key] = value
}

// SetCostExtension sets the response extension "cost" to {"requestedNodes", "points"} of the operation of
// ctx merged with fields (fields win). If "cost" is already registered it is merged into. ctx must carry
// a response context (an AroundResponses / InterceptResponse ctx); call it before next(ctx) so the
// extension reaches the response. CostLimit adds "maxNodes" and AddCostInfo's extras afterwards.
func SetCostExtension(ctx context.Context, fields map[string]any) {
	m := map[string]any{}
	if c, ok := CostFrom(ctx); ok {
		m["requestedNodes"] = c.Nodes
		m["points"] = c.Points
	}
	maps.Copy(m, fields)
	switch existing := graphql.GetExtension(ctx, costExtension).(type) {
	case nil:
		graphql.RegisterExtension(ctx, costExtension, m)
	case map[string]any:
		maps.Copy(existing, m)
	}
}

// CostLimit is a gqlgen handler extension that computes each operation's cost after validation, refuses
// operations above the limit with QUERY_TOO_COMPLEX before any resolver runs, and reports
// {"requestedNodes", "points", "maxNodes", ...AddCostInfo extras} in the response extension "cost".
// The executable schema must have been built with Complexity installed.
type CostLimit struct {
	maxNodes int
	es       graphql.ExecutableSchema
	// costs remembers the cost of operations whose variables cannot change it (costNeutral): gqlgen
	// keeps one parsed document per query text in its query cache, so a repeated query finds its
	// operation here. Nil: nothing is remembered.
	costs *lru.Cache[*ast.OperationDefinition, int]
}

// costNeutralArguments are the arguments no cost function reads (Complexity): a variable used only
// in them cannot change an operation's cost. The list allows rather than denies, so an argument a
// new cost function reads (first, last, ids...) is never taken for neutral.
var costNeutralArguments = map[string]bool{"id": true, "after": true, "before": true, "filter": true, "orderBy": true}

// costNeutral reports whether op's variables cannot change its cost: each is used only as (part of)
// a cost-neutral argument, and none in a directive (@skip and @include decide what is counted).
// Fragments are followed through their spreads.
func costNeutral(op *ast.OperationDefinition) bool {
	if len(op.VariableDefinitions) == 0 {
		return true
	}
	seen := map[string]bool{}
	var neutral func(ast.SelectionSet) bool
	directivesFree := func(ds ast.DirectiveList) bool {
		for _, d := range ds {
			for _, a := range d.Arguments {
				if usesVariable(a.Value) {
					return false
				}
			}
		}
		return true
	}
	neutral = func(set ast.SelectionSet) bool {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				for _, a := range s.Arguments {
					if !costNeutralArguments[a.Name] && usesVariable(a.Value) {
						return false
					}
				}
				if !directivesFree(s.Directives) || !neutral(s.SelectionSet) {
					return false
				}
			case *ast.InlineFragment:
				if !directivesFree(s.Directives) || !neutral(s.SelectionSet) {
					return false
				}
			case *ast.FragmentSpread:
				if !directivesFree(s.Directives) || s.Definition == nil {
					return false
				}
				if seen[s.Name] {
					continue
				}
				seen[s.Name] = true
				if !directivesFree(s.Definition.Directives) || !neutral(s.Definition.SelectionSet) {
					return false
				}
			default:
				return false
			}
		}
		return true
	}
	return directivesFree(op.Directives) && neutral(op.SelectionSet)
}

// usesVariable reports whether v is, or contains, a variable.
func usesVariable(v *ast.Value) bool {
	if v == nil {
		return false
	}
	if v.Kind == ast.Variable {
		return true
	}
	for _, c := range v.Children {
		if usesVariable(c.Value) {
			return true
		}
	}
	return false
}

// rememberedCosts bounds costs; an entry keeps its parsed document alive until evicted.
const rememberedCosts = 256

var (
	_ graphql.HandlerExtension        = (*CostLimit)(nil)
	_ graphql.OperationContextMutator = (*CostLimit)(nil)
	_ graphql.ResponseInterceptor     = (*CostLimit)(nil)
)

// NewCostLimit refuses operations whose cost exceeds maxNodes nodes (maxNodes <= 0: never refuses, still
// reports).
func NewCostLimit(maxNodes int) *CostLimit {
	costs, _ := lru.New[*ast.OperationDefinition, int](rememberedCosts) // a positive size never fails
	return &CostLimit{maxNodes: maxNodes, costs: costs}
}

// ExtensionName implements graphql.HandlerExtension.
func (*CostLimit) ExtensionName() string { return "CostLimit" }

// Validate implements graphql.HandlerExtension.
func (c *CostLimit) Validate(es graphql.ExecutableSchema) error {
	if es == nil {
		return fmt.Errorf("gqllimits: CostLimit needs an executable schema")
	}
	c.es = es
	return nil
}

// MutateOperationContext implements graphql.OperationContextMutator.
func (c *CostLimit) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	op := opCtx.Operation
	if op == nil && opCtx.Doc != nil {
		op = opCtx.Doc.Operations.ForName(opCtx.OperationName)
	}
	if op == nil || c.es == nil {
		return nil
	}
	cost := newCost(c.nodes(ctx, op, opCtx.Variables))
	opCtx.Stats.SetExtension(statsKey, &costState{cost: cost, limit: c.maxNodes})
	if c.maxNodes > 0 && cost.Nodes > c.maxNodes {
		var locations []gqlerror.Location
		if op.Position != nil && op.Position.Line > 0 {
			locations = []gqlerror.Location{{Line: op.Position.Line, Column: op.Position.Column}}
		}
		return tooComplex(fmt.Sprintf(
			"query would fetch up to %d nodes; the limit is %d: ask for smaller pages or fewer nested connections",
			cost.Nodes, c.maxNodes), locations)
	}
	return nil
}

// nodes is complexity.Calculate's answer for op, remembered for operations whose variables cannot
// change it.
func (c *CostLimit) nodes(ctx context.Context, op *ast.OperationDefinition, vars map[string]any) int {
	if c.costs == nil {
		return complexity.Calculate(ctx, c.es, op, vars)
	}
	if n, ok := c.costs.Get(op); ok { // only neutral operations are ever added
		return n
	}
	n := complexity.Calculate(ctx, c.es, op, vars)
	if costNeutral(op) {
		c.costs.Add(op, n)
	}
	return n
}

// InterceptResponse implements graphql.ResponseInterceptor: it adds the "cost" extension to the response
// (merging into one already set by SetCostExtension without overwriting its keys).
func (c *CostLimit) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil {
		return nil
	}
	st := stateFrom(ctx)
	if st == nil {
		return resp
	}
	fields := map[string]any{
		"requestedNodes": st.cost.Nodes,
		"points":         st.cost.Points,
	}
	if st.limit > 0 {
		// Not "limit": that is the hourly budget a rate limiter reports next to "remaining".
		fields["maxNodes"] = st.limit
	}
	st.mu.Lock()
	maps.Copy(fields, st.extras)
	st.mu.Unlock()

	if resp.Extensions == nil {
		resp.Extensions = map[string]any{}
	}
	switch existing := resp.Extensions[costExtension].(type) {
	case nil:
		resp.Extensions[costExtension] = fields
	case map[string]any:
		for k, v := range fields {
			if _, ok := existing[k]; !ok {
				existing[k] = v
			}
		}
	}
	return resp
}
