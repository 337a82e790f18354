// Package resolvers implements the GraphQL schema. Resolvers stay thin: check input, call a store or
// the account service, and let the error presenter map domain errors to codes.
package resolvers

import (
	"context"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/account"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/loaders"
)

// Resolver is the dependency-injection root: everything a resolver may use is a field here.
type Resolver struct {
	DB       *db.DB
	Accounts *account.Service
	SignIn   SignInLimiter // nil: no limit

	// Live subscriptions: Events delivers the changes (nil: subscriptions are refused); SessionCheck
	// confirms the subscriber's session is still live, on every event and every SessionCheckEvery.
	Events            *events.Bus
	SessionCheck      auth.SessionLookup
	SessionCheckEvery time.Duration
	Logger            *slog.Logger

	// WebhookAllowPrivate accepts http:// and private-address webhook URLs (WEBHOOK_ALLOW_PRIVATE).
	WebhookAllowPrivate bool
}

// SignInLimiter throttles login and register attempts (per client and per email).
type SignInLimiter interface {
	Allow(ctx context.Context, email string) error
}

// allowSignIn applies the sign-in limit, if any.
func (r *Resolver) allowSignIn(ctx context.Context, email string) error {
	if r.SignIn == nil {
		return nil
	}
	return r.SignIn.Allow(ctx, email)
}

// viewer returns the signed-in user. The @auth directive has already run on every field that calls
// this; the check here keeps a missing directive from becoming a nil dereference.
func viewer(ctx context.Context) (auth.Viewer, error) {
	v, ok := auth.ViewerFrom(ctx)
	if !ok {
		return auth.Viewer{}, apperr.New(apperr.Unauthenticated, "sign in first: this field needs a valid access token")
	}
	return v, nil
}

// loadVisibleTask returns a task the viewer owns or is assigned to, by id, through the request's loader.
// Any other task is answered exactly like a missing one. The check runs on every read: the loader and
// the cache hold rows, never decisions, and every reassignment invalidates the task's row.
func (r *Resolver) loadVisibleTask(ctx context.Context, v auth.Viewer, id uuid.UUID) (*db.Task, error) {
	t, err := loaders.For(ctx, r.DB).TaskByID.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if !t.VisibleTo(v.UserID) {
		return nil, apperr.New(apperr.NotFound, "task not found")
	}
	return t, nil
}

// loadNode resolves one global ID for the viewer.
func (r *Resolver) loadNode(ctx context.Context, field, gid string) (db.Node, error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	kind, id, err := globalid.Decode(field, gid)
	if err != nil {
		return nil, err
	}
	switch kind {
	case globalid.KindTask:
		return r.loadVisibleTask(ctx, v, id)
	case globalid.KindUser:
		return loaders.For(ctx, r.DB).UserByID.Load(ctx, id)()
	case globalid.KindNotification:
		return r.DB.Reader(ctx).Notifications.Get(ctx, v.UserID, id)
	}
	return nil, apperr.New(apperr.NotFound, "object not found")
}

// canSeePrivate reports whether the viewer may see u's email and task counts: themself or an admin.
// The user of an AuthPayload (register, login, refreshToken) is the one who just signed in with
// this very response, though the request itself carries no viewer yet.
func canSeePrivate(ctx context.Context, u *db.User) bool {
	if v, ok := auth.ViewerFrom(ctx); ok && (v.UserID == u.ID || v.Role.Includes(auth.RoleAdmin)) {
		return true
	}
	return inAuthPayload(ctx)
}

// inAuthPayload reports whether the field being resolved belongs to AuthPayload.user.
func inAuthPayload(ctx context.Context) bool {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Parent == nil || fc.Parent.Field.Field == nil {
		return false
	}
	return fc.Parent.Object == "AuthPayload" && fc.Parent.Field.Name == "user"
}

func pageArgs(first *int, after *string, last *int, before *string) db.PageArgs {
	return db.PageArgs{First: first, After: after, Last: last, Before: before}
}

// listTasks pages through the viewer's own tasks, or with filter.assignedToMe the tasks assigned to the
// viewer, and primes the task loader with the page.
func (r *Resolver) listTasks(ctx context.Context, viewerID uuid.UUID, args db.PageArgs, filter *db.TaskFilter, orderBy *db.TaskOrder) (*db.TaskConnection, error) {
	if err := validateTaskFilter(filter); err != nil {
		return nil, err
	}
	conn, err := r.DB.Reader(ctx).Tasks.List(ctx, viewerID, filter, orderBy, args)
	if err != nil {
		return nil, err
	}
	loaders.For(ctx, r.DB).PrimeTasks(ctx, conn.Tasks())
	return conn, nil
}
