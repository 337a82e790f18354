package resolvers_test

// Task assignees through the real HTTP handler (with the default in-process cache): who may read a
// task (owner and assignee), who may write what (the assignee only the status), reassignment and
// unassignment revoking access at once, the assignedToMe list and its paging, and assigneeId
// validation.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const asTaskFields = `id title description status priority dueAt tags version owner { id } assignee { id name }`

// asTask is a Task as the API returns it, with its assignee.
type asTask struct {
	ID, Title        string
	Description      *string
	Status, Priority string
	DueAt            *string
	Tags             []string
	Version          int
	Owner            struct{ ID string }
	Assignee         *struct{ ID, Name string }
}

func (a asTask) assigneeID() string {
	if a.Assignee == nil {
		return ""
	}
	return a.Assignee.ID
}

const (
	asTaskQuery  = `query($id: ID!) { task(id: $id) { ` + asTaskFields + ` } }`
	asNodeQuery  = `query($id: ID!) { node(id: $id) { id ... on Task { ` + asTaskFields + ` } } }`
	asNodesQuery = `query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Task { ` + asTaskFields + ` } } }`
	asCreate     = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { ` + asTaskFields + ` } } }`
	asUpdate     = `mutation($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { task { ` + asTaskFields + ` } } }`
	asDelete     = `mutation($id: ID!, $input: DeleteTaskInput) { deleteTask(id: $id, input: $input) { deletedTaskId } }`
	asListsQuery = `{
  own: tasks { totalCount edges { node { id } } }
  assigned: tasks(filter: {assignedToMe: true}) { totalCount edges { node { id } } }
  notAssigned: tasks(filter: {assignedToMe: false}) { totalCount edges { node { id } } }
  me { tasks { totalCount edges { node { id } } } }
}`
)

// asRow is a task row read straight from the database, to prove what a refused write left alone.
type asRow struct {
	Title       string
	Description *string
	Status      string
	Priority    int16
	DueAt       *time.Time
	Tags        []string
	Assignee    *uuid.UUID
	Version     int32
}

func asSnapshot(t *testing.T, env *testsupport.Env, id uuid.UUID) asRow {
	t.Helper()
	var r asRow
	err := env.DB.Pool.QueryRow(context.Background(),
		`SELECT title, description, status, priority, due_at, tags, assignee_id, version FROM tasks WHERE id = $1`, id).
		Scan(&r.Title, &r.Description, &r.Status, &r.Priority, &r.DueAt, &r.Tags, &r.Assignee, &r.Version)
	if err != nil {
		t.Fatalf("read task %s: %v", id, err)
	}
	return r
}

func asTaskID(t *testing.T, gid string) uuid.UUID {
	t.Helper()
	id, err := globalid.DecodeAs("id", globalid.KindTask, gid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func asCreateTask(t *testing.T, u *testsupport.User, input map[string]any) asTask {
	t.Helper()
	var data struct{ CreateTask struct{ Task asTask } }
	u.Do(t, asCreate, map[string]any{"input": input}).Decode(t, &data)
	return data.CreateTask.Task
}

func asUpdateTask(t *testing.T, u *testsupport.User, id string, input map[string]any) asTask {
	t.Helper()
	var data struct{ UpdateTask struct{ Task asTask } }
	u.Do(t, asUpdate, map[string]any{"id": id, "input": input}).Decode(t, &data)
	return data.UpdateTask.Task
}

func asGetTask(t *testing.T, u *testsupport.User, id string) asTask {
	t.Helper()
	var data struct{ Task asTask }
	u.Do(t, asTaskQuery, map[string]any{"id": id}).Decode(t, &data)
	return data.Task
}

// asWorld: A owns a task assigned to B; C is a stranger to it. Everyone also owns a task of their own.
type asWorld struct {
	env              *testsupport.Env
	a, b, c          *testsupport.User
	task             asTask
	taskID           uuid.UUID
	missing          string // the global id of a task that does not exist
	aOwn, bOwn, cOwn string // each user's own, unassigned task
}

func asNewWorld(t *testing.T) *asWorld {
	t.Helper()
	env := testsupport.NewEnv(t, nil)
	w := &asWorld{env: env, a: env.Register(t, "Alice"), b: env.Register(t, "Bob"), c: env.Register(t, "Carol")}
	w.task = asCreateTask(t, w.a, map[string]any{
		"title": "ship the release", "description": "before friday", "priority": "HIGH",
		"dueAt": "2030-05-01T12:00:00Z", "tags": []string{"work"}, "assigneeId": w.b.GlobalID,
	})
	if w.task.assigneeID() != w.b.GlobalID || w.task.Assignee.Name != "Bob" || w.task.Owner.ID != w.a.GlobalID {
		t.Fatalf("created task = %+v, want owned by A, assigned to B", w.task)
	}
	w.taskID = asTaskID(t, w.task.ID)
	w.missing = globalid.Encode(globalid.KindTask, uuid.New())
	w.aOwn = asCreateTask(t, w.a, map[string]any{"title": "alice's own"}).ID
	w.bOwn = asCreateTask(t, w.b, map[string]any{"title": "bob's own"}).ID
	w.cOwn = asCreateTask(t, w.c, map[string]any{"title": "carol's own"}).ID
	return w
}

// asReadPaths are the ways to read one task by id; each decodes the task out of its answer.
var asReadPaths = []struct {
	name     string
	query    string
	vars     func(id string) map[string]any
	wantPath []any // of the NOT_FOUND error
	task     func(t *testing.T, data json.RawMessage) asTask
}{
	{"task", asTaskQuery, func(id string) map[string]any { return map[string]any{"id": id} }, []any{"task"},
		func(t *testing.T, data json.RawMessage) asTask {
			var d struct{ Task asTask }
			asUnmarshal(t, data, &d)
			return d.Task
		}},
	{"node", asNodeQuery, func(id string) map[string]any { return map[string]any{"id": id} }, []any{"node"},
		func(t *testing.T, data json.RawMessage) asTask {
			var d struct{ Node asTask }
			asUnmarshal(t, data, &d)
			return d.Node
		}},
	{"nodes", asNodesQuery, func(id string) map[string]any { return map[string]any{"ids": []string{id}} }, []any{"nodes", float64(0)},
		func(t *testing.T, data json.RawMessage) asTask {
			var d struct{ Nodes []*asTask }
			asUnmarshal(t, data, &d)
			if len(d.Nodes) != 1 || d.Nodes[0] == nil {
				t.Fatalf("nodes = %s, want one task", data)
			}
			return *d.Nodes[0]
		}},
}

func asUnmarshal(t *testing.T, data json.RawMessage, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// asLikeMissing asserts that u's answer for the task at gid is exactly the answer for a missing task:
// one NOT_FOUND at wantPath, the same errors and data.
func asLikeMissing(t *testing.T, u *testsupport.User, query string, vars func(string) map[string]any, gid, missing string, wantPath []any) {
	t.Helper()
	real := u.Do(t, query, vars(gid))
	miss := u.Do(t, query, vars(missing))
	e := auOneError(t, real, "NOT_FOUND")
	if wantPath != nil && !reflect.DeepEqual(e.Path, wantPath) {
		t.Errorf("error path = %v, want %v", e.Path, wantPath)
	}
	azSameError(t, real, miss)
}

// asListIDs reads the four task lists of asListsQuery as u.
func asListIDs(t *testing.T, u *testsupport.User) map[string][]string {
	t.Helper()
	type conn struct {
		TotalCount int
		Edges      []struct{ Node struct{ ID string } }
	}
	var data struct {
		Own, Assigned, NotAssigned conn
		Me                         struct{ Tasks conn }
	}
	u.Do(t, asListsQuery, nil).Decode(t, &data)
	out := map[string][]string{}
	for name, c := range map[string]conn{"own": data.Own, "assigned": data.Assigned, "notAssigned": data.NotAssigned, "me.tasks": data.Me.Tasks} {
		ids := []string{}
		for _, e := range c.Edges {
			ids = append(ids, e.Node.ID)
		}
		if c.TotalCount != len(ids) {
			t.Errorf("%s: totalCount %d, %d edges", name, c.TotalCount, len(ids))
		}
		out[name] = append([]string{}, sorted(ids)...)
	}
	return out
}

func TestAssigneeReadPaths(t *testing.T) {
	t.Parallel()
	w := asNewWorld(t)

	for _, p := range asReadPaths {
		t.Run(p.name, func(t *testing.T) {
			for _, who := range []struct {
				name string
				u    *testsupport.User
			}{{"owner", w.a}, {"assignee", w.b}} {
				got := p.task(t, who.u.Do(t, p.query, p.vars(w.task.ID)).Data)
				if !reflect.DeepEqual(got, w.task) {
					t.Errorf("%s reads %+v, want %+v", who.name, got, w.task)
				}
			}
			asLikeMissing(t, w.c, p.query, p.vars, w.task.ID, w.missing, p.wantPath)
		})
	}

	t.Run("lists", func(t *testing.T) {
		cases := []struct {
			name          string
			u             *testsupport.User
			own, assigned []string
		}{
			// A owns the task but is not its assignee; B is assigned a task owned by someone else, so
			// it is not in B's own list; C has nothing to do with it.
			{"owner", w.a, sorted([]string{w.task.ID, w.aOwn}), []string{}},
			{"assignee", w.b, []string{w.bOwn}, []string{w.task.ID}},
			{"stranger", w.c, []string{w.cOwn}, []string{}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got := asListIDs(t, tc.u)
				want := map[string][]string{"own": tc.own, "notAssigned": tc.own, "me.tasks": tc.own, "assigned": tc.assigned}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("lists = %v, want %v", got, want)
				}
			})
		}
	})

	t.Run("nested users", func(t *testing.T) {
		const q = `query($id: ID!) { task(id: $id) { owner { id name email } assignee { id name email } } }`
		type user struct {
			ID, Name string
			Email    *string
		}
		var asB struct {
			Task struct{ Owner, Assignee user }
		}
		w.b.Do(t, q, map[string]any{"id": w.task.ID}).Decode(t, &asB)
		if asB.Task.Owner.Name != "Alice" || asB.Task.Owner.Email != nil || asB.Task.Assignee.Email == nil || *asB.Task.Assignee.Email != w.b.Email {
			t.Errorf("as assignee: %+v, want the owner's name without email and the assignee's own email", asB.Task)
		}
		var asA struct {
			Task struct{ Owner, Assignee user }
		}
		w.a.Do(t, q, map[string]any{"id": w.task.ID}).Decode(t, &asA)
		if asA.Task.Assignee.Name != "Bob" || asA.Task.Assignee.Email != nil || asA.Task.Owner.Email == nil {
			t.Errorf("as owner: %+v, want the assignee's name without email", asA.Task)
		}
		// The owner's task counts stay private to the owner, also when reached through the task.
		res := w.b.Do(t, `query($id: ID!) { task(id: $id) { id owner { taskCounts { total } } } }`, map[string]any{"id": w.task.ID})
		e := auOneError(t, res, "FORBIDDEN")
		if !reflect.DeepEqual(e.Path, []any{"task", "owner", "taskCounts"}) {
			t.Errorf("path = %v", e.Path)
		}
	})

	t.Run("User.tasks refuses assignedToMe", func(t *testing.T) {
		res := w.b.Do(t, `{ me { tasks(filter: {assignedToMe: true}) { totalCount } } }`, nil)
		if e := auOneError(t, res, "BAD_USER_INPUT"); e.Field() != "filter.assignedToMe" {
			t.Errorf("field = %q, want filter.assignedToMe", e.Field())
		}
		var data struct {
			Me struct{ Tasks struct{ TotalCount int } }
		}
		w.b.Do(t, `{ me { tasks(filter: {assignedToMe: false}) { totalCount } } }`, nil).Decode(t, &data)
		if data.Me.Tasks.TotalCount != 1 {
			t.Errorf("me.tasks(assignedToMe: false).totalCount = %d, want 1", data.Me.Tasks.TotalCount)
		}
	})
}

func TestAssigneeMayChangeOnlyStatus(t *testing.T) {
	t.Parallel()
	w := asNewWorld(t)
	counts := func() (todo, done int) {
		var data struct {
			Me struct{ TaskCounts struct{ Todo, Done int } }
		}
		w.a.Do(t, `{ me { taskCounts { todo done } } }`, nil).Decode(t, &data)
		return data.Me.TaskCounts.Todo, data.Me.TaskCounts.Done
	}
	if todo, done := counts(); todo != 2 || done != 0 { // also warms the owner's cached counts
		t.Fatalf("owner's counts = todo %d done %d, want 2 and 0", todo, done)
	}

	t.Run("status", func(t *testing.T) {
		got := asUpdateTask(t, w.b, w.task.ID, map[string]any{"status": "IN_PROGRESS"})
		if got.Status != "IN_PROGRESS" || got.Version != 2 || got.Title != w.task.Title || got.assigneeID() != w.b.GlobalID {
			t.Fatalf("after the assignee's status change: %+v", got)
		}
		got = asUpdateTask(t, w.b, w.task.ID, map[string]any{"status": "DONE", "expectedVersion": 2})
		if got.Status != "DONE" || got.Version != 3 {
			t.Fatalf("after the assignee's conditional status change: %+v", got)
		}
		if r := asSnapshot(t, w.env, w.taskID); r.Status != "DONE" || r.Version != 3 {
			t.Fatalf("row = %+v, want DONE at version 3", r)
		}
		// The owner sees the change at once: the task and the owner's counts were invalidated.
		if got := asGetTask(t, w.a, w.task.ID); got.Status != "DONE" || got.Version != 3 {
			t.Fatalf("owner reads %+v", got)
		}
		if todo, done := counts(); todo != 1 || done != 1 {
			t.Fatalf("owner's counts = todo %d done %d, want 1 and 1", todo, done)
		}
	})

	t.Run("the owner's cached counts follow the assignee's change", func(t *testing.T) {
		// Seeded behind the cache's back, so nothing of D's is tombstoned and the counts can be cached.
		d := w.env.Register(t, "Dora")
		id := uuid.Must(uuid.NewV7())
		w.env.Exec(t, `INSERT INTO tasks (id, owner_id, assignee_id, title, status, priority, tags)
			VALUES ($1, $2, $3, 'seeded', 'TODO', 1, '{}')`, id, d.ID, w.b.ID)
		read := func() (todo, done int) {
			var data struct {
				Me struct{ TaskCounts struct{ Todo, Done int } }
			}
			d.Do(t, `{ me { taskCounts { todo done } } }`, nil).Decode(t, &data)
			return data.Me.TaskCounts.Todo, data.Me.TaskCounts.Done
		}
		read()
		if sql := caEntitySQL(w.env, func() { read() }); len(sql) > 0 {
			t.Fatalf("the owner's counts are not cached: %q", sql)
		}
		asUpdateTask(t, w.b, globalid.Encode(globalid.KindTask, id), map[string]any{"status": "DONE"})
		if todo, done := read(); todo != 0 || done != 1 {
			t.Fatalf("owner's counts after the assignee's change = todo %d done %d, want 0 and 1", todo, done)
		}
	})

	t.Run("stale expectedVersion", func(t *testing.T) {
		before := asSnapshot(t, w.env, w.taskID)
		res := w.b.Do(t, asUpdate, map[string]any{"id": w.task.ID, "input": map[string]any{"status": "TODO", "expectedVersion": 2}})
		if e := auOneError(t, res, "CONFLICT"); e.Field() != "input.expectedVersion" {
			t.Errorf("field = %q", e.Field())
		}
		auNoData(t, res)
		res = w.b.Do(t, asUpdate, map[string]any{"id": w.task.ID, "input": map[string]any{"expectedVersion": 1}})
		auOneError(t, res, "CONFLICT")
		if after := asSnapshot(t, w.env, w.taskID); !reflect.DeepEqual(after, before) {
			t.Fatalf("row changed: %+v -> %+v", before, after)
		}
	})

	t.Run("empty input", func(t *testing.T) {
		got := asUpdateTask(t, w.b, w.task.ID, map[string]any{"expectedVersion": 3})
		if got.Version != 3 || got.Status != "DONE" {
			t.Fatalf("no-op update = %+v", got)
		}
	})

	forbidden := []struct {
		name   string
		input  map[string]any
		fields []string
	}{
		{"title", map[string]any{"title": "mine now"}, []string{"title"}},
		{"description", map[string]any{"description": "changed"}, []string{"description"}},
		{"description null", map[string]any{"description": nil}, []string{"description"}},
		{"priority", map[string]any{"priority": "LOW"}, []string{"priority"}},
		{"dueAt", map[string]any{"dueAt": "2031-01-01T00:00:00Z"}, []string{"dueAt"}},
		{"dueAt null", map[string]any{"dueAt": nil}, []string{"dueAt"}},
		{"tags", map[string]any{"tags": []string{"mine"}}, []string{"tags"}},
		{"tags null", map[string]any{"tags": nil}, []string{"tags"}},
		{"assigneeId to someone else", map[string]any{"assigneeId": "C"}, []string{"assigneeId"}},
		{"assigneeId to the owner", map[string]any{"assigneeId": "A"}, []string{"assigneeId"}},
		{"assigneeId to themself", map[string]any{"assigneeId": "B"}, []string{"assigneeId"}},
		{"assigneeId null", map[string]any{"assigneeId": nil}, []string{"assigneeId"}},
		{"status with title", map[string]any{"status": "TODO", "title": "x"}, []string{"title"}},
		{"status with tags and expectedVersion", map[string]any{"status": "TODO", "tags": []string{}, "expectedVersion": 3}, []string{"tags"}},
		{"several fields", map[string]any{"title": "x", "priority": "URGENT", "assigneeId": nil}, []string{"title", "priority", "assigneeId"}},
	}
	ids := map[string]string{"A": w.a.GlobalID, "B": w.b.GlobalID, "C": w.c.GlobalID}
	for _, tc := range forbidden {
		t.Run("forbidden "+tc.name, func(t *testing.T) {
			input := map[string]any{}
			for k, v := range tc.input {
				if s, ok := v.(string); ok && k == "assigneeId" {
					v = ids[s]
				}
				input[k] = v
			}
			before := asSnapshot(t, w.env, w.taskID)
			res := w.b.Do(t, asUpdate, map[string]any{"id": w.task.ID, "input": input})
			e := auOneError(t, res, "FORBIDDEN")
			auNoData(t, res)
			if want := "only the task's owner can change " + strings.Join(tc.fields, ", "); e.Message != want {
				t.Errorf("message = %q, want %q", e.Message, want)
			}
			if e.Field() != "input."+tc.fields[0] {
				t.Errorf("field = %q, want input.%s", e.Field(), tc.fields[0])
			}
			if after := asSnapshot(t, w.env, w.taskID); !reflect.DeepEqual(after, before) {
				t.Fatalf("row changed: %+v -> %+v", before, after)
			}
		})
	}

	t.Run("delete", func(t *testing.T) {
		before := asSnapshot(t, w.env, w.taskID)
		for _, input := range []any{nil, map[string]any{"expectedVersion": 3}, map[string]any{"expectedVersion": 1}} {
			res := w.b.Do(t, asDelete, map[string]any{"id": w.task.ID, "input": input})
			e := auOneError(t, res, "FORBIDDEN")
			auNoData(t, res)
			if e.Message != "only the task's owner can delete it" {
				t.Errorf("message = %q", e.Message)
			}
		}
		if after := asSnapshot(t, w.env, w.taskID); !reflect.DeepEqual(after, before) {
			t.Fatalf("row changed: %+v -> %+v", before, after)
		}
	})

	t.Run("the owner still changes everything", func(t *testing.T) {
		got := asUpdateTask(t, w.a, w.task.ID, map[string]any{
			"title": "ship it", "description": nil, "status": "TODO", "priority": "LOW", "dueAt": nil,
			"tags": []string{"later"}, "assigneeId": w.a.GlobalID, "expectedVersion": 3,
		})
		if got.Title != "ship it" || got.Description != nil || got.Status != "TODO" || got.Priority != "LOW" ||
			got.DueAt != nil || !slices.Equal(got.Tags, []string{"later"}) || got.assigneeID() != w.a.GlobalID || got.Version != 4 {
			t.Fatalf("owner's update = %+v", got)
		}
		// Now B is no longer the assignee: their status change is a NOT_FOUND like a missing task's.
		asLikeMissing(t, w.b, asUpdate, func(id string) map[string]any {
			return map[string]any{"id": id, "input": map[string]any{"status": "DONE"}}
		}, w.task.ID, w.missing, []any{"updateTask"})
		res := w.a.Do(t, asDelete, map[string]any{"id": w.task.ID, "input": map[string]any{"expectedVersion": 4}})
		if n := auCount(t, w.env, `SELECT count(*) FROM tasks WHERE id = $1`, w.taskID); len(res.Errors) != 0 || n != 0 {
			t.Fatalf("owner's delete: %+v, task rows left %d", res.Errors, n)
		}
	})
}

func TestStrangerCannotTouchAssignedTask(t *testing.T) {
	t.Parallel()
	w := asNewWorld(t)
	ghost := globalid.Encode(globalid.KindUser, uuid.New())
	update := func(input map[string]any) func(string) map[string]any {
		return func(id string) map[string]any { return map[string]any{"id": id, "input": input} }
	}
	del := func(input any) func(string) map[string]any {
		return func(id string) map[string]any { return map[string]any{"id": id, "input": input} }
	}
	paths := []struct {
		name  string
		query string
		vars  func(string) map[string]any
		path  []any
	}{
		{"update status", asUpdate, update(map[string]any{"status": "DONE"}), []any{"updateTask"}},
		{"update status with expectedVersion", asUpdate, update(map[string]any{"status": "DONE", "expectedVersion": 1}), []any{"updateTask"}},
		{"update title", asUpdate, update(map[string]any{"title": "pwned"}), []any{"updateTask"}},
		{"assign to themself", asUpdate, update(map[string]any{"assigneeId": w.c.GlobalID}), []any{"updateTask"}},
		{"assign to a user that does not exist", asUpdate, update(map[string]any{"assigneeId": ghost}), []any{"updateTask"}},
		{"unassign", asUpdate, update(map[string]any{"assigneeId": nil}), []any{"updateTask"}},
		{"empty input", asUpdate, update(map[string]any{}), []any{"updateTask"}},
		{"delete", asDelete, del(nil), []any{"deleteTask"}},
		{"delete with expectedVersion", asDelete, del(map[string]any{"expectedVersion": 1}), []any{"deleteTask"}},
	}
	for _, p := range asReadPaths {
		paths = append(paths, struct {
			name  string
			query string
			vars  func(string) map[string]any
			path  []any
		}{"read " + p.name, p.query, p.vars, p.wantPath})
	}
	before := asSnapshot(t, w.env, w.taskID)
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			asLikeMissing(t, w.c, p.query, p.vars, w.task.ID, w.missing, p.path)
			if after := asSnapshot(t, w.env, w.taskID); !reflect.DeepEqual(after, before) {
				t.Fatalf("row changed: %+v -> %+v", before, after)
			}
		})
	}
}

func TestReassignmentRevokesFormerAssignee(t *testing.T) {
	t.Parallel()
	w := asNewWorld(t)
	if !w.env.Config.CacheEnabled || w.env.Config.RedisURL != "" {
		t.Fatalf("this test expects the default in-process cache (enabled %v, Redis %q)", w.env.Config.CacheEnabled, w.env.Config.RedisURL)
	}
	statusTo := func(s string) func(string) map[string]any {
		return func(id string) map[string]any { return map[string]any{"id": id, "input": map[string]any{"status": s}} }
	}
	revoked := func(t *testing.T, u *testsupport.User) {
		t.Helper()
		for _, p := range asReadPaths {
			asLikeMissing(t, u, p.query, p.vars, w.task.ID, w.missing, p.wantPath)
		}
		asLikeMissing(t, u, asUpdate, statusTo("DONE"), w.task.ID, w.missing, []any{"updateTask"})
		asLikeMissing(t, u, asUpdate, func(id string) map[string]any {
			return map[string]any{"id": id, "input": map[string]any{}}
		}, w.task.ID, w.missing, []any{"updateTask"})
		asLikeMissing(t, u, asDelete, func(id string) map[string]any { return map[string]any{"id": id} }, w.task.ID, w.missing, []any{"deleteTask"})
		if got := asListIDs(t, u)["assigned"]; len(got) != 0 {
			t.Errorf("assignedToMe still lists %v", got)
		}
	}

	// B reads the task on every path, twice, so its row is cached.
	for range 2 {
		for _, p := range asReadPaths {
			if got := p.task(t, w.b.Do(t, p.query, p.vars(w.task.ID)).Data); got.ID != w.task.ID {
				t.Fatalf("%s as B = %+v", p.name, got)
			}
		}
	}
	if got := asListIDs(t, w.b)["assigned"]; !slices.Equal(got, []string{w.task.ID}) {
		t.Fatalf("B's assignedToMe = %v", got)
	}

	reassigned := asUpdateTask(t, w.a, w.task.ID, map[string]any{"assigneeId": w.c.GlobalID})
	if reassigned.assigneeID() != w.c.GlobalID || reassigned.Assignee.Name != "Carol" || reassigned.Version != 2 {
		t.Fatalf("reassigned = %+v", reassigned)
	}

	t.Run("former assignee", func(t *testing.T) { revoked(t, w.b) })
	t.Run("new assignee", func(t *testing.T) {
		if got := asGetTask(t, w.c, w.task.ID); got.assigneeID() != w.c.GlobalID {
			t.Fatalf("C reads %+v", got)
		}
		if got := asListIDs(t, w.c)["assigned"]; !slices.Equal(got, []string{w.task.ID}) {
			t.Fatalf("C's assignedToMe = %v", got)
		}
		if got := asUpdateTask(t, w.c, w.task.ID, map[string]any{"status": "IN_PROGRESS", "expectedVersion": 2}); got.Version != 3 {
			t.Fatalf("C's status change = %+v", got)
		}
	})

	unassigned := asUpdateTask(t, w.a, w.task.ID, map[string]any{"assigneeId": nil})
	if unassigned.Assignee != nil || unassigned.Version != 4 {
		t.Fatalf("unassigned = %+v", unassigned)
	}
	if r := asSnapshot(t, w.env, w.taskID); r.Assignee != nil {
		t.Fatalf("row assignee = %v, want NULL", r.Assignee)
	}
	t.Run("after unassign, former assignee", func(t *testing.T) { revoked(t, w.c) })
	t.Run("after unassign, B", func(t *testing.T) { revoked(t, w.b) })
	t.Run("after unassign, owner", func(t *testing.T) {
		if got := asGetTask(t, w.a, w.task.ID); got.Assignee != nil || got.Version != 4 || got.Status != "IN_PROGRESS" {
			t.Fatalf("owner reads %+v", got)
		}
	})
}

// TestFormerAssigneeCannotWriteDuringReassignment races the assignee's status changes against the
// owner's reassignment: the guard is part of each UPDATE, so no write of the former assignee lands
// after the reassignment (writes are serialized on the row, so versions order them).
func TestFormerAssigneeCannotWriteDuringReassignment(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: races reassignments against writes")
	}
	t.Parallel()
	w := asNewWorld(t)
	const workers, attempts = 4, 15
	var (
		mu       sync.Mutex
		versions []int
		others   []string
		wg       sync.WaitGroup
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Go(func() {
			<-start
			for j := range attempts {
				status := []string{"TODO", "IN_PROGRESS", "DONE"}[(i+j)%3]
				res := w.b.Do(t, asUpdate, map[string]any{"id": w.task.ID, "input": map[string]any{"status": status}})
				mu.Lock()
				if len(res.Errors) == 0 {
					var data struct{ UpdateTask struct{ Task asTask } }
					if err := json.Unmarshal(res.Data, &data); err == nil {
						versions = append(versions, data.UpdateTask.Task.Version)
					}
				} else {
					others = append(others, res.Errors[0].Code())
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	reassigned := asUpdateTask(t, w.a, w.task.ID, map[string]any{"assigneeId": w.c.GlobalID})
	wg.Wait()

	for _, v := range versions {
		if v >= reassigned.Version {
			t.Errorf("the former assignee wrote version %d, after the reassignment (version %d)", v, reassigned.Version)
		}
	}
	for _, code := range others {
		if code != "NOT_FOUND" {
			t.Errorf("the former assignee got %s, want success or NOT_FOUND", code)
		}
	}
	if r := asSnapshot(t, w.env, w.taskID); int(r.Version) != reassigned.Version || r.Assignee == nil || *r.Assignee != w.c.ID {
		t.Fatalf("row = %+v, want version %d assigned to C", r, reassigned.Version)
	}
	t.Logf("%d status changes before the reassignment (version %d), %d refused after", len(versions), reassigned.Version, len(others))
}

func TestAssigneeIDValidation(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	b := env.Register(t, "Bob")
	own := asCreateTask(t, a, map[string]any{"title": "existing"})
	ownID := asTaskID(t, own.ID)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

	refused := []struct {
		name       string
		assigneeID string
		title      string // "" leaves the title out of an update and uses a valid one on create
		code       string
		violations []string // for BAD_USER_INPUT
	}{
		{"malformed", "not-an-id", "", "BAD_USER_INPUT", []string{"input.assigneeId"}},
		{"not a uuid", b64("User:not-a-uuid"), "", "BAD_USER_INPUT", []string{"input.assigneeId"}},
		{"raw uuid", b.ID.String(), "", "BAD_USER_INPUT", []string{"input.assigneeId"}},
		{"unknown user", globalid.Encode(globalid.KindUser, uuid.New()), "", "NOT_FOUND", nil},
		{"a task's id", own.ID, "", "NOT_FOUND", nil},
		{"malformed with an empty title", "not-an-id", " ", "BAD_USER_INPUT", []string{"input.title", "input.assigneeId"}},
		{"unknown user with an empty title", globalid.Encode(globalid.KindUser, uuid.New()), " ", "BAD_USER_INPUT", []string{"input.title"}},
	}
	for _, tc := range refused {
		for _, op := range []string{"create", "update"} {
			t.Run(op+" "+tc.name, func(t *testing.T) {
				input := map[string]any{"assigneeId": tc.assigneeID}
				var res testsupport.Response
				before := asSnapshot(t, env, ownID)
				if op == "create" {
					input["title"] = "new task"
					if tc.title != "" {
						input["title"] = tc.title
					}
					res = a.Do(t, asCreate, map[string]any{"input": input})
				} else {
					if tc.title != "" {
						input["title"] = tc.title
					}
					res = a.Do(t, asUpdate, map[string]any{"id": own.ID, "input": input})
				}
				wantField := "input.assigneeId"
				if tc.violations != nil {
					wantField = tc.violations[0]
				}
				e := wantError(t, res, tc.code, wantField)
				auNoData(t, res)
				if tc.violations != nil && !slices.Equal(auViolationFields(t, e), tc.violations) {
					t.Errorf("violations = %v, want %v", auViolationFields(t, e), tc.violations)
				}
				if n := env.CountRows(t, "tasks"); n != 1 {
					t.Errorf("%d tasks, want 1: nothing created", n)
				}
				if after := asSnapshot(t, env, ownID); !reflect.DeepEqual(after, before) {
					t.Errorf("row changed: %+v -> %+v", before, after)
				}
			})
		}
	}

	t.Run("create assigned to yourself", func(t *testing.T) {
		self := asCreateTask(t, a, map[string]any{"title": "note to self", "assigneeId": a.GlobalID})
		if self.assigneeID() != a.GlobalID {
			t.Fatalf("assignee = %+v", self.Assignee)
		}
		lists := asListIDs(t, a)
		if !slices.Contains(lists["own"], self.ID) || !slices.Equal(lists["assigned"], []string{self.ID}) {
			t.Fatalf("lists = %v: the self-assigned task belongs in both, once each", lists)
		}
		// The owner who is also the assignee still changes everything.
		if got := asUpdateTask(t, a, self.ID, map[string]any{"title": "renamed", "status": "DONE"}); got.Title != "renamed" || got.Version != 2 {
			t.Fatalf("update = %+v", got)
		}
	})
	t.Run("create with null assignee", func(t *testing.T) {
		if got := asCreateTask(t, a, map[string]any{"title": "nobody's", "assigneeId": nil}); got.Assignee != nil {
			t.Fatalf("assignee = %+v, want null", got.Assignee)
		}
	})
	t.Run("update: assign, reassign to yourself, unassign", func(t *testing.T) {
		steps := []struct {
			assignee any
			want     string
		}{{b.GlobalID, b.GlobalID}, {a.GlobalID, a.GlobalID}, {nil, ""}, {nil, ""}}
		for i, s := range steps {
			got := asUpdateTask(t, a, own.ID, map[string]any{"assigneeId": s.assignee})
			if got.assigneeID() != s.want || got.Version != 2+i {
				t.Fatalf("step %d: %+v, want assignee %q at version %d", i, got, s.want, 2+i)
			}
		}
		// Leaving assigneeId out leaves the assignee alone.
		asUpdateTask(t, a, own.ID, map[string]any{"assigneeId": b.GlobalID})
		if got := asUpdateTask(t, a, own.ID, map[string]any{"title": "kept assignee"}); got.assigneeID() != b.GlobalID {
			t.Fatalf("omitted assigneeId changed the assignee: %+v", got)
		}
	})
}

func TestDeletedAssigneeLeavesTaskUnassigned(t *testing.T) {
	t.Parallel()
	w := asNewWorld(t)
	// The owner reads the task with its assignee, so the task row and B's user row are cached.
	for range 2 {
		if got := asGetTask(t, w.a, w.task.ID); got.assigneeID() != w.b.GlobalID {
			t.Fatalf("owner reads %+v", got)
		}
	}
	var del struct {
		DeleteMe struct{ DeletedUserID string }
	}
	w.b.Do(t, `mutation($input: DeleteMeInput!) { deleteMe(input: $input) { deletedUserId } }`,
		map[string]any{"input": map[string]any{"password": w.b.Password}}).Decode(t, &del)
	if del.DeleteMe.DeletedUserID != w.b.GlobalID {
		t.Fatalf("deleteMe = %+v", del)
	}

	if r := asSnapshot(t, w.env, w.taskID); r.Assignee != nil || r.Title != w.task.Title {
		t.Fatalf("row = %+v, want the task kept and unassigned", r)
	}
	for _, p := range asReadPaths {
		res := w.a.Do(t, p.query, p.vars(w.task.ID))
		got := p.task(t, res.Data)
		if len(res.Errors) != 0 || got.ID != w.task.ID || got.Assignee != nil {
			t.Errorf("%s as owner: %+v, errors %+v; want the task with a null assignee", p.name, got, res.Errors)
		}
	}
	if lists := asListIDs(t, w.a); !slices.Contains(lists["own"], w.task.ID) {
		t.Errorf("owner's list lost the task: %v", lists)
	}
	if got := asUpdateTask(t, w.a, w.task.ID, map[string]any{"assigneeId": w.c.GlobalID}); got.assigneeID() != w.c.GlobalID {
		t.Errorf("reassigning after the deletion: %+v", got)
	}
}

// asSeedAssigned inserts n tasks owned by owner and assigned to assignee (nil: unassigned), with many
// ties on every sort key (also across owners: the same g gives the same keys) and a mix of statuses,
// priorities, due dates, tags and searchable titles for the filters.
func asSeedAssigned(t *testing.T, env *testsupport.Env, owner uuid.UUID, assignee *uuid.UUID, n int, label string) {
	t.Helper()
	env.DB.SeedTasks(t, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, status, priority, due_at, tags, created_at, updated_at)
		SELECT gen_random_uuid(), $1, $2, $3 || ' ' || g || CASE WHEN g % 7 = 0 THEN ' needle' ELSE '' END,
		       (ARRAY['TODO','IN_PROGRESS','DONE'])[1 + g % 3], g % 4,
		       CASE WHEN g % 5 = 0 THEN NULL ELSE '2030-01-01'::timestamptz + (g % 9) * interval '1 day' END,
		       CASE WHEN g % 4 = 0 THEN ARRAY['blue'] ELSE '{}'::text[] END,
		       '2026-01-01'::timestamptz + (g / 3) * interval '1 minute',
		       '2026-06-01'::timestamptz + ((g * 7) % 10) * interval '1 hour'
		FROM generate_series(1, $4::int) g`, owner, assignee, label, n)
}

