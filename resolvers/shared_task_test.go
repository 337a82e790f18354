package resolvers_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// sharedTask is one user's task, reachable through two instances on the same database: the fixture
// of the cross-instance cache tests.
type sharedTask struct {
	ID       uuid.UUID
	GlobalID string
	OnA, OnB *testsupport.Client // the owner, signed in, talking to instance a and to b
	// Title reads the task's title through c.
	Title func(c *testsupport.Client) string
}

func newSharedTask(t *testing.T, a, b *testsupport.Env) sharedTask {
	t.Helper()
	u := a.Register(t, "Ada")
	task := a.CreateTask(t, u.ID, db.NewTask{Title: "first"})
	s := sharedTask{
		ID: task.ID, GlobalID: globalid.Encode(globalid.KindTask, task.ID),
		OnA: &testsupport.Client{Env: a, Token: u.Token}, OnB: &testsupport.Client{Env: b, Token: u.Token},
	}
	s.Title = func(c *testsupport.Client) string {
		t.Helper()
		var out struct{ Task struct{ Title string } }
		c.Do(t, `query($id: ID!) { task(id: $id) { title } }`, map[string]any{"id": s.GlobalID}).Decode(t, &out)
		return out.Task.Title
	}
	return s
}
