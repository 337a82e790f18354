package notifications

import (
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

func TestNotificationsForAWrite(t *testing.T) {
	owner, assignee, other := uuid.New(), uuid.New(), uuid.New()
	taskID := uuid.New()
	task := func(assigneeID *uuid.UUID, status db.TaskStatus) *db.Task {
		return &db.Task{ID: taskID, OwnerID: owner, AssigneeID: assigneeID, Status: status, Version: 7}
	}
	before := func(assigneeID *uuid.UUID, status db.TaskStatus) *db.TaskBefore {
		return &db.TaskBefore{OwnerID: owner, AssigneeID: assigneeID, Status: status}
	}
	assigned := func(to uuid.UUID) db.Job { return NotifyAssignedArgs{TaskID: taskID, AssigneeID: to, Version: 7} }
	statusChanged := func(by uuid.UUID, s db.TaskStatus) db.Job {
		return NotifyStatusChangedArgs{TaskID: taskID, OwnerID: owner, ActorID: by, Status: s, Version: 7}
	}
	cases := []struct {
		name   string
		actor  uuid.UUID
		before *db.TaskBefore
		after  *db.Task
		want   []db.Job
	}{
		{"create unassigned", owner, nil, task(nil, db.StatusTodo), nil},
		{"create assigned to someone", owner, nil, task(&assignee, db.StatusTodo), []db.Job{assigned(assignee)}},
		{"create assigned to yourself", owner, nil, task(&owner, db.StatusDone), nil},
		{"assign", owner, before(nil, db.StatusTodo), task(&assignee, db.StatusTodo), []db.Job{assigned(assignee)}},
		{"reassign", owner, before(&other, db.StatusTodo), task(&assignee, db.StatusTodo), []db.Job{assigned(assignee)}},
		{"same assignee again", owner, before(&assignee, db.StatusTodo), task(&assignee, db.StatusTodo), nil},
		{"unassign", owner, before(&assignee, db.StatusTodo), task(nil, db.StatusTodo), nil},
		{"assign to yourself", owner, before(&assignee, db.StatusTodo), task(&owner, db.StatusTodo), nil},
		{"owner changes status", owner, before(&assignee, db.StatusTodo), task(&assignee, db.StatusDone), nil},
		{"assignee changes status", assignee, before(&assignee, db.StatusTodo), task(&assignee, db.StatusDone),
			[]db.Job{statusChanged(assignee, db.StatusDone)}},
		{"assignee sets the same status", assignee, before(&assignee, db.StatusDone), task(&assignee, db.StatusDone), nil},
		{"owner reassigns and changes status", owner, before(&other, db.StatusTodo), task(&assignee, db.StatusInProgress),
			[]db.Job{assigned(assignee)}},
	}
	for _, tc := range cases {
		got := ForTaskChange(tc.actor, tc.before, tc.after)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: jobs %v, want %v", tc.name, got, tc.want)
		}
	}
}
