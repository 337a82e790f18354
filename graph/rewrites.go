package graph

import (
	"context"
	"io"

	"github.com/99designs/gqlgen/graphql"
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
