// Package gqllimits refuses GraphQL documents that are too large or too expensive before any resolver or
// SQL runs, and reports each operation's cost.
//
// Two gqlgen handler extensions do the work:
//
//   - Guard (an OperationParameterMutator) parses the raw document itself, before gqlgen parses and
//     validates it, and refuses fragment cycles and documents that are too deep, too wide or too big.
//     gqlparser's validator can recurse without bound on some self-referencing fragment documents, and a
//     Go stack overflow kills the process, so those documents must never reach it. The Guard's own walk is
//     iterative where the document can make it long (fragments) and bounded by the parser's nesting limit
//     elsewhere.
//   - CostLimit (an OperationContextMutator) computes the operation's cost after validation with the
//     connection-aware complexity functions installed by Complexity, refuses operations that would fetch
//     too many nodes, and reports the cost in the response's "cost" extension.
//
// Every refusal carries the code QUERY_TOO_COMPLEX (an *apperr.Error wrapped in the *gqlerror.Error).
package gqllimits

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Limits bounds one GraphQL document. A zero or negative value turns that check off.
type Limits struct {
	// MaxTokens bounds the lexical tokens of the whole document (the parser stops counting past it).
	MaxTokens int
	// MaxDepth bounds the nesting of fields in the selected operation, with fragment spreads and inline
	// fragments expanded (`{ me { id } }` has depth 2). The subtree of an introspection root field
	// (__schema, __type) counts as depth 1 and is bounded separately by a fixed, larger limit, so that
	// GraphiQL's introspection query passes where introspection is enabled.
	MaxDepth int
	// MaxAliases bounds the fields whose alias differs from their name, counting a fragment once per
	// spread.
	MaxAliases int
	// MaxRootFields bounds the distinct response keys at the root of the selected operation.
	MaxRootFields int
	// MaxNodes bounds the selections (fields, fragment spreads and inline fragments) the selected operation
	// expands to, counting a fragment once per spread. It stops fragment fan-out (F1 spreads F2 twice, F2
	// spreads F3 twice, ...) before gqlgen's complexity walk, which expands every spread, sees it. The same
	// value is the natural argument of NewCostLimit.
	MaxNodes int
}

// DefaultLimits returns the limits Taskgraph serves with.
func DefaultLimits() Limits {
	return Limits{MaxTokens: 10000, MaxDepth: 12, MaxAliases: 30, MaxRootFields: 20, MaxNodes: 5000}
}

// introspectionMaxDepth bounds the subtree of __schema and __type, root field included. graphql-js's
// introspection query reaches 13; gqlparser's MaxIntrospectionDepth rule bounds the list fields further.
const introspectionMaxDepth = 24

// unlimited stands in for a disabled count limit; sums saturate there, so they never overflow.
const unlimited = 1 << 40

// Guard is a gqlgen handler extension that refuses hostile or oversized documents before gqlgen parses
// and validates them. Verdicts are cached per document and operation name. Use it with srv.Use(guard).
type Guard struct {
	limits Limits
	cache  *lru.LRU[*refusal] // nil when caching is off
}

var (
	_ graphql.HandlerExtension          = (*Guard)(nil)
	_ graphql.OperationParameterMutator = (*Guard)(nil)
)

// NewGuard returns a Guard enforcing l. It remembers the verdicts of the last cacheSize distinct documents
// (keyed by the SHA-256 of document and operation name), so a repeated document costs one map lookup;
// cacheSize <= 0 turns the cache off.
func NewGuard(l Limits, cacheSize int) *Guard {
	g := &Guard{limits: l}
	if cacheSize > 0 {
		g.cache = lru.New[*refusal](cacheSize)
	}
	return g
}

// ExtensionName implements graphql.HandlerExtension.
func (*Guard) ExtensionName() string { return "QueryLimits" }

// Validate implements graphql.HandlerExtension.
func (*Guard) Validate(graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters implements graphql.OperationParameterMutator: it refuses the document with
// QUERY_TOO_COMPLEX or returns nil. A document that does not parse is left to gqlgen to report, except
// one over the token limit.
func (g *Guard) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	if g.cache == nil {
		return g.check(params.Query, params.OperationName).gqlError()
	}
	key := cacheKey(params.Query, params.OperationName)
	if r, ok := g.cache.Get(ctx, key); ok {
		return r.gqlError()
	}
	r := g.check(params.Query, params.OperationName)
	g.cache.Add(ctx, key, r)
	return r.gqlError()
}

func cacheKey(query, operationName string) string {
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%d:%s", len(operationName), operationName)
	_, _ = h.Write([]byte(query))
	return string(h.Sum(nil))
}

// refusal is a cached negative verdict; nil means the document passed.
type refusal struct {
	message   string
	locations []gqlerror.Location
}

