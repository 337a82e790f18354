// Package loaders batches the reads of one request with dataloader/v7: users by id, tasks by id and
// task counts by user. A fresh set is built per request (Middleware); across requests, batch functions
// read through the shared cache. Batch functions return results in key order, as dataloader requires.
package loaders

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/graph-gophers/dataloader/v7"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cache"
)

// Loaders are the batched readers of one request.
type Loaders struct {
	UserByID         *dataloader.Loader[uuid.UUID, *db.User]
	TaskByID         *dataloader.Loader[uuid.UUID, *db.Task]
	TaskCountsByUser *dataloader.Loader[uuid.UUID, *db.TaskCounts]

	// The batch functions behind the loaders, for Preload.
	users  dataloader.BatchFunc[uuid.UUID, *db.User]
	tasks  dataloader.BatchFunc[uuid.UUID, *db.Task]
	counts dataloader.BatchFunc[uuid.UUID, *db.TaskCounts]
}

// batchWait is how long a loader collects keys before it queries: long enough for gqlgen's
// concurrent field resolvers to enqueue a whole page, short enough not to be felt.
const batchWait = 2 * time.Millisecond

// New builds a fresh set of loaders reading through c (which may be nil: no cache) and the stores
// read returns. read is asked at batch time, so a read after a write in the same request already
// knows about that write (read-your-writes routing).
func New(read func(context.Context) db.Stores, c *cache.Cache) *Loaders {
	users := func(st db.Stores, ctx context.Context, ids []uuid.UUID) ([]db.User, error) {
		return st.Users.ByIDs(ctx, ids)
	}
	tasks := func(st db.Stores, ctx context.Context, ids []uuid.UUID) ([]db.Task, error) {
		return st.Tasks.ByIDs(ctx, ids)
	}
	counts := func(st db.Stores, ctx context.Context, ids []uuid.UUID) ([]db.TaskCounts, error) {
		return st.Tasks.CountsByOwners(ctx, ids)
	}
	userBatch := byID(c, db.EntityUser, read, users, func(u db.User) uuid.UUID { return u.ID }, notFound[db.User]("user"))
	countBatch := byID(c, db.EntityTaskCounts, read, counts, func(t db.TaskCounts) uuid.UUID { return t.UserID },
		func(id uuid.UUID) (*db.TaskCounts, error) { return &db.TaskCounts{UserID: id}, nil }) // no tasks: zeros
	taskBatch := byID(c, db.EntityTask, read, tasks, func(t db.Task) uuid.UUID { return t.ID }, notFound[db.Task]("task"))
	return &Loaders{
		users: userBatch, tasks: taskBatch, counts: countBatch,
		UserByID: dataloader.NewBatchedLoader(userBatch,
			dataloader.WithWait[uuid.UUID, *db.User](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.User](db.MaxPageSize)),
		TaskByID: dataloader.NewBatchedLoader(taskBatch,
			dataloader.WithWait[uuid.UUID, *db.Task](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.Task](db.MaxPageSize)),
		TaskCountsByUser: dataloader.NewBatchedLoader(countBatch,
			dataloader.WithWait[uuid.UUID, *db.TaskCounts](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.TaskCounts](db.MaxPageSize)),
	}
}

func notFound[T any](what string) func(uuid.UUID) (*T, error) {
	return func(uuid.UUID) (*T, error) { return nil, apperr.New(apperr.NotFound, "%s not found", what) }
}

// byID adapts a "fetch these ids" store method to a batch function, reading through the cache: one
// result per key, in key order; absent ids get whatever missing returns.
func byID[T any](c *cache.Cache, kind db.EntityKind, read func(context.Context) db.Stores,
	fetch func(db.Stores, context.Context, []uuid.UUID) ([]T, error),
	idOf func(T) uuid.UUID, missing func(uuid.UUID) (*T, error)) dataloader.BatchFunc[uuid.UUID, *T] {
	return func(ctx context.Context, keys []uuid.UUID) []*dataloader.Result[*T] {
		stores := read(ctx)
		if stores.OnReplica {
			ctx = cache.WithStaleSource(ctx)
		}
		load := func(ctx context.Context, ids []uuid.UUID) ([]T, error) { return fetch(stores, ctx, ids) }
		found, err := cache.Many(ctx, c, kind, keys, load, idOf)
		results := make([]*dataloader.Result[*T], len(keys))
		for i, k := range keys {
			r := &dataloader.Result[*T]{Error: err}
			if err == nil {
				if row, ok := found[k]; ok {
					r.Data = row
				} else {
					r.Data, r.Error = missing(k)
				}
			}
			results[i] = r
		}
		return results
	}
}

type ctxKey struct{}

// Middleware gives every request its own loaders.
func Middleware(database *db.DB, c *cache.Cache) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), ctxKey{}, New(database.Reader, c))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// For returns the request's loaders. Outside a request (tests, jobs) it builds a fresh, uncached set.
func For(ctx context.Context, database *db.DB) *Loaders {
	if l, ok := ctx.Value(ctxKey{}).(*Loaders); ok {
		return l
	}
	return New(database.Reader, nil)
}

// PrimeTasks stores tasks already read (a page) so later by-id loads need no query.
func (l *Loaders) PrimeTasks(ctx context.Context, tasks []*db.Task) {
	for _, t := range tasks {
		l.TaskByID.Prime(ctx, t.ID, t)
	}
}

// PreloadUsers reads the users ids (through the cache) at once and primes the user loader with
// them, so the page's owner fields find them without waiting out a batch window each. A failed
// read primes nothing: the fields then load (and report the error) as usual.
func (l *Loaders) PreloadUsers(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.UserByID, l.users, ids)
}

// PreloadTasks does the same for tasks by id.
func (l *Loaders) PreloadTasks(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.TaskByID, l.tasks, ids)
}

// PreloadTaskCounts does the same for task counts by user.
func (l *Loaders) PreloadTaskCounts(ctx context.Context, ids []uuid.UUID) {
	preload(ctx, l.TaskCountsByUser, l.counts, ids)
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
