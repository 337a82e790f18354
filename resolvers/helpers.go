package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// addError reports err for the list element at index i without failing the whole list.
func addError(ctx context.Context, err error, i int) {
	path := append(graphql.GetPath(ctx), ast.PathIndex(i))
	graphql.AddError(ctx, &gqlerror.Error{Err: err, Message: err.Error(), Path: path})
}

// optional turns a graphql.Omittable into db.Optional: left out is not Set; null is Set with nil.
func optional[T any](o graphql.Omittable[*T]) db.Optional[*T] {
	v, set := o.ValueOK()
	if !set {
		return db.Optional[*T]{}
	}
	return db.Optional[*T]{Set: true, Value: v}
}

// userID decodes an input field that names a user by global ID (field is its name, for errors). A
// malformed id is BAD_USER_INPUT; the id of something other than a user is NOT_FOUND like a user
// that does not exist (which the domain reports, since only the write itself can tell without a race).
func userID(field string, gid *string) (*uuid.UUID, error) {
	if gid == nil {
		return nil, nil
	}
	kind, id, err := globalid.Decode(field, *gid)
	if err != nil {
		return nil, apperr.Invalid(field, "is not a valid ID: pass back an id exactly as this server returned it")
	}
	if kind != globalid.KindUser {
		return nil, apperr.FieldError(apperr.NotFound, field, "no user has this id")
	}
	return &id, nil
}

// optionalUserID is userID for an omittable input field.
func optionalUserID(field string, o graphql.Omittable[*string]) (db.Optional[*uuid.UUID], error) {
	gid, set := o.ValueOK()
	if !set {
		return db.Optional[*uuid.UUID]{}, nil
	}
	id, err := userID(field, gid)
	return db.Optional[*uuid.UUID]{Set: true, Value: id}, err
}

// authPayload maps a signed-in session to the GraphQL payload.
func authPayload(s *accounts.Session, err error) (*model.AuthPayload, error) {
	if err != nil {
		return nil, apperr.Under("input", err)
	}
	return &model.AuthPayload{AccessToken: s.AccessToken, RefreshToken: s.RefreshToken, ExpiresAt: s.ExpiresAt, User: s.User}, nil
}

// tagsPatch is optional for the tags list (null clears the tags, like an empty list).
func tagsPatch(o graphql.Omittable[[]string]) db.Optional[[]string] {
	v, set := o.ValueOK()
	return db.Optional[[]string]{Set: set, Value: v}
}
