package resolvers_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// azTaskSnapshot reads the task straight from the database (whoever owns it).
func azTaskSnapshot(t *testing.T, env *testsupport.Env, id uuid.UUID) (title string, version int32) {
	t.Helper()
	if err := env.DB.Pool.QueryRow(t.Context(), `SELECT title, version FROM tasks WHERE id = $1`, id).Scan(&title, &version); err != nil {
		t.Fatalf("read task %s: %v", id, err)
	}
	return title, version
}

// azSameError asserts that two responses carry the same errors (message, path, extensions) and data.
func azSameError(t *testing.T, real, missing testsupport.Response) {
	t.Helper()
	if !reflect.DeepEqual(real.Errors, missing.Errors) {
		t.Errorf("errors differ:\n  foreign task: %+v\n  missing task: %+v", real.Errors, missing.Errors)
	}
	if string(real.Data) != string(missing.Data) || real.Status != missing.Status {
		t.Errorf("answers differ:\n  foreign task: %d %s\n  missing task: %d %s", real.Status, real.Data, missing.Status, missing.Data)
	}
}

func TestForeignTaskAnswersLikeMissingTask(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	b := env.Register(t, "Bob")
	aTask := env.CreateTask(t, a.ID, db.NewTask{Title: "alice secret plan", Tags: []string{"secret"}})
	bTask := env.CreateTask(t, b.ID, db.NewTask{Title: "bob chores"})
	aGID := globalid.Encode(globalid.KindTask, aTask.ID)
	bGID := globalid.Encode(globalid.KindTask, bTask.ID)
	missingGID := globalid.Encode(globalid.KindTask, uuid.New())

	// Control: the owner reaches the task through the same query.
	var own struct{ Task struct{ ID, Title string } }
	a.Do(t, `query($id: ID!) { task(id: $id) { id title } }`, map[string]any{"id": aGID}).Decode(t, &own)
	if own.Task.ID != aGID || own.Task.Title != "alice secret plan" {
		t.Fatalf("owner's task = %+v", own.Task)
	}

	paths := []struct {
		name  string
		query string
		vars  func(id string) map[string]any
		// wantPath is the error path; nil means the root field alone.
		wantPath []any
	}{
		{"task", `query($id: ID!) { task(id: $id) { id title description tags } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"task"}},
		{"node", `query($id: ID!) { node(id: $id) { id ... on Task { title tags } } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"node"}},
		{"nodes", `query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Task { title } } }`,
			func(id string) map[string]any { return map[string]any{"ids": []string{bGID, id}} }, []any{"nodes", float64(1)}},
		{"updateTask", `mutation($id: ID!) { updateTask(id: $id, input: {title: "pwned", tags: []}) { task { id title } } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"updateTask"}},
		{"updateTask with expectedVersion", `mutation($id: ID!) { updateTask(id: $id, input: {status: DONE, expectedVersion: 1}) { task { id } } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"updateTask"}},
		{"updateTask with empty input", `mutation($id: ID!) { updateTask(id: $id, input: {}) { task { id title } } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"updateTask"}},
		{"deleteTask", `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"deleteTask"}},
		{"deleteTask with expectedVersion", `mutation($id: ID!) { deleteTask(id: $id, input: {expectedVersion: 1}) { deletedTaskId } }`,
			func(id string) map[string]any { return map[string]any{"id": id} }, []any{"deleteTask"}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			foreign := b.Do(t, p.query, p.vars(aGID))
			missing := b.Do(t, p.query, p.vars(missingGID))
			e := auOneError(t, foreign, "NOT_FOUND")
			auOneError(t, missing, "NOT_FOUND")
			if !reflect.DeepEqual(e.Path, p.wantPath) {
				t.Errorf("error path = %v, want %v", e.Path, p.wantPath)
			}
			azSameError(t, foreign, missing)
			if p.name == "nodes" {
				var data struct{ Nodes []*struct{ ID string } }
				if err := json.Unmarshal(foreign.Data, &data); err != nil {
					t.Fatal(err)
				}
				if len(data.Nodes) != 2 || data.Nodes[0] == nil || data.Nodes[0].ID != bGID || data.Nodes[1] != nil {
					t.Errorf("nodes = %s, want [B's task, null]", foreign.Data)
				}
			} else {
				auNoData(t, foreign)
			}
			if title, version := azTaskSnapshot(t, env, aTask.ID); title != "alice secret plan" || version != 1 {
				t.Errorf("A's task changed: title %q version %d", title, version)
			}
		})
	}
	if n := env.CountRows(t, "tasks"); n != 2 {
		t.Fatalf("tasks rows = %d, want 2", n)
	}

	t.Run("lists", func(t *testing.T) {
		const conn = `totalCount edges { node { id title } }`
		type connection struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID, Title string } }
		}
		var data struct {
			Tasks    connection
			Searched connection
			Tagged   connection
			Me       struct {
				Tasks      connection
				TaskCounts struct{ Total int }
			}
		}
		b.Do(t, `{
  tasks { `+conn+` }
  searched: tasks(filter: {search: "secret"}) { `+conn+` }
  tagged: tasks(filter: {tag: "secret"}) { `+conn+` }
  me { tasks { `+conn+` } taskCounts { total } }
}`, nil).Decode(t, &data)
		for name, c := range map[string]connection{"tasks": data.Tasks, "me.tasks": data.Me.Tasks} {
			if c.TotalCount != 1 || len(c.Edges) != 1 || c.Edges[0].Node.ID != bGID {
				t.Errorf("%s = %+v, want only B's task", name, c)
			}
		}
		for name, c := range map[string]connection{"search": data.Searched, "tag": data.Tagged} {
			if c.TotalCount != 0 || len(c.Edges) != 0 {
				t.Errorf("%s filter found A's task: %+v", name, c)
			}
		}
		if data.Me.TaskCounts.Total != 1 {
			t.Errorf("B's taskCounts.total = %d, want 1", data.Me.TaskCounts.Total)
		}
	})
}

