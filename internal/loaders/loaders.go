// Package loaders batches the reads of one GraphQL operation with dataloader/v7: users by id, tasks
// by id and task counts by user. A fresh set is built per operation for its actor (Extension), so
// nothing read in one operation — on a long-lived websocket, say — is served to the next. The batch
// functions call the domain services, which read through the shared cache and apply the policy;
// results come back in key order, as dataloader requires.
package loaders

import (
	"context"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/graph-gophers/dataloader/v7"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/accounts"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/tasks"
)

// Services are the domain services the loaders read through.
type Services struct {
	Accounts *accounts.Service
	Tasks    *tasks.Service
}

// Loaders are the batched readers of one operation. Each loader is built on its first use: many
// operations (every answer from the response cache, a lone task by id) use none or one of them.
type Loaders struct {
	actor    policy.Actor
	services Services

	usersOnce, tasksOnce, countsOnce sync.Once
	userByID                         *dataloader.Loader[uuid.UUID, *db.User]
	taskByID                         *dataloader.Loader[uuid.UUID, *db.Task]
	taskCountsByUser                 *dataloader.Loader[uuid.UUID, *db.TaskCounts]

	// The loaders' caches, for the fast paths (User, TaskCounts).
	userCache   *dataloader.InMemoryCache[uuid.UUID, *db.User]
	countsCache *dataloader.InMemoryCache[uuid.UUID, *db.TaskCounts]
}

// batchWait is how long a loader collects keys before it queries: long enough for gqlgen's
// concurrent field resolvers to enqueue a whole page, short enough not to be felt.
const batchWait = 2 * time.Millisecond

// New builds a fresh set of loaders reading as the actor.
func New(a policy.Actor, s Services) *Loaders {
	return &Loaders{actor: a, services: s}
}

// UserByID loads users by id.
func (l *Loaders) UserByID() *dataloader.Loader[uuid.UUID, *db.User] {
	l.usersOnce.Do(func() { l.userByID, l.userCache = newLoader(l.loadUsers, true) })
	return l.userByID
}

// TaskByID loads tasks by id.
func (l *Loaders) TaskByID() *dataloader.Loader[uuid.UUID, *db.Task] {
	l.tasksOnce.Do(func() { l.taskByID, _ = newLoader(l.loadTasks, false) })
	return l.taskByID
}

// TaskCountsByUser loads task counts by user id.
func (l *Loaders) TaskCountsByUser() *dataloader.Loader[uuid.UUID, *db.TaskCounts] {
	l.countsOnce.Do(func() { l.taskCountsByUser, l.countsCache = newLoader(l.loadCounts, true) })
	return l.taskCountsByUser
}

// newLoader batches by id with the package's wait and capacity; with exposeCache it also returns
// the loader's cache, for the fast paths that read it directly (a task loader keeps dataloader's
// default cache, which nothing reads).
func newLoader[T any](batch dataloader.BatchFunc[uuid.UUID, *T], exposeCache bool) (*dataloader.Loader[uuid.UUID, *T], *dataloader.InMemoryCache[uuid.UUID, *T]) {
	opts := []dataloader.Option[uuid.UUID, *T]{
		dataloader.WithWait[uuid.UUID, *T](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *T](db.MaxPageSize),
	}
	var cache *dataloader.InMemoryCache[uuid.UUID, *T]
	if exposeCache {
		cache = dataloader.NewCache[uuid.UUID, *T]()
		opts = append(opts, dataloader.WithCache[uuid.UUID, *T](cache))
	}
	return dataloader.NewBatchedLoader(batch, opts...), cache
}

// The batch functions behind the loaders (and Preload).

func (l *Loaders) loadUsers(ctx context.Context, ids []uuid.UUID) []*dataloader.Result[*db.User] {
	found, err := l.services.Accounts.UsersByIDs(ctx, l.actor, ids)
	out := make([]*dataloader.Result[*db.User], len(ids))
	for i, id := range ids {
		r := &dataloader.Result[*db.User]{Error: err}
		if err == nil {
			if u, ok := found[id]; ok {
				r.Data = u
			} else {
				r.Error = apperr.New(apperr.NotFound, "user not found")
			}
		}
		out[i] = r
	}
	return out
}

func (l *Loaders) loadTasks(ctx context.Context, ids []uuid.UUID) []*dataloader.Result[*db.Task] {
	return results(l.services.Tasks.GetMany(ctx, l.actor, ids))
}

func (l *Loaders) loadCounts(ctx context.Context, ids []uuid.UUID) []*dataloader.Result[*db.TaskCounts] {
	return results(l.services.Tasks.CountsOf(ctx, l.actor, ids))
}

