package auth

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/taskgraph/taskgraph/internal/policy"
)

// AuthDirective implements @auth: the field resolves only for a signed-in actor (policy.RequireSignedIn).
func AuthDirective(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	if err := policy.RequireSignedIn(Actor(ctx)); err != nil {
		return nil, err
	}
	return next(ctx)
}

// HasRoleDirective implements @hasRole(role:) (policy.RequireRole).
func HasRoleDirective(ctx context.Context, obj any, next graphql.Resolver, role policy.Role) (any, error) {
	if err := policy.RequireRole(Actor(ctx), role); err != nil {
		return nil, err
	}
	return next(ctx)
}