func TestUserFieldsVisibility(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	b := env.Register(t, "Bob")
	c := env.Register(t, "Carol")
	env.MakeAdmin(t, c)
	env.CreateTask(t, a.ID, db.NewTask{Title: "a1"})
	env.CreateTask(t, a.ID, db.NewTask{Title: "a2", Status: db.StatusDone})
	vars := map[string]any{"id": a.GlobalID}

	type userView struct {
		ID, Name, Role string
		Email          *string
		TaskCounts     *struct{ Total, Done int }
	}

	t.Run("other user sees name but not email", func(t *testing.T) {
		var data struct {
			Node  userView
			Nodes []userView
		}
		b.Do(t, `query($id: ID!) {
  node(id: $id) { id ... on User { name email role } }
  nodes(ids: [$id]) { id ... on User { name email } }
}`, vars).Decode(t, &data)
		if data.Node.ID != a.GlobalID || data.Node.Name != "Alice" || data.Node.Email != nil || data.Node.Role != "USER" {
			t.Errorf("node(A) as B = %+v, want Alice with null email", data.Node)
		}
		if len(data.Nodes) != 1 || data.Nodes[0].Name != "Alice" || data.Nodes[0].Email != nil {
			t.Errorf("nodes([A]) as B = %+v, want Alice with null email", data.Nodes)
		}
	})

	forbidden := []struct {
		name, who, query string
		wantPath         []any
	}{
		{"B lists A's tasks", "B", `query($id: ID!) { node(id: $id) { ... on User { tasks { totalCount edges { node { title } } } } } }`, []any{"node", "tasks"}},
		{"B reads A's taskCounts", "B", `query($id: ID!) { node(id: $id) { ... on User { taskCounts { total } } } }`, []any{"node", "taskCounts"}},
		{"admin lists A's tasks", "C", `query($id: ID!) { node(id: $id) { ... on User { tasks { totalCount edges { node { title } } } } } }`, []any{"node", "tasks"}},
		{"B lists A's tasks through nodes", "B", `query($id: ID!) { nodes(ids: [$id]) { ... on User { tasks { totalCount } } } }`, []any{"nodes", float64(0), "tasks"}},
	}
	clients := map[string]*testsupport.User{"B": b, "C": c}
	for _, tc := range forbidden {
		t.Run(tc.name, func(t *testing.T) {
			res := clients[tc.who].Do(t, tc.query, vars)
			e := auOneError(t, res, "FORBIDDEN")
			if !reflect.DeepEqual(e.Path, tc.wantPath) {
				t.Errorf("path = %v, want %v", e.Path, tc.wantPath)
			}
			// The non-null field's failure nulls its parent: nothing of A's tasks comes back.
			var data map[string]any
			if err := json.Unmarshal(res.Data, &data); err != nil {
				t.Fatal(err)
			}
			if root := data[tc.wantPath[0].(string)]; root != nil && !reflect.DeepEqual(root, []any{nil}) {
				t.Errorf("data leaked: %s", res.Data)
			}
		})
	}

	t.Run("admin sees email and taskCounts", func(t *testing.T) {
		var data struct{ Node userView }
		c.Do(t, `query($id: ID!) { node(id: $id) { id ... on User { name email taskCounts { total done } } } }`, vars).Decode(t, &data)
		if data.Node.Email == nil || *data.Node.Email != a.Email {
			t.Errorf("admin sees email %v, want %s", data.Node.Email, a.Email)
		}
		if data.Node.TaskCounts == nil || data.Node.TaskCounts.Total != 2 || data.Node.TaskCounts.Done != 1 {
			t.Errorf("admin sees taskCounts %+v, want total 2 done 1", data.Node.TaskCounts)
		}
	})
}

