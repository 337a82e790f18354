// Package resolvers is the GraphQL transport: each resolver decodes its arguments (global IDs,
// omittable fields), calls one domain service with the operation's actor, and places the domain's
// validation errors under its input path. Rules — validation, authorization, write sequences —
// live in the domain packages (internal/tasks, accounts, notifications, userjobs, webhooks) and
// internal/policy, never here.
package resolvers

import (
	"context"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph"
	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/loaders"
	"github.com/taskgraph/taskgraph/internal/notifications"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/tasks"
	"github.com/taskgraph/taskgraph/internal/userjobs"
	"github.com/taskgraph/taskgraph/internal/webhooks"
)

// Resolver is the dependency-injection root: the domain services every resolver calls.
type Resolver struct {
	Accounts      *accounts.Service
	Tasks         *tasks.Service
	Notifications *notifications.Service
	Webhooks      *webhooks.Service
	Jobs          *userjobs.Service
	// Events feeds notificationReceived (nil: subscriptions are refused).
	Events *events.Bus
	Logger *slog.Logger
}

// actor is the operation's actor (the zero Actor when anonymous: the domain refuses what needs one).
func actor(ctx context.Context) policy.Actor { return auth.Actor(ctx) }

func (r *Resolver) loaders(ctx context.Context) *loaders.Loaders {
	return loaders.For(ctx, loaders.Services{Accounts: r.Accounts, Tasks: r.Tasks})
}

// rootTask is task(id): nothing else in the request batches with it, so the task (and its owner,
// when selected) is read at once instead of after a batch window.
func (r *Resolver) rootTask(ctx context.Context, id uuid.UUID) (*db.Task, error) {
	l := r.loaders(ctx)
	if selected(ctx, [2]string{"owner", "User"}) == nil {
		l.PreloadTasks(ctx, []uuid.UUID{id})
		return l.TaskByID().Load(ctx, id)()
	}
	t, owner, err := r.Tasks.GetWithOwner(ctx, actor(ctx), id)
	if err != nil {
		return nil, err
	}
	l.PrimeTasks(ctx, []*db.Task{t})
	if owner != nil {
		l.PrimeUsers(ctx, []*db.User{owner})
	} else {
		l.PreloadUsers(ctx, []uuid.UUID{t.OwnerID})
	}
	return t, nil
}

// loadNode resolves one global ID for the actor, through the domain that owns its kind.
func (r *Resolver) loadNode(ctx context.Context, field, gid string) (db.Node, error) {
	a := actor(ctx)
	if err := policy.RequireSignedIn(a); err != nil {
		return nil, err
	}
	kind, id, err := globalid.Decode(field, gid)
	if err != nil {
		return nil, err
	}
	switch kind {
	case globalid.KindTask:
		return r.loaders(ctx).TaskByID().Load(ctx, id)()
	case globalid.KindUser:
		return r.loaders(ctx).User(ctx, id)
	case globalid.KindNotification:
		return r.Notifications.Get(ctx, a, id)
	case globalid.KindJob:
		return r.Jobs.Get(ctx, a, id)
	}
	return nil, apperr.New(apperr.NotFound, "object not found")
}

// inAuthPayload reports whether the field being resolved belongs to AuthPayload.user: the user who
// just signed in with this very answer, though the request carries no actor yet.
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

// primePage primes the task loader with a page and preloads its owners.
func (r *Resolver) primePage(ctx context.Context, conn *db.TaskConnection, owners *graphql.CollectedField) *db.TaskConnection {
	l := r.loaders(ctx)
	l.PrimeTasks(ctx, conn.Tasks())
	preloadOwners(ctx, l, conn, owners)
	return conn
}

var _ graph.ListReadiness = (*Resolver)(nil)

// ListReady implements graph.ListReadiness for a page of tasks whose owners (and their task
// counts) preloadOwners read: each edge's owner field then answers from the loaders' cache, so the
// page can be marshalled on one goroutine instead of one per edge. Anything else it does not
// vouch for. From a TaskEdge the only paths to User fields go through Task.owner or
// Task.assignee, and assignee is not vouched for, so User.taskCounts here is the owner's.
func (r *Resolver) ListReady(ctx context.Context, elemType string, fields []graph.FieldRef, n int, elem func(i int) any) bool {
	if elemType != "TaskEdge" {
		return false
	}
	var owner, counts bool
	for _, f := range fields {
		switch f {
		case graph.FieldRef{Object: "Task", Field: "owner"}:
			owner = true
		case graph.FieldRef{Object: "User", Field: "taskCounts"}:
			counts = true
		default:
			return false
		}
	}
	l, ok := loaders.FromContext(ctx)
	if !ok {
		return false
	}
	a := actor(ctx)
	for i := range n {
		e, ok := elem(i).(*db.TaskEdge)
		if !ok || e.Node == nil {
			return false
		}
		id := e.Node.OwnerID
		if owner && !l.HasUser(ctx, id) {
			return false
		}
		// TaskCounts refuses other users' counts before it loads anything.
		if counts && policy.CheckSeeTaskCounts(a, id) == nil && !l.HasTaskCounts(ctx, id) {
			return false
		}
	}
	return true
}

// pageOwners is the selection of a page's owners (edges.node.owner), or nil when the query does not
// select them.
func pageOwners(ctx context.Context) *graphql.CollectedField {
	return selected(ctx, [2]string{"edges", "TaskEdge"}, [2]string{"node", "Task"}, [2]string{"owner", "User"})
}

// preloadOwners puts the owners of a page (and their task counts, when selected) in the loaders
// right away when the query selects them (owner: pageOwners), so each edge's owner field finds its
// row without waiting for a loader's batch window (2 ms per level of nesting). Owners read with the
// page are primed as they are; the others are read at once.
func preloadOwners(ctx context.Context, l *loaders.Loaders, conn *db.TaskConnection, owner *graphql.CollectedField) {
	if owner == nil || len(conn.Edges) == 0 {
		return
	}
	l.PrimeUsers(ctx, conn.Owners())
	seen := make(map[uuid.UUID]bool, 1)
	var ids, countIDs []uuid.UUID
	a := actor(ctx)
	for _, e := range conn.Edges {
		id := e.Node.OwnerID
		if seen[id] {
			continue
		}
		seen[id] = true
		if !l.HasUser(ctx, id) {
			ids = append(ids, id)
		}
		if policy.CanSeePrivateProfile(a, id) {
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
