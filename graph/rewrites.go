package graph

import (
	"context"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// Helpers that internal/gqlgenpost rewrites the generated executor to call (see gen.go). Each
// answers exactly what the gqlgen code it replaces answers, for less work per object.

// newDeferredGroup is graphql.NewDeferredGroup for an object whose selection defers a field, and an
// empty group otherwise. gqlgen's generated objects build a group for every object they resolve
// (the object's path walked up the context, a map and a field set: ~700 allocations on a page of 20
// tasks) although only a deferred field ever uses it: FieldSet.ResolveConcurrently touches the group
// only for a field with IsDeferred, and the object processes the group only when it holds a defer.
func newDeferredGroup(ctx context.Context, fields []graphql.CollectedField) graphql.DeferredGroup {
	for i := range fields {
		if fields[i].IsDeferred() {
			return graphql.NewDeferredGroup(ctx)
		}
	}
	return graphql.DeferredGroup{}
}

// fieldValues is a resolved object as JSON, written as *graphql.FieldSet writes it (fields in
// order, a repeated alias written once) without its per-field iterator closure and copy and its
// per-object map.
type fieldValues struct {
	fields []graphql.CollectedField
	values []graphql.Marshaler
}

func (o *fieldValues) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, "{")
	var seen map[string]bool // for many fields; few are compared pairwise
	if len(o.fields) > 16 {
		seen = make(map[string]bool, len(o.fields))
	}
	written := 0
	for i := range o.fields {
		alias := o.fields[i].Alias
		if seen != nil {
			if seen[alias] {
				continue
			}
			seen[alias] = true
		} else if repeatedAlias(o.fields[:i], alias) {
			continue
		}
		if written > 0 {
			_, _ = io.WriteString(w, ",")
		}
		written++
		writeName(w, alias)
		_, _ = io.WriteString(w, ":")
		o.values[i].MarshalGQL(w)
	}
	_, _ = io.WriteString(w, "}")
}

// repeatedAlias reports whether an earlier field has alias. CollectFields merges fields by alias, so
// this never holds in practice; FieldSet checks it, so this does too.
func repeatedAlias(earlier []graphql.CollectedField, alias string) bool {
	for i := range earlier {
		if earlier[i].Alias == alias {
			return true
		}
	}
	return false
}

// writeName writes a response key as a JSON string. GraphQL names need no escaping; anything else
// goes through gqlgen's string marshaler.
func writeName(w io.Writer, name string) {
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			graphql.MarshalString(name).MarshalGQL(w)
			return
		}
	}
	_, _ = io.WriteString(w, `"`)
	_, _ = io.WriteString(w, name)
	_, _ = io.WriteString(w, `"`)
}

// plainFields holds the resolved fields of an object none of whose fields is concurrent, in one
// allocation: the generated code uses its Values, Invalids and Dispatch as those of a FieldSet, and
// returns its fieldValues.
type plainFields struct {
	Values      []graphql.Marshaler
	Invalids    uint32
	fieldValues fieldValues
	buf         [8]graphql.Marshaler
}

func newPlainFields(fields []graphql.CollectedField) *plainFields {
	p := &plainFields{}
	if len(fields) <= len(p.buf) {
		p.Values = p.buf[:len(fields)]
	} else {
		p.Values = make([]graphql.Marshaler, len(fields))
	}
	p.fieldValues = fieldValues{fields: fields, values: p.Values}
	return p
}

// Dispatch does nothing: no field of the object is resolved concurrently.
func (p *plainFields) Dispatch(context.Context) {}

// stringField is a string field of a row, written as graphql.MarshalString writes it.
type stringField string

func (s *stringField) MarshalGQL(w io.Writer) { writeQuotedString(w, string(*s)) }

// enumMarshalers holds one marshaler per enum value's name: enum values come from a fixed set, and
// a marshaler only writes its string, so one can serve every field.
var enumMarshalers struct {
	sync.RWMutex
	m map[string]graphql.Marshaler
}

