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
	"github.com/taskgraph/taskgraph/internal/download"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/loaders"
	"github.com/taskgraph/taskgraph/internal/policy"
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

	// JobMaxActive caps a user's queued and running exports, reports and bulk operations (0: no cap);
	// Downloads signs export download URLs (nil: exports have no URL).
	JobMaxActive int
	Downloads    *download.Signer

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
func viewer(ctx context.Context) (policy.Actor, error) {
	v, ok := auth.ActorFrom(ctx)
	if !ok {
		return policy.Actor{}, apperr.New(apperr.Unauthenticated, "sign in first: this field needs a valid access token")
	}
	return v, nil
}

// loadVisibleTask returns a task the viewer owns or is assigned to, by id, through the request's loader.
// Any other task is answered exactly like a missing one. The check runs on every read: the loader and
// the cache hold rows, never decisions, and every reassignment invalidates the task's row.
func (r *Resolver) loadVisibleTask(ctx context.Context, v policy.Actor, id uuid.UUID) (*db.Task, error) {
	t, err := loaders.For(ctx, r.DB).TaskByID.Load(ctx, id)()
	if err != nil {
		return nil, err
	}
	if !t.VisibleTo(v.UserID) {
		return nil, apperr.New(apperr.NotFound, "task not found")
	}
	return t, nil
}

// rootTask is loadVisibleTask for a root field (task(id)): nothing else in the request batches with
// it, so the task (and its owner, when selected) is read at once instead of after a batch window.
func (r *Resolver) rootTask(ctx context.Context, v policy.Actor, id uuid.UUID) (*db.Task, error) {
	l := loaders.For(ctx, r.DB)
	l.PreloadTasks(ctx, []uuid.UUID{id})
	t, err := r.loadVisibleTask(ctx, v, id)
	if err != nil {
		return nil, err
	}
	if selected(ctx, [2]string{"owner", "User"}) != nil {
		l.PreloadUsers(ctx, []uuid.UUID{t.OwnerID})
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
	case globalid.KindJob:
		return r.DB.Reader(ctx).BackgroundJobs.Get(ctx, v.UserID, id)
	}
	return nil, apperr.New(apperr.NotFound, "object not found")
}

// canSeePrivate reports whether the viewer may see u's email and task counts: themself or an admin.
// The user of an AuthPayload (register, login, refreshToken) is the one who just signed in with
// this very response, though the request itself carries no viewer yet.
func canSeePrivate(ctx context.Context, u *db.User) bool {
	if v, ok := auth.ActorFrom(ctx); ok && (v.UserID == u.ID || v.Role.Includes(policy.RoleAdmin)) {
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
	l := loaders.For(ctx, r.DB)
	l.PrimeTasks(ctx, conn.Tasks())
	r.preloadOwners(ctx, l, conn)
	return conn, nil
}

// preloadOwners reads the owners of a page (and their task counts, where the viewer may see them)
// right away when the query selects them, so each edge's owner field finds its row without waiting
// for a loader's batch window (2 ms per level of nesting).
func (r *Resolver) preloadOwners(ctx context.Context, l *loaders.Loaders, conn *db.TaskConnection) {
	owner := selected(ctx, [2]string{"edges", "TaskEdge"}, [2]string{"node", "Task"}, [2]string{"owner", "User"})
	if owner == nil || len(conn.Edges) == 0 {
		return
	}
	seen := make(map[uuid.UUID]bool, 1)
	var ids, countIDs []uuid.UUID
	v, _ := auth.ActorFrom(ctx)
	for _, e := range conn.Edges {
		id := e.Node.OwnerID
		if seen[id] {
			continue
		}
		seen[id] = true
		ids = append(ids, id)
		if id == v.UserID || v.Role.Includes(policy.RoleAdmin) {
			countIDs = append(countIDs, id)
		}
	}
	l.PreloadUsers(ctx, ids)
	if fieldIn(ctx, owner, "taskCounts", "TaskCounts") != nil {
		l.PreloadTaskCounts(ctx, countIDs)
	}
}

// selected follows a path of (field name, its type) pairs from the field being resolved, aliases
// and fragments included, and returns the last field's selection, or nil when the query does not
// select it.
func selected(ctx context.Context, path ...[2]string) *graphql.CollectedField {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil {
		return nil
	}
	f := &fc.Field
	for _, step := range path {
		if f = fieldIn(ctx, f, step[0], step[1]); f == nil {
			return nil
		}
	}
	return f
}

// fieldIn returns the first sub-selection of f named name, whose type is typeName, or nil.
func fieldIn(ctx context.Context, f *graphql.CollectedField, name, typeName string) *graphql.CollectedField {
	if f.Field == nil || f.Field.Definition == nil {
		return nil
	}
	// Fragments on the parent's type (or on an interface it implements) apply.
	satisfies := []string{f.Field.Definition.Type.Name(), "Node"}
	for _, c := range graphql.CollectFields(graphql.GetOperationContext(ctx), f.Selections, satisfies) {
		if c.Name == name && c.Definition != nil && c.Definition.Type.Name() == typeName {
			return &c
		}
	}
	return nil
}
