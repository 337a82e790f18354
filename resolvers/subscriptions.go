package resolvers

import (
	"context"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/graph/model"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/tasks"
)

// subscribe takes one of the connection's subscription slots (SUBSCRIPTIONS_PER_CONNECTION) for a
// live feed opened by open, and relays the feed through convert until it ends; the slot is given
// back then. The domain feeds apply the policy to every event; the connection itself ends when its
// session does (internal/server's session watch).
func subscribe[T, U any](ctx context.Context, open func(context.Context) (<-chan T, error), convert func(T) U) (<-chan U, error) {
	release, max, err := events.Acquire(ctx)
	if err != nil {
		return nil, apperr.New(apperr.BadUserInput, "at most %d subscriptions per connection", max)
	}
	ctx, cancel := context.WithCancel(ctx)
	in, err := open(ctx)
	if err != nil {
		cancel()
		release()
		return nil, err
	}
	out := make(chan U, 1)
	go func() {
		defer release()
		defer cancel()
		defer close(out)
		for v := range in {
			select {
			case out <- convert(v):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// taskChangedEvent maps a feed change to the GraphQL event.
func taskChangedEvent(c tasks.Change) *model.TaskChangedEvent {
	if c.Resync {
		return &model.TaskChangedEvent{Kind: model.TaskChangeKindResync}
	}
	gid := globalid.Encode(globalid.KindTask, c.TaskID)
	switch c.Kind {
	case db.TaskDeleted:
		return &model.TaskChangedEvent{Kind: model.TaskChangeKindDeleted, DeletedTaskID: &gid, TaskID: &gid}
	case db.TaskCreated:
		return &model.TaskChangedEvent{Kind: model.TaskChangeKindCreated, Task: c.Task, TaskID: &gid}
	}
	return &model.TaskChangedEvent{Kind: model.TaskChangeKindUpdated, Task: c.Task, TaskID: &gid}
}