// enumString is graphql.MarshalString(name) for an enum value's name, shared.
func enumString(name string) graphql.Marshaler {
	enumMarshalers.RLock()
	m, ok := enumMarshalers.m[name]
	enumMarshalers.RUnlock()
	if ok {
		return m
	}
	enumMarshalers.Lock()
	defer enumMarshalers.Unlock()
	if enumMarshalers.m == nil {
		enumMarshalers.m = map[string]graphql.Marshaler{}
	}
	if m, ok = enumMarshalers.m[name]; !ok {
		m = graphql.MarshalString(name)
		enumMarshalers.m[name] = m
	}
	return m
}

// stringList is a [String!]! of plain strings, written as graphql.Array of graphql.MarshalString
// writes it.
type stringList []string

func (l stringList) MarshalGQL(w io.Writer) {
	_, _ = io.WriteString(w, "[")
	for i, s := range l {
		if i > 0 {
			_, _ = io.WriteString(w, ",")
		}
		writeQuotedString(w, s)
	}
	_, _ = io.WriteString(w, "]")
}

// writeQuotedString is gqlgen's graphql.writeQuotedString (v0.17.98, MIT licence), which
// graphql.MarshalString calls and does not export.
func writeQuotedString(w io.Writer, s string) {
	const encodeHex = "0123456789ABCDEF"
	start := 0
	_, _ = io.WriteString(w, `"`)

	for i, c := range s {
		if c < 0x20 || c == '\\' || c == '"' {
			_, _ = io.WriteString(w, s[start:i])

			switch c {
			case '\t':
				_, _ = io.WriteString(w, `\t`)
			case '\r':
				_, _ = io.WriteString(w, `\r`)
			case '\n':
				_, _ = io.WriteString(w, `\n`)
			case '\\':
				_, _ = io.WriteString(w, `\\`)
			case '"':
				_, _ = io.WriteString(w, `\"`)
			default:
				_, _ = io.WriteString(w, `\u00`)
				_, _ = w.Write([]byte{encodeHex[c>>4], encodeHex[c&0xf]})
			}

			start = i + 1
		}
	}

	_, _ = io.WriteString(w, s[start:])
	_, _ = io.WriteString(w, `"`)
}

// FieldRef names a field of an object type.
type FieldRef struct{ Object, Field string }

// ListReadiness is implemented by a resolver root that can vouch, for a list about to be marshalled,
// that the concurrent fields its elements' selection reaches (fields) will answer without waiting
// on anything another element starts (a dataloader batch, say): typically because the list's
// resolver already read what they need. elem returns the i-th element as a pointer (the value
// gqlgen puts in FieldContext.Result). A false answer costs nothing but the goroutines.
type ListReadiness interface {
	ListReady(ctx context.Context, elemType string, fields []FieldRef, n int, elem func(i int) any) bool
}

// concurrentFields are, by object type, the fields its generated code resolves concurrently. The
// generated code sets it (internal/gqlgenpost writes the table after the code it reads it from);
// while it is nil, no list is marshalled on one goroutine.
var concurrentFields map[string][]string

var (
	sequentialListsOff atomic.Bool  // SetSequentialLists(false): every list as gqlgen marshals it
	sequentialCount    atomic.Int64 // lists marshalled by marshalSlice on one goroutine
)

// SetSequentialLists turns marshalling lists on one goroutine on or off (it is on); the
// differential tests compare the answers of both. It returns the previous setting.
func SetSequentialLists(on bool) (was bool) { return !sequentialListsOff.Swap(!on) }

// SequentialListCount is how many lists were marshalled on one goroutine since start (for tests).
func SequentialListCount() int64 { return sequentialCount.Load() }