func TestUsersQueryIsAdminOnly(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	b := env.Register(t, "Bob")
	const users = `{ users { totalCount edges { node { id name email } } } }`

	res := env.Anonymous().Do(t, users, nil)
	auOneError(t, res, "UNAUTHENTICATED")
	auNoData(t, res)

	res = b.Do(t, users, nil)
	auOneError(t, res, "FORBIDDEN")
	auNoData(t, res)

	// A promotion applies to B's existing token at once.
	env.MakeAdmin(t, b)
	var data struct {
		Users struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					ID, Name string
					Email    *string
				}
			}
		}
	}
	b.Do(t, users, nil).Decode(t, &data)
	if data.Users.TotalCount != 2 || len(data.Users.Edges) != 2 {
		t.Fatalf("users = %+v, want both users", data.Users)
	}
	emails := map[string]string{}
	for _, e := range data.Users.Edges {
		if e.Node.Email == nil {
			t.Fatalf("admin sees null email for %s", e.Node.ID)
		}
		emails[e.Node.ID] = *e.Node.Email
	}
	if emails[a.GlobalID] != a.Email || emails[b.GlobalID] != b.Email {
		t.Fatalf("users emails = %v, want %s and %s", emails, a.Email, b.Email)
	}

	// And so does a demotion.
	if _, err := env.Store.Stores().Users.SetRole(t.Context(), b.Email, policy.RoleUser); err != nil {
		t.Fatal(err)
	}
	res = b.Do(t, users, nil)
	auOneError(t, res, "FORBIDDEN")
	auNoData(t, res)
}