func refuse(pos *ast.Position, format string, args ...any) *refusal {
	r := &refusal{message: fmt.Sprintf(format, args...)}
	if pos != nil && pos.Line > 0 {
		r.locations = []gqlerror.Location{{Line: pos.Line, Column: pos.Column}}
	}
	return r
}

// gqlError builds a fresh error on every call: the presenter and gqlgen may annotate what they get.
func (r *refusal) gqlError() *gqlerror.Error {
	if r == nil {
		return nil
	}
	return tooComplex(r.message, r.locations)
}

func tooComplex(message string, locations []gqlerror.Location) *gqlerror.Error {
	return &gqlerror.Error{
		Err:        apperr.New(apperr.QueryTooComplex, "%s", message),
		Message:    message,
		Locations:  append([]gqlerror.Location(nil), locations...),
		Extensions: map[string]any{"code": string(apperr.QueryTooComplex)},
	}
}

func (g *Guard) check(query, operationName string) *refusal {
	maxTokens := max(g.limits.MaxTokens, 0)
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, maxTokens)
	if err != nil {
		var gqlErr *gqlerror.Error
		if maxTokens > 0 && errors.As(err, &gqlErr) && strings.HasPrefix(gqlErr.Message, "exceeded token limit") {
			return refuse(nil, "query exceeds the limit of %d tokens", maxTokens)
		}
		return nil // gqlgen parses again and reports the syntax error itself
	}
	if doc == nil {
		return nil
	}

	d := newDocument(doc, g.limits)
	if r := d.findCycle(); r != nil {
		return r
	}
	d.computeFragmentStats()

	var ops ast.OperationList
	if op := doc.Operations.ForName(operationName); op != nil {
		ops = ast.OperationList{op}
	} else {
		ops = doc.Operations // none selected (or the named one is missing): every operation must pass
	}
	for _, op := range ops {
		if r := g.checkOperation(d, op); r != nil {
			return r
		}
	}
	return nil
}

func (g *Guard) checkOperation(d *document, op *ast.OperationDefinition) *refusal {
	pos := op.Position
	if limit := g.limits.MaxRootFields; limit > 0 {
		if n := d.rootFields(op.SelectionSet); n > limit {
			return refuse(pos, "operation selects %d root fields; the limit is %d", n, limit)
		}
	}
	s := d.selectionStats(op.SelectionSet)
	if limit := g.limits.MaxDepth; limit > 0 && s.depth > limit {
		return refuse(pos, "query depth %d exceeds the limit of %d", s.depth, limit)
	}
	if s.introspectionDepth > introspectionMaxDepth {
		return refuse(pos, "introspection depth %d exceeds the limit of %d", s.introspectionDepth, introspectionMaxDepth)
	}
	if limit := g.limits.MaxAliases; limit > 0 && s.aliases > limit {
		return refuse(pos, "query uses more than %d aliases; the limit is %d", limit, limit)
	}
	if limit := g.limits.MaxNodes; limit > 0 && s.nodes > limit {
		return refuse(pos, "query expands to more than %d selections (fields and fragments, counted once per use); the limit is %d", limit, limit)
	}
	return nil
}

// document indexes one parsed document for the checks.
type document struct {
	names     []string                             // fragment names, in document order, once each
	fragments map[string]*ast.FragmentDefinition   // the first definition of each name (what gqlgen uses)
	spreads   map[string][]string                  // fragment → the known fragments it spreads, any definition
	order     []string                             // fragments, each after every fragment it spreads
	stats     map[string]stats                     // per fragment, once order is known
	byName    map[string][]*ast.FragmentDefinition // every definition of each name
	caps      stats                                // saturation points of the counts
}

// stats summarises a selection set with its fragments expanded.
type stats struct {
	depth              int // deepest field nesting, introspection subtrees counted as 1
	introspectionDepth int // deepest __schema/__type subtree, root field included
	aliases            int // saturates at caps.aliases
	nodes              int // saturates at caps.nodes
}

func newDocument(doc *ast.QueryDocument, l Limits) *document {
	d := &document{
		fragments: make(map[string]*ast.FragmentDefinition, len(doc.Fragments)),
		byName:    make(map[string][]*ast.FragmentDefinition, len(doc.Fragments)),
		spreads:   make(map[string][]string, len(doc.Fragments)),
		caps:      stats{aliases: saturation(l.MaxAliases), nodes: saturation(l.MaxNodes)},
	}
	for _, f := range doc.Fragments {
		if _, ok := d.fragments[f.Name]; !ok {
			d.fragments[f.Name] = f
			d.names = append(d.names, f.Name)
		}
		d.byName[f.Name] = append(d.byName[f.Name], f)
	}
	for _, name := range d.names {
		seen := map[string]bool{}
		var out []string
		for _, f := range d.byName[name] {
			forEachSpread(f.SelectionSet, func(s *ast.FragmentSpread) {
				if _, known := d.fragments[s.Name]; known && !seen[s.Name] {
					seen[s.Name] = true
					out = append(out, s.Name)
				}
			})
		}
		d.spreads[name] = out
	}
	return d
}