// marshalSlice is graphql.MarshalSliceConcurrently(ctx, n, 0, false, marshalElement), which
// marshals each element of a list on a goroutine of its own (~20 goroutines per page of tasks, each
// growing its stack through the field tree), minus the goroutines when they cannot matter: when
// none of the fields the elements' selection reaches is resolved concurrently, or the resolver root
// vouches for those that are (ListReadiness). Each element gets the same FieldContext (its index)
// and the same panic handling as in MarshalSliceConcurrently, so the answer is the same; only
// several elements' errors could be listed in another order (their order is not defined there).
func (ec *executionContext) marshalSlice(ctx context.Context, sel ast.SelectionSet, elemType string, n int,
	elem func(i int) any, marshalElement func(ctx context.Context, i int) graphql.Marshaler) graphql.Array {
	if n < 2 || !ec.sequentialList(ctx, sel, elemType, n, elem) {
		return graphql.MarshalSliceConcurrently(ctx, n, 0, false, marshalElement)
	}
	sequentialCount.Add(1)
	ret := make(graphql.Array, n)
	for i := range n {
		childCtx := graphql.WithFieldContext(ctx, &graphql.FieldContext{Index: &i})
		func() {
			defer func() {
				if r := recover(); r != nil {
					graphql.AddError(childCtx, graphql.Recover(childCtx, r))
					ret[i] = graphql.Null
				}
			}()
			ret[i] = marshalElement(childCtx, i)
		}()
	}
	return ret
}

// sequentialList reports whether the n elements of a list of elemType, selecting sel, may be
// marshalled one after another on the calling goroutine.
func (ec *executionContext) sequentialList(ctx context.Context, sel ast.SelectionSet, elemType string, n int, elem func(i int) any) bool {
	if sequentialListsOff.Load() || concurrentFields == nil {
		return false
	}
	var buf [4]FieldRef
	fields, ok := reachedConcurrentFields(ec.Schema(), elemType, sel, buf[:0], 0)
	if !ok {
		return false
	}
	if len(fields) == 0 {
		return true
	}
	r, ok := ec.Resolvers.(ListReadiness)
	return ok && r.ListReady(ctx, elemType, fields, n, elem)
}

// maxSelectionDepth bounds the walk (the server's depth limit is far lower).
const maxSelectionDepth = 32

// reachedConcurrentFields appends to out the concurrently resolved fields (concurrentFields) that
// sel, on an object of type typ, reaches at any depth, each once. It answers ok=false when it cannot
// tell for sure: a deferred fragment, a field whose type is not an object (an interface or union
// would need the concrete types), a field it has no definition of.
func reachedConcurrentFields(schema *ast.Schema, typ string, sel ast.SelectionSet, out []FieldRef, depth int) ([]FieldRef, bool) {
	if depth > maxSelectionDepth {
		return out, false
	}
	def := schema.Types[typ]
	if def == nil || def.Kind != ast.Object {
		return out, false
	}
	var ok bool
	for _, s := range sel {
		switch s := s.(type) {
		case *ast.Field:
			if s.Name == "__typename" {
				continue
			}
			if s.Definition == nil || s.Definition.Type == nil {
				return out, false
			}
			if slices.Contains(concurrentFields[typ], s.Name) {
				if ref := (FieldRef{typ, s.Name}); !slices.Contains(out, ref) {
					out = append(out, ref)
				}
			}
			if len(s.SelectionSet) > 0 {
				if out, ok = reachedConcurrentFields(schema, s.Definition.Type.Name(), s.SelectionSet, out, depth+1); !ok {
					return out, false
				}
			}
		case *ast.InlineFragment:
			// A fragment on another type condition may not apply; walking it anyway only adds fields.
			if s.Directives.ForName("defer") != nil {
				return out, false
			}
			if out, ok = reachedConcurrentFields(schema, typ, s.SelectionSet, out, depth+1); !ok {
				return out, false
			}
		case *ast.FragmentSpread:
			if s.Directives.ForName("defer") != nil || s.Definition == nil {
				return out, false
			}
			if out, ok = reachedConcurrentFields(schema, typ, s.Definition.SelectionSet, out, depth+1); !ok {
				return out, false
			}
		default:
			return out, false
		}
	}
	return out, true
}
