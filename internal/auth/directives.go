package auth

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// AuthDirective implements @auth: the field resolves only for a signed-in viewer.
func AuthDirective(ctx context.Context, obj any, next graphql.Resolver) (any, error) {
	if _, ok := ViewerFrom(ctx); !ok {
		return nil, errSignInFirst()
	}
	return next(ctx)
}

// HasRoleDirective implements @hasRole(role:): the viewer must hold role or one that includes it.
func HasRoleDirective(ctx context.Context, obj any, next graphql.Resolver, role Role) (any, error) {
	v, ok := ViewerFrom(ctx)
	if !ok {
		return nil, errSignInFirst()
	}
	if !v.Role.Includes(role) {
		return nil, apperr.New(apperr.Forbidden, "this field requires the %s role", role)
	}
	return next(ctx)
}

// errSignInFirst is built per call because *apperr.Error is mutable and must not be shared.
func errSignInFirst() error {
	return apperr.New(apperr.Unauthenticated, "sign in first: this field needs a valid access token")
}