// forEachSpread calls fn for every fragment spread in set, at any nesting, without following spreads.
func forEachSpread(set ast.SelectionSet, fn func(*ast.FragmentSpread)) {
	stack := []ast.SelectionSet{set}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, sel := range top {
			switch s := sel.(type) {
			case *ast.Field:
				stack = append(stack, s.SelectionSet)
			case *ast.InlineFragment:
				stack = append(stack, s.SelectionSet)
			case *ast.FragmentSpread:
				fn(s)
			}
		}
	}
}

// findCycle looks for a fragment that spreads itself, directly or through others, with an iterative
// depth-first search over every fragment of the document (gqlparser validates them all, used or not).
// On success it leaves the fragments in d.order, each after the fragments it spreads.
func (d *document) findCycle() *refusal {
	const (
		white = iota
		grey
		black
	)
	color := make(map[string]int, len(d.names))
	type frame struct {
		name string
		next int
	}
	for _, root := range d.names {
		if color[root] != white {
			continue
		}
		color[root] = grey
		stack := []frame{{name: root}}
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if out := d.spreads[top.name]; top.next < len(out) {
				child := out[top.next]
				top.next++
				switch color[child] {
				case white:
					color[child] = grey
					stack = append(stack, frame{name: child})
				case grey:
					var path []string
					for i := range stack {
						if stack[i].name == child {
							for _, f := range stack[i:] {
								path = append(path, f.name)
							}
							break
						}
					}
					path = append(path, child)
					return refuse(d.fragments[child].Position, "fragment %s spreads itself (cycle %s)", child, strings.Join(path, " → "))
				}
				continue
			}
			color[top.name] = black
			d.order = append(d.order, top.name)
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}

// computeFragmentStats summarises every fragment once, in dependency order, so expanding a spread later
// is a map lookup: fragment fan-out costs linear time however often the fragments multiply.
func (d *document) computeFragmentStats() {
	d.stats = make(map[string]stats, len(d.order))
	for _, name := range d.order {
		d.stats[name] = d.selectionStats(d.fragments[name].SelectionSet)
	}
}

// selectionStats recurses over the nesting of set only (bounded by the parser's nesting limit); spreads
// use the precomputed fragment stats. Unknown fragments count as empty: validation reports them.
func (d *document) selectionStats(set ast.SelectionSet) stats {
	var s stats
	for _, sel := range set {
		var child stats
		switch x := sel.(type) {
		case *ast.Field:
			child = d.selectionStats(x.SelectionSet)
			if x.Alias != "" && x.Alias != x.Name {
				child.aliases = d.add(child.aliases, 1, d.caps.aliases)
			}
			if x.Name == "__schema" || x.Name == "__type" {
				child.introspectionDepth = max(child.introspectionDepth, child.depth+1)
				child.depth = 1
			} else {
				child.depth++
			}
		case *ast.InlineFragment:
			child = d.selectionStats(x.SelectionSet)
		case *ast.FragmentSpread:
			child = d.stats[x.Name]
		}
		s.depth = max(s.depth, child.depth)
		s.introspectionDepth = max(s.introspectionDepth, child.introspectionDepth)
		s.aliases = d.add(s.aliases, child.aliases, d.caps.aliases)
		s.nodes = d.add(s.nodes, d.add(child.nodes, 1, d.caps.nodes), d.caps.nodes)
	}
	return s
}

// saturation is where a count stops growing: one past its limit is enough to refuse.
func saturation(limit int) int {
	if limit <= 0 || limit >= unlimited {
		return unlimited
	}
	return limit + 1
}

// add is a + b saturated at limit; both operands are already at most limit, so it cannot overflow.
func (*document) add(a, b, limit int) int {
	return min(a+b, limit)
}

// rootFields counts the distinct response keys at the root of set, through fragments and inline fragments.
func (d *document) rootFields(set ast.SelectionSet) int {
	keys := map[string]struct{}{}
	expanded := map[string]bool{}
	stack := []ast.SelectionSet{set}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, sel := range top {
			switch x := sel.(type) {
			case *ast.Field:
				key := x.Alias
				if key == "" {
					key = x.Name
				}
				keys[key] = struct{}{}
			case *ast.InlineFragment:
				stack = append(stack, x.SelectionSet)
			case *ast.FragmentSpread:
				if f := d.fragments[x.Name]; f != nil && !expanded[x.Name] {
					expanded[x.Name] = true
					stack = append(stack, f.SelectionSet)
				}
			}
		}
	}
	return len(keys)
}