func TestAssignedToMePagination(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: pages through thousands of rows in every order")
	}
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	me := env.Register(t, "Viewer")
	other := env.Register(t, "Other")
	const perOwner, size = 20, 7
	for i := range 3 {
		owner := env.Register(t, fmt.Sprintf("Owner%d", i))
		asSeedAssigned(t, env, owner.ID, &me.ID, perOwner, "assigned")
		asSeedAssigned(t, env, owner.ID, nil, 10, "unassigned")
		asSeedAssigned(t, env, owner.ID, &other.ID, 5, "someone else's")
	}
	asSeedAssigned(t, env, me.ID, nil, 15, "my own")
	const total = 3 * perOwner
	assigned := map[string]any{"assignedToMe": true}

	for _, field := range []db.TaskOrderField{db.TaskOrderCreatedAt, db.TaskOrderUpdatedAt, db.TaskOrderDueAt, db.TaskOrderPriority} {
		for _, dir := range []db.Direction{db.Asc, db.Desc} {
			t.Run(fmt.Sprintf("%s_%s", field, dir), func(t *testing.T) {
				want := expectedOrderOf(t, env, "assignee_id", me.ID, field, dir)
				if len(want) != total {
					t.Fatalf("expected %d assigned tasks, found %d", total, len(want))
				}
				order := orderVars(field, dir)
				var got []string
				var after any
				for page := 0; ; page++ {
					p := fetchPage(t, me, map[string]any{"first": size, "after": after, "order": order, "filter": assigned})
					if p.Tasks.TotalCount != total || p.Tasks.PageInfo.HasPreviousPage != (page > 0) {
						t.Fatalf("page %d: totalCount %d hasPreviousPage %v", page, p.Tasks.TotalCount, p.Tasks.PageInfo.HasPreviousPage)
					}
					got = append(got, p.ids()...)
					if !p.Tasks.PageInfo.HasNextPage {
						break
					}
					after = *p.Tasks.PageInfo.EndCursor
				}
				if !slices.Equal(got, want) {
					t.Fatalf("forward walk differs from the expected order (got %d ids, want %d)", len(got), len(want))
				}
				var back []string
				var before any
				for page := 0; ; page++ {
					p := fetchPage(t, me, map[string]any{"last": size, "before": before, "order": order, "filter": assigned})
					if p.Tasks.PageInfo.HasNextPage != (page > 0) {
						t.Fatalf("backward page %d: hasNextPage %v", page, p.Tasks.PageInfo.HasNextPage)
					}
					back = append(p.ids(), back...)
					if !p.Tasks.PageInfo.HasPreviousPage {
						break
					}
					before = *p.Tasks.PageInfo.StartCursor
				}
				if !slices.Equal(back, want) {
					t.Fatalf("backward walk differs from the expected order (got %d ids, want %d)", len(back), len(want))
				}
			})
		}
	}

	t.Run("filters", func(t *testing.T) {
		cases := []struct {
			name   string
			filter map[string]any
			where  string
		}{
			{"status", map[string]any{"status": []string{"DONE", "TODO"}}, `status IN ('DONE', 'TODO')`},
			{"priority", map[string]any{"priority": []string{"URGENT"}}, `priority = 3`},
			{"tag", map[string]any{"tag": "blue"}, `tags @> ARRAY['blue']`},
			{"search", map[string]any{"search": "NEEDLE"}, `title ILIKE '%needle%'`},
			{"due range", map[string]any{"dueAfter": "2030-01-03T00:00:00Z", "dueBefore": "2030-01-06T00:00:00Z"},
				`due_at >= '2030-01-03T00:00:00Z' AND due_at < '2030-01-06T00:00:00Z'`},
			{"all at once", map[string]any{"status": []string{"TODO", "IN_PROGRESS"}, "tag": "blue", "dueBefore": "2030-01-09T00:00:00Z"},
				`status IN ('TODO', 'IN_PROGRESS') AND tags @> ARRAY['blue'] AND due_at < '2030-01-09T00:00:00Z'`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				filter := map[string]any{"assignedToMe": true}
				for k, v := range tc.filter {
					filter[k] = v
				}
				rows, err := env.DB.Pool.Query(context.Background(), `SELECT id FROM tasks WHERE assignee_id = $1 AND `+tc.where, me.ID)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for rows.Next() {
					var id uuid.UUID
					if err := rows.Scan(&id); err != nil {
						t.Fatal(err)
					}
					want = append(want, globalid.Encode(globalid.KindTask, id))
				}
				if rows.Err() != nil || len(want) == 0 || len(want) == total {
					t.Fatalf("expected set: %d ids, %v (the filter should narrow the list)", len(want), rows.Err())
				}
				p := fetchPage(t, me, map[string]any{"first": 100, "filter": filter})
				if got := sorted(p.ids()); !slices.Equal(got, sorted(want)) || p.Tasks.TotalCount != len(want) {
					t.Fatalf("got %d ids (totalCount %d), want %d", len(got), p.Tasks.TotalCount, len(want))
				}
			})
		}
	})

	t.Run("cursors stay in their list", func(t *testing.T) {
		own := fetchPage(t, me, map[string]any{"first": 3})
		mine := fetchPage(t, me, map[string]any{"first": 3, "filter": assigned})
		if own.Tasks.TotalCount != 15 || mine.Tasks.TotalCount != total {
			t.Fatalf("totalCount own %d assigned %d, want 15 and %d", own.Tasks.TotalCount, mine.Tasks.TotalCount, total)
		}
		ownCursor, assignedCursor := *own.Tasks.PageInfo.EndCursor, *mine.Tasks.PageInfo.EndCursor
		refusals := []struct {
			name string
			u    *testsupport.User
			vars map[string]any
		}{
			{"own cursor on the assigned list", me, map[string]any{"first": 3, "after": ownCursor, "filter": assigned}},
			{"own cursor backward on the assigned list", me, map[string]any{"last": 3, "before": ownCursor, "filter": assigned}},
			{"assigned cursor on the own list", me, map[string]any{"first": 3, "after": assignedCursor}},
			{"assigned cursor on the own list with assignedToMe false", me, map[string]any{"first": 3, "after": assignedCursor, "filter": map[string]any{"assignedToMe": false}}},
			{"assigned cursor with another filter", me, map[string]any{"first": 3, "after": assignedCursor, "filter": map[string]any{"assignedToMe": true, "tag": "blue"}}},
			{"assigned cursor of another user", other, map[string]any{"first": 3, "after": assignedCursor, "filter": assigned}},
		}
		for _, r := range refusals {
			t.Run(r.name, func(t *testing.T) {
				res := r.u.Do(t, pageQuery, r.vars)
				auOneError(t, res, "BAD_USER_INPUT")
				auNoData(t, res)
			})
		}
		// assignedToMe: false is the own list: a cursor of a filter without it continues the same filter
		// with it, and the other way round.
		for _, f := range []map[string]any{{}, {"tag": "blue"}} {
			withFalse := map[string]any{"assignedToMe": false}
			for k, v := range f {
				withFalse[k] = v
			}
			first := fetchPage(t, me, map[string]any{"first": 2, "filter": f})
			firstFalse := fetchPage(t, me, map[string]any{"first": 2, "filter": withFalse})
			next := fetchPage(t, me, map[string]any{"first": 3, "after": *first.Tasks.PageInfo.EndCursor, "filter": withFalse})
			plain := fetchPage(t, me, map[string]any{"first": 3, "after": *firstFalse.Tasks.PageInfo.EndCursor, "filter": f})
			if len(next.ids()) == 0 || !slices.Equal(next.ids(), plain.ids()) || !slices.Equal(first.ids(), firstFalse.ids()) {
				t.Fatalf("filter %v: with and without assignedToMe: false differ: %v / %v", f, next.ids(), plain.ids())
			}
		}
		// And the assigned cursor continues the assigned list.
		cont := fetchPage(t, me, map[string]any{"first": 3, "after": assignedCursor, "filter": assigned})
		all := fetchPage(t, me, map[string]any{"first": 6, "filter": assigned})
		if !slices.Equal(cont.ids(), all.ids()[3:]) {
			t.Fatalf("assigned page 2 = %v, want %v", cont.ids(), all.ids()[3:])
		}
	})

	t.Run("counts stay per owner", func(t *testing.T) {
		var data struct {
			Me struct{ TaskCounts struct{ Total int } }
		}
		me.Do(t, `{ me { taskCounts { total } } }`, nil).Decode(t, &data)
		if data.Me.TaskCounts.Total != 15 {
			t.Fatalf("taskCounts.total = %d, want 15 (own tasks only)", data.Me.TaskCounts.Total)
		}
	})
}
