// Package loaders batches the reads of one request with dataloader/v7: users by id, tasks by id and
// task counts by user. A fresh set is built per request (Middleware), so nothing is cached across
// requests or users here; batch functions return results in key order, as dataloader requires.
package loaders

import (
	"context"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/graph-gophers/dataloader/v7"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Loaders are the batched readers of one request.
type Loaders struct {
	UserByID         *dataloader.Loader[uuid.UUID, *db.User]
	TaskByID         *dataloader.Loader[uuid.UUID, *db.Task]
	TaskCountsByUser *dataloader.Loader[uuid.UUID, *db.TaskCounts]
}

// batchWait is how long a loader collects keys before it queries: long enough for gqlgen's
// concurrent field resolvers to enqueue a whole page, short enough not to be felt.
const batchWait = 2 * time.Millisecond

// New builds a fresh set of loaders reading through stores.
func New(stores db.Stores) *Loaders {
	return &Loaders{
		UserByID: dataloader.NewBatchedLoader(byID(stores.Users.ByIDs, func(u db.User) uuid.UUID { return u.ID }, "user"),
			dataloader.WithWait[uuid.UUID, *db.User](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.User](db.MaxPageSize)),
		TaskByID: dataloader.NewBatchedLoader(byID(stores.Tasks.ByIDs, func(t db.Task) uuid.UUID { return t.ID }, "task"),
			dataloader.WithWait[uuid.UUID, *db.Task](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.Task](db.MaxPageSize)),
		TaskCountsByUser: dataloader.NewBatchedLoader(taskCounts(stores.Tasks),
			dataloader.WithWait[uuid.UUID, *db.TaskCounts](batchWait), dataloader.WithBatchCapacity[uuid.UUID, *db.TaskCounts](db.MaxPageSize)),
	}
}

// byID adapts a "fetch these ids" store method to a batch function: one result per key, in key
// order, NOT_FOUND for ids that matched no row.
func byID[T any](fetch func(context.Context, []uuid.UUID) ([]T, error), idOf func(T) uuid.UUID, what string) dataloader.BatchFunc[uuid.UUID, *T] {
	return func(ctx context.Context, keys []uuid.UUID) []*dataloader.Result[*T] {
		rows, err := fetch(ctx, keys)
		results := make([]*dataloader.Result[*T], len(keys))
		if err != nil {
			for i := range results {
				results[i] = &dataloader.Result[*T]{Error: err}
			}
			return results
		}
		found := make(map[uuid.UUID]*T, len(rows))
		for i := range rows {
			found[idOf(rows[i])] = &rows[i]
		}
		for i, k := range keys {
			if row, ok := found[k]; ok {
				results[i] = &dataloader.Result[*T]{Data: row}
			} else {
				results[i] = &dataloader.Result[*T]{Error: apperr.New(apperr.NotFound, "%s not found", what)}
			}
		}
		return results
	}
}

// taskCounts batches per-user counts; a user without tasks gets zeros.
func taskCounts(tasks db.TaskStore) dataloader.BatchFunc[uuid.UUID, *db.TaskCounts] {
	return func(ctx context.Context, keys []uuid.UUID) []*dataloader.Result[*db.TaskCounts] {
		rows, err := tasks.CountsByOwners(ctx, keys)
		results := make([]*dataloader.Result[*db.TaskCounts], len(keys))
		found := make(map[uuid.UUID]*db.TaskCounts, len(rows))
		for i := range rows {
			found[rows[i].UserID] = &rows[i]
		}
		for i, k := range keys {
			switch c, ok := found[k]; {
			case err != nil:
				results[i] = &dataloader.Result[*db.TaskCounts]{Error: err}
			case ok:
				results[i] = &dataloader.Result[*db.TaskCounts]{Data: c}
			default:
				results[i] = &dataloader.Result[*db.TaskCounts]{Data: &db.TaskCounts{UserID: k}}
			}
		}
		return results
	}
}

type ctxKey struct{}

// Middleware gives every request its own loaders.
func Middleware(database *db.DB) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := context.WithValue(r.Context(), ctxKey{}, New(database.Stores()))
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// For returns the request's loaders. Outside a request (tests, jobs) it builds a fresh set.
func For(ctx context.Context, database *db.DB) *Loaders {
	if l, ok := ctx.Value(ctxKey{}).(*Loaders); ok {
		return l
	}
	return New(database.Stores())
}

// PrimeTasks stores tasks already read (a page) so later by-id loads need no query.
func (l *Loaders) PrimeTasks(ctx context.Context, tasks []*db.Task) {
	for _, t := range tasks {
		l.TaskByID.Prime(ctx, t.ID, t)
	}
}
