package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// newDeferredGroup is graphql.NewDeferredGroup for an object whose selection defers a field, and an
// empty group otherwise. gqlgen's generated objects build a group for every object they resolve
// (the object's path walked up the context, a map and a field set: ~700 allocations on a page of 20
// tasks) although only a deferred field ever uses it: FieldSet.ResolveConcurrently touches the group
// only for a field with IsDeferred, and the object processes the group only when it holds a defer.
// internal/gqlgenpost rewrites the generated calls to this one (see gen.go).
func newDeferredGroup(ctx context.Context, fields []graphql.CollectedField) graphql.DeferredGroup {
	for i := range fields {
		if fields[i].IsDeferred() {
			return graphql.NewDeferredGroup(ctx)
		}
	}
	return graphql.DeferredGroup{}
}