func results[T any](values []*T, errs []error) []*dataloader.Result[*T] {
	out := make([]*dataloader.Result[*T], len(values))
	for i := range values {
		out[i] = &dataloader.Result[*T]{Data: values[i], Error: errs[i]}
	}
	return out
}

type ctxKey struct{}

// With returns ctx carrying l.
func With(ctx context.Context, l *Loaders) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// Extension gives every GraphQL operation its own loaders, for the operation's actor.
type Extension struct{ Services Services }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = Extension{}

// ExtensionName implements graphql.HandlerExtension.
func (Extension) ExtensionName() string { return "Loaders" }

// Validate implements graphql.HandlerExtension.
func (Extension) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptOperation implements graphql.OperationInterceptor.
func (e Extension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	return next(With(ctx, New(auth.Actor(ctx), e.Services)))
}

// For returns the operation's loaders; outside an operation (tests) it builds a fresh set.
func For(ctx context.Context, s Services) *Loaders {
	if l, ok := ctx.Value(ctxKey{}).(*Loaders); ok {
		return l
	}
	return New(auth.Actor(ctx), s)
}

// FromContext returns the operation's loaders, if ctx carries them (For builds a set when not).
func FromContext(ctx context.Context) (*Loaders, bool) {
	l, ok := ctx.Value(ctxKey{}).(*Loaders)
	return l, ok
}

// HasUser reports whether User(ctx, id) will answer from the loader's cache: the user was primed
// (preloaded) or is being loaded already (then the answer waits only for that batch).
func (l *Loaders) HasUser(ctx context.Context, id uuid.UUID) bool {
	l.UserByID()
	_, ok := l.userCache.Get(ctx, id)
	return ok
}

// HasTaskCounts is HasUser for TaskCounts.
func (l *Loaders) HasTaskCounts(ctx context.Context, userID uuid.UUID) bool {
	l.TaskCountsByUser()
	_, ok := l.countsCache.Get(ctx, userID)
	return ok
}

// User is UserByID.Load(ctx, id)(): when the operation already read or primed the user (a page's
// preloaded owners), it answers from the loader's cache without Load's per-call channel, result
// and tracing (Load itself answers the same cached thunk).
func (l *Loaders) User(ctx context.Context, id uuid.UUID) (*db.User, error) {
	loader := l.UserByID()
	if th, ok := l.userCache.Get(ctx, id); ok {
		return th()
	}
	return loader.Load(ctx, id)()
}

// TaskCounts is TaskCountsByUser.Load(ctx, userID)(), the same way.
func (l *Loaders) TaskCounts(ctx context.Context, userID uuid.UUID) (*db.TaskCounts, error) {
	loader := l.TaskCountsByUser()
	if th, ok := l.countsCache.Get(ctx, userID); ok {
		return th()
	}
	return loader.Load(ctx, userID)()
}

// PrimeTasks stores tasks already read (a page) so later by-id loads need no query.
func (l *Loaders) PrimeTasks(ctx context.Context, tasks []*db.Task) {
	loader := l.TaskByID()
	for _, t := range tasks {
		loader.Prime(ctx, t.ID, t)
	}
}

// PrimeUsers stores users already read (a page's owners, read with it) so their loads need no query.
func (l *Loaders) PrimeUsers(ctx context.Context, users []*db.User) {
	loader := l.UserByID()
	for _, u := range users {
		loader.Prime(ctx, u.ID, u)
	}
}

// PreloadUsers reads the users ids at once and primes the user loader with them, so the page's
// owner fields find them without waiting out a batch window each. A failed read primes nothing:
// the fields then load (and report the error) as usual.
func (l *Loaders) PreloadUsers(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.UserByID(), l.loadUsers, ids)
}

// PreloadTasks does the same for tasks by id.
func (l *Loaders) PreloadTasks(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.TaskByID(), l.loadTasks, ids)
}

// PreloadTaskCounts does the same for task counts by user.
func (l *Loaders) PreloadTaskCounts(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.TaskCountsByUser(), l.loadCounts, ids)
}

func preload[T any](ctx context.Context, loader *dataloader.Loader[uuid.UUID, *T], batch dataloader.BatchFunc[uuid.UUID, *T], ids []uuid.UUID) {
	if len(ids) == 0 {
		return
	}
	for i, r := range batch(ctx, ids) {
		if r.Error == nil {
			loader.Prime(ctx, ids[i], r.Data)
		}
	}
}