func TestAuthFieldsRefuseAnonymous(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	aTask := env.CreateTask(t, a.ID, db.NewTask{Title: "untouchable"})
	taskGID := globalid.Encode(globalid.KindTask, aTask.ID)

	cases := []struct {
		field, query string
		vars         map[string]any
	}{
		{"me", `{ me { id email } }`, nil},
		{"node", `query($id: ID!) { node(id: $id) { id ... on User { email } } }`, map[string]any{"id": a.GlobalID}},
		{"nodes", `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": []string{a.GlobalID, taskGID}}},
		{"task", `query($id: ID!) { task(id: $id) { id title } }`, map[string]any{"id": taskGID}},
		{"tasks", `{ tasks { totalCount edges { node { id } } } }`, nil},
		{"logout", `mutation { logout { ok } }`, nil},
		{"updateMe", `mutation { updateMe(input: {name: "Anon"}) { user { id } } }`, nil},
		{"changePassword", `mutation { changePassword(input: {currentPassword: "whatever1", newPassword: "whatever2"}) { user { id } } }`, nil},
		{"deleteMe", `mutation { deleteMe(input: {password: "whatever1"}) { deletedUserId } }`, nil},
		{"createTask", `mutation { createTask(input: {title: "anon task"}) { task { id } } }`, nil},
		{"updateTask", `mutation($id: ID!) { updateTask(id: $id, input: {title: "anon"}) { task { id } } }`, map[string]any{"id": taskGID}},
		{"deleteTask", `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": taskGID}},
	}
	for _, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			res := env.Anonymous().Do(t, tc.query, tc.vars)
			e := auOneError(t, res, "UNAUTHENTICATED")
			auNoData(t, res)
			if !reflect.DeepEqual(e.Path, []any{tc.field}) {
				t.Errorf("path = %v, want [%s]", e.Path, tc.field)
			}
		})
	}
	if users, tasks := env.CountRows(t, "users"), env.CountRows(t, "tasks"); users != 1 || tasks != 1 {
		t.Fatalf("users %d tasks %d after anonymous writes, want 1 and 1", users, tasks)
	}
	if title, version := azTaskSnapshot(t, env, aTask.ID); title != "untouchable" || version != 1 {
		t.Fatalf("task changed by anonymous caller: %q v%d", title, version)
	}
	var me struct{ Me struct{ Name string } }
	a.Do(t, `{ me { name } }`, nil).Decode(t, &me)
	if me.Me.Name != "Alice" {
		t.Fatalf("name = %q after anonymous updateMe", me.Me.Name)
	}
}

func TestMalformedAndMistypedIDs(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ivy")
	own := env.CreateTask(t, u.ID, db.NewTask{Title: "mine"})
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

	malformed := []string{
		"not-an-id",
		"",
		b64("Task:not-a-uuid"),
		b64("Widget:" + uuid.NewString()),
		b64("task:" + own.ID.String()), // kinds are case-sensitive
		own.ID.String(),                // a raw database id is not a global id
	}
	roots := []struct{ field, query string }{
		{"task", `query($id: ID!) { task(id: $id) { id } }`},
		{"node", `query($id: ID!) { node(id: $id) { id } }`},
		{"updateTask", `mutation($id: ID!) { updateTask(id: $id, input: {title: "x"}) { task { id } } }`},
		{"deleteTask", `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`},
	}
	for _, r := range roots {
		for _, id := range malformed {
			t.Run(r.field+"/"+id, func(t *testing.T) {
				res := u.Do(t, r.query, map[string]any{"id": id})
				e := auOneError(t, res, "BAD_USER_INPUT")
				auNoData(t, res)
				if e.Field() != "id" {
					t.Errorf("field = %q, want id", e.Field())
				}
			})
		}
	}
	t.Run("nodes", func(t *testing.T) {
		res := u.Do(t, `query($ids: [ID!]!) { nodes(ids: $ids) { id } }`, map[string]any{"ids": []string{"not-an-id"}})
		e := auOneError(t, res, "BAD_USER_INPUT")
		if e.Field() != "ids" || !reflect.DeepEqual(e.Path, []any{"nodes", float64(0)}) {
			t.Errorf("field %q path %v, want ids at [nodes 0]", e.Field(), e.Path)
		}
	})

	// A well-formed id of the wrong kind answers like a missing task.
	missingTask := globalid.Encode(globalid.KindTask, uuid.New())
	for _, r := range []struct{ field, query string }{roots[0], roots[2], roots[3]} {
		t.Run(r.field+" with a User id", func(t *testing.T) {
			userID := u.Do(t, r.query, map[string]any{"id": u.GlobalID})
			missing := u.Do(t, r.query, map[string]any{"id": missingTask})
			auOneError(t, userID, "NOT_FOUND")
			auNoData(t, userID)
			azSameError(t, userID, missing)
		})
	}
	if title, version := azTaskSnapshot(t, env, own.ID); title != "mine" || version != 1 {
		t.Fatalf("task changed: %q v%d", title, version)
	}
}
