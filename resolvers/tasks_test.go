package resolvers_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const taskFields = `id title description status priority dueAt tags owner { id } createdAt updatedAt version`

const createTaskMutation = `mutation($input: CreateTaskInput!) { createTask(input: $input) { task { ` + taskFields + ` } } }`

const updateTaskMutation = `mutation($id: ID!, $input: UpdateTaskInput!) { updateTask(id: $id, input: $input) { task { ` + taskFields + ` } } }`

const deleteTaskMutation = `mutation($id: ID!, $input: DeleteTaskInput) { deleteTask(id: $id, input: $input) { deletedTaskId } }`

const taskQuery = `query($id: ID!) { task(id: $id) { ` + taskFields + ` } }`

// apiTask is a Task as the API returns it.
type apiTask struct {
	ID          string
	Title       string
	Description *string
	Status      string
	Priority    string
	DueAt       *string
	Tags        []string
	Owner       struct{ ID string }
	CreatedAt   string
	UpdatedAt   string
	Version     int
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("not RFC 3339: %q: %v", s, err)
	}
	return tm
}

func createTask(t *testing.T, u *testsupport.User, input map[string]any) apiTask {
	t.Helper()
	var data struct{ CreateTask struct{ Task apiTask } }
	u.Do(t, createTaskMutation, map[string]any{"input": input}).Decode(t, &data)
	return data.CreateTask.Task
}

func getTask(t *testing.T, u *testsupport.User, id string) apiTask {
	t.Helper()
	var data struct{ Task apiTask }
	u.Do(t, taskQuery, map[string]any{"id": id}).Decode(t, &data)
	return data.Task
}

func updateTask(t *testing.T, u *testsupport.User, id string, input map[string]any) apiTask {
	t.Helper()
	var data struct{ UpdateTask struct{ Task apiTask } }
	u.Do(t, updateTaskMutation, map[string]any{"id": id, "input": input}).Decode(t, &data)
	return data.UpdateTask.Task
}

// wantError checks that res failed with exactly one error of code and, when field is not empty,
// extensions.field == field.
func wantError(t *testing.T, res testsupport.Response, code, field string) testsupport.Error {
	t.Helper()
	if len(res.Errors) != 1 {
		t.Fatalf("errors = %+v (data %s), want one %s", res.Errors, res.Data, code)
	}
	e := res.Errors[0]
	if e.Code() != code {
		t.Fatalf("code = %q (%+v), want %s", e.Code(), e, code)
	}
	if field != "" && e.Field() != field {
		t.Fatalf("extensions.field = %q (%+v), want %q", e.Field(), e, field)
	}
	return e
}

// violationFieldsOf returns the fields listed in extensions.violations.
func violationFieldsOf(t *testing.T, e testsupport.Error) []string {
	t.Helper()
	list, ok := e.Extensions["violations"].([]any)
	if !ok {
		t.Fatalf("extensions.violations missing or not a list: %+v", e.Extensions)
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		m, _ := v.(map[string]any)
		f, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		if msg == "" {
			t.Errorf("violation without message: %+v", v)
		}
		out = append(out, f)
	}
	return out
}

func TestCreateTaskDefaults(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	got := createTask(t, u, map[string]any{"title": "Buy milk"})
	if got.Title != "Buy milk" || got.Status != "TODO" || got.Priority != "MEDIUM" || got.Version != 1 {
		t.Errorf("task = %+v, want title Buy milk, TODO, MEDIUM, version 1", got)
	}
	if got.Tags == nil || len(got.Tags) != 0 {
		t.Errorf("tags = %#v, want []", got.Tags)
	}
	if got.Description != nil || got.DueAt != nil {
		t.Errorf("description = %v, dueAt = %v, want both null", got.Description, got.DueAt)
	}
	if got.Owner.ID != u.GlobalID {
		t.Errorf("owner = %q, want the viewer %q", got.Owner.ID, u.GlobalID)
	}
	if got.CreatedAt != got.UpdatedAt {
		t.Errorf("createdAt %s != updatedAt %s", got.CreatedAt, got.UpdatedAt)
	}
	if created := mustTime(t, got.CreatedAt); time.Since(created).Abs() > time.Minute {
		t.Errorf("createdAt %s is not now", got.CreatedAt)
	}
	kind, _, err := globalid.Decode("id", got.ID)
	if err != nil || kind != globalid.KindTask {
		t.Errorf("id %q is not a Task global id: %v %v", got.ID, kind, err)
	}
	if n := env.CountRows(t, "tasks"); n != 1 {
		t.Errorf("tasks rows = %d, want 1", n)
	}
}

func TestCreateTaskRoundTrip(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	desc := "First line\nsecond line\r\n\tindented — ünïcødé"
	created := createTask(t, u, map[string]any{
		"title":       "  Plan the trip  ",
		"description": desc,
		"status":      "IN_PROGRESS",
		"priority":    "URGENT",
		"dueAt":       "2026-11-29T09:00:00+01:00",
		"tags":        []string{"Travel", "work", "TRAVEL", "q4:planning", "v1.2_x-y"},
	})
	// Read back through a fresh request, so the values come from the database.
	for name, got := range map[string]apiTask{"createTask": created, "task": getTask(t, u, created.ID)} {
		if got.Title != "Plan the trip" {
			t.Errorf("%s: title = %q, want trimmed", name, got.Title)
		}
		if got.Description == nil || *got.Description != desc {
			t.Errorf("%s: description = %q, want %q", name, deref(got.Description), desc)
		}
		if got.Status != "IN_PROGRESS" || got.Priority != "URGENT" {
			t.Errorf("%s: status/priority = %s/%s", name, got.Status, got.Priority)
		}
		if got.DueAt == nil {
			t.Fatalf("%s: dueAt is null", name)
		}
		if due := mustTime(t, *got.DueAt); !due.Equal(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: dueAt = %s, want 2026-11-29T08:00:00Z", name, *got.DueAt)
		}
		if want := []string{"travel", "work", "q4:planning", "v1.2_x-y"}; !slices.Equal(got.Tags, want) {
			t.Errorf("%s: tags = %q, want %q", name, got.Tags, want)
		}
		if got.Owner.ID != u.GlobalID || got.Version != 1 || got.CreatedAt != got.UpdatedAt {
			t.Errorf("%s: owner/version/timestamps = %s %d %s %s", name, got.Owner.ID, got.Version, got.CreatedAt, got.UpdatedAt)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestCreateTaskValidation(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	tags21 := make([]string, 21)
	for i := range tags21 {
		tags21[i] = "tag" + strings.Repeat("x", i)
	}
	tests := []struct {
		name  string
		input map[string]any
		// wantFields are the violations in order; the first is extensions.field. nil: only the code is checked.
		wantFields []string
	}{
		{"empty title", map[string]any{"title": ""}, []string{"input.title"}},
		{"whitespace title", map[string]any{"title": " \t\n "}, []string{"input.title"}},
		{"201-char title", map[string]any{"title": strings.Repeat("a", 201)}, []string{"input.title"}},
		{"201 two-byte chars title", map[string]any{"title": strings.Repeat("é", 201)}, []string{"input.title"}},
		{"NUL in title", map[string]any{"title": "a\x00b"}, []string{"input.title"}},
		{"escape in title", map[string]any{"title": "a\x1b[31mb"}, []string{"input.title"}},
		{"newline in title", map[string]any{"title": "a\nb"}, []string{"input.title"}},
		{"10001-char description", map[string]any{"title": "t", "description": strings.Repeat("d", 10001)}, []string{"input.description"}},
		{"NUL in description", map[string]any{"title": "t", "description": "a\x00b"}, []string{"input.description"}},
		{"21 distinct tags", map[string]any{"title": "t", "tags": tags21}, []string{"input.tags"}},
		{"bad tag chars", map[string]any{"title": "t", "tags": []string{"ok", "no spaces"}}, []string{"input.tags[1]"}},
		{"tag with slash", map[string]any{"title": "t", "tags": []string{"a/b"}}, []string{"input.tags[0]"}},
		{"51-char tag", map[string]any{"title": "t", "tags": []string{strings.Repeat("a", 51)}}, []string{"input.tags[0]"}},
		{"empty tag", map[string]any{"title": "t", "tags": []string{""}}, []string{"input.tags[0]"}},
		{"dueAt 1999", map[string]any{"title": "t", "dueAt": "1999-12-31T23:59:59Z"}, []string{"input.dueAt"}},
		{"dueAt 2100", map[string]any{"title": "t", "dueAt": "2100-01-01T00:00:00Z"}, []string{"input.dueAt"}},
		{"dueAt 2500", map[string]any{"title": "t", "dueAt": "2500-06-01T00:00:00Z"}, []string{"input.dueAt"}},
		{"dueAt not RFC 3339", map[string]any{"title": "t", "dueAt": "tomorrow"}, nil},
		{"dueAt without zone", map[string]any{"title": "t", "dueAt": "2026-11-29T09:00:00"}, nil},
		{"dueAt number", map[string]any{"title": "t", "dueAt": 1764406800}, nil},
		{"unknown status", map[string]any{"title": "t", "status": "BLOCKED"}, nil},
		{"unknown priority", map[string]any{"title": "t", "priority": "CRITICAL"}, nil},
		{"several bad fields", map[string]any{
			"title": "", "description": strings.Repeat("d", 10001), "tags": []string{"ok", "b@d"},
			"dueAt": "1999-01-01T00:00:00Z",
		}, []string{"input.title", "input.tags[1]", "input.description", "input.dueAt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := env.CountRows(t, "tasks")
			res := u.Do(t, createTaskMutation, map[string]any{"input": tc.input})
			first := ""
			if len(tc.wantFields) > 0 {
				first = tc.wantFields[0]
			}
			e := wantError(t, res, "BAD_USER_INPUT", first)
			if tc.wantFields != nil {
				got := violationFieldsOf(t, e)
				if !slices.Equal(sorted(got), sorted(tc.wantFields)) {
					t.Errorf("violations = %q, want %q", got, tc.wantFields)
				}
			}
			if after := env.CountRows(t, "tasks"); after != before {
				t.Errorf("tasks rows %d -> %d: a refused input was written", before, after)
			}
		})
	}

	// The boundaries themselves are accepted.
	ok := createTask(t, u, map[string]any{
		"title": strings.Repeat("é", 200), "description": strings.Repeat("d", 10000),
		"tags": tags21[:20], "dueAt": "2000-01-01T00:00:00Z",
	})
	if len([]rune(ok.Title)) != 200 || len(ok.Tags) != 20 || ok.Description == nil || len(*ok.Description) != 10000 {
		t.Errorf("boundary task = title %d chars, %d tags", len([]rune(ok.Title)), len(ok.Tags))
	}
	createTask(t, u, map[string]any{"title": strings.Repeat("a", 200), "dueAt": "2099-12-31T23:59:59Z"})
	if n := env.CountRows(t, "tasks"); n != 2 {
		t.Errorf("tasks rows = %d, want 2", n)
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

func TestUpdateTaskPartialSemantics(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	orig := createTask(t, u, map[string]any{
		"title": "Original", "description": "desc", "status": "TODO", "priority": "LOW",
		"dueAt": "2030-01-01T00:00:00Z", "tags": []string{"a", "b"},
	})

	// step applies input and checks that exactly want changed relative to the previous state, and
	// that version and updatedAt moved when something changed.
	prev := orig
	step := func(name string, input map[string]any, mutate func(*apiTask), changed bool) {
		t.Helper()
		got := updateTask(t, u, orig.ID, input)
		want := prev
		mutate(&want)
		if changed {
			want.Version = prev.Version + 1
			if !mustTime(t, got.UpdatedAt).After(mustTime(t, prev.UpdatedAt)) {
				t.Errorf("%s: updatedAt %s did not move past %s", name, got.UpdatedAt, prev.UpdatedAt)
			}
		} else if got.UpdatedAt != prev.UpdatedAt {
			t.Errorf("%s: updatedAt moved %s -> %s without a change", name, prev.UpdatedAt, got.UpdatedAt)
		}
		want.UpdatedAt = got.UpdatedAt
		if !equalTasks(got, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", name, got, want)
		}
		if stored := getTask(t, u, orig.ID); !equalTasks(stored, got) {
			t.Errorf("%s: stored %+v differs from returned %+v", name, stored, got)
		}
		prev = got
	}
	str := func(s string) *string { return &s }

	step("empty input", map[string]any{}, func(*apiTask) {}, false)
	step("priority only", map[string]any{"priority": "HIGH"}, func(w *apiTask) { w.Priority = "HIGH" }, true)
	step("title only, trimmed", map[string]any{"title": "  Renamed "}, func(w *apiTask) { w.Title = "Renamed" }, true)
	step("status only", map[string]any{"status": "DONE"}, func(w *apiTask) { w.Status = "DONE" }, true)
	step("description set", map[string]any{"description": "new\ntext"}, func(w *apiTask) { w.Description = str("new\ntext") }, true)
	step("description null clears", map[string]any{"description": nil}, func(w *apiTask) { w.Description = nil }, true)
	step("dueAt set", map[string]any{"dueAt": "2031-05-05T10:00:00Z"}, func(w *apiTask) { w.DueAt = str("2031-05-05T10:00:00Z") }, true)
	step("dueAt null clears", map[string]any{"dueAt": nil}, func(w *apiTask) { w.DueAt = nil }, true)
	step("tags replaced", map[string]any{"tags": []string{"X", "y", "x"}}, func(w *apiTask) { w.Tags = []string{"x", "y"} }, true)
	step("tags null clears", map[string]any{"tags": nil}, func(w *apiTask) { w.Tags = []string{} }, true)
	step("several at once", map[string]any{"title": "Both", "priority": "URGENT", "tags": []string{"z"}}, func(w *apiTask) {
		w.Title, w.Priority, w.Tags = "Both", "URGENT", []string{"z"}
	}, true)
	if prev.Version != 11 {
		t.Errorf("version after 10 changes = %d, want 11", prev.Version)
	}

	refused := []struct {
		name  string
		input map[string]any
		field string
	}{
		{"title null", map[string]any{"title": nil}, "input.title"},
		{"title null with a valid change", map[string]any{"title": nil, "priority": "LOW"}, "input.title"},
		{"title blank", map[string]any{"title": "   "}, "input.title"},
		{"status null", map[string]any{"status": nil}, "input.status"},
		{"priority null", map[string]any{"priority": nil}, "input.priority"},
		{"dueAt out of range", map[string]any{"dueAt": "2100-01-01T00:00:00Z"}, "input.dueAt"},
		{"bad tag", map[string]any{"tags": []string{"a b"}}, "input.tags[0]"},
		{"expectedVersion zero", map[string]any{"expectedVersion": 0, "title": "x"}, "input.expectedVersion"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			res := u.Do(t, updateTaskMutation, map[string]any{"id": orig.ID, "input": tc.input})
			wantError(t, res, "BAD_USER_INPUT", tc.field)
			if stored := getTask(t, u, orig.ID); !equalTasks(stored, prev) {
				t.Errorf("task changed by a refused update:\n got  %+v\n want %+v", stored, prev)
			}
		})
	}
	if got := getTask(t, u, orig.ID); got.CreatedAt != orig.CreatedAt {
		t.Errorf("createdAt changed: %s -> %s", orig.CreatedAt, got.CreatedAt)
	}
}

func equalTasks(a, b apiTask) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestTaskOptimisticConcurrency(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	task := createTask(t, u, map[string]any{"title": "v1"})

	v2 := updateTask(t, u, task.ID, map[string]any{"title": "v2", "expectedVersion": 1})
	if v2.Title != "v2" || v2.Version != 2 {
		t.Fatalf("update at current version = %+v, want title v2 version 2", v2)
	}

	for _, input := range []map[string]any{
		{"title": "stale", "expectedVersion": 1},
		{"title": "future", "expectedVersion": 3},
		{"expectedVersion": 1}, // nothing to change, but the version is still checked
	} {
		res := u.Do(t, updateTaskMutation, map[string]any{"id": task.ID, "input": input})
		wantError(t, res, "CONFLICT", "input.expectedVersion")
		if got := getTask(t, u, task.ID); got.Title != "v2" || got.Version != 2 || got.UpdatedAt != v2.UpdatedAt {
			t.Fatalf("after CONFLICT for %v: task = %+v, want unchanged v2 at version 2", input, got)
		}
	}

	// Another user cannot update or delete it: it answers like a missing task, even with the right version.
	other := env.Register(t, "Mallory")
	wantError(t, other.Do(t, updateTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{"title": "x", "expectedVersion": 2}}), "NOT_FOUND", "")
	wantError(t, other.Do(t, deleteTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{"expectedVersion": 2}}), "NOT_FOUND", "")

	res := u.Do(t, deleteTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{"expectedVersion": 1}})
	wantError(t, res, "CONFLICT", "input.expectedVersion")
	if n := env.CountRows(t, "tasks"); n != 1 {
		t.Fatalf("tasks rows after a refused delete = %d, want 1", n)
	}
	if got := getTask(t, u, task.ID); got.Version != 2 {
		t.Fatalf("task after refused delete = %+v", got)
	}

	var del struct {
		DeleteTask struct{ DeletedTaskID string }
	}
	u.Do(t, deleteTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{"expectedVersion": 2}}).Decode(t, &del)
	if del.DeleteTask.DeletedTaskID != task.ID {
		t.Errorf("deletedTaskId = %q, want %q", del.DeleteTask.DeletedTaskID, task.ID)
	}
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Errorf("tasks rows after delete = %d, want 0", n)
	}
	wantError(t, u.Do(t, taskQuery, map[string]any{"id": task.ID}), "NOT_FOUND", "")
	wantError(t, u.Do(t, updateTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{"title": "x"}}), "NOT_FOUND", "")
	wantError(t, u.Do(t, deleteTaskMutation, map[string]any{"id": task.ID}), "NOT_FOUND", "")

	// Without expectedVersion, delete just deletes.
	t2 := createTask(t, u, map[string]any{"title": "unguarded"})
	u.Do(t, deleteTaskMutation, map[string]any{"id": t2.ID}).Decode(t, &del)
	if n := env.CountRows(t, "tasks"); n != 0 {
		t.Errorf("tasks rows after unguarded delete = %d, want 0", n)
	}
}

func TestConcurrentUpdatesWithSameExpectedVersion(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")

	const rounds, writers = 3, 4
	for round := range rounds {
		task := createTask(t, u, map[string]any{"title": "start"})
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			out   = make([]testsupport.Response, writers)
		)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				out[i] = u.Do(t, updateTaskMutation, map[string]any{"id": task.ID, "input": map[string]any{
					"title": "writer " + string(rune('A'+i)), "expectedVersion": 1,
				}})
			}()
		}
		close(start)
		wg.Wait()

		winner := ""
		for i, res := range out {
			switch {
			case len(res.Errors) == 0:
				if winner != "" {
					t.Fatalf("round %d: two writers succeeded at the same expectedVersion", round)
				}
				var data struct{ UpdateTask struct{ Task apiTask } }
				res.Decode(t, &data)
				winner = data.UpdateTask.Task.Title
				if data.UpdateTask.Task.Version != 2 {
					t.Errorf("round %d: winner version = %d, want 2", round, data.UpdateTask.Task.Version)
				}
			default:
				if len(res.Errors) != 1 || res.Errors[0].Code() != "CONFLICT" {
					t.Errorf("round %d: writer %d errors = %+v, want one CONFLICT", round, i, res.Errors)
				}
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no writer succeeded", round)
		}
		if got := getTask(t, u, task.ID); got.Title != winner || got.Version != 2 {
			t.Fatalf("round %d: stored %q v%d, want the winner %q at v2", round, got.Title, got.Version, winner)
		}
	}
}

const filterQuery = `query($filter: TaskFilter) {
  tasks(first: 100, filter: $filter) { totalCount edges { node { title } } }
}`

func TestTaskFilters(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	other := env.Register(t, "Bob")

	at := func(s string) *time.Time { tm := mustTime(t, s); return &tm }
	str := func(s string) *string { return &s }
	for _, nt := range []db.NewTask{
		{Title: "Buy milk", Status: db.StatusTodo, Priority: db.PriorityLow, Tags: []string{"home", "shopping"}, DueAt: at("2030-01-10T00:00:00Z")},
		{Title: "Write report", Description: str("Quarterly MILK numbers"), Status: db.StatusInProgress, Priority: db.PriorityHigh, Tags: []string{"work"}, DueAt: at("2030-02-10T00:00:00Z")},
		{Title: "100% done", Status: db.StatusDone, Priority: db.PriorityUrgent, Tags: []string{"work"}},
		{Title: "1000 things", Status: db.StatusTodo, Priority: db.PriorityMedium, DueAt: at("2030-03-10T00:00:00Z")},
		{Title: "snake_case name", Status: db.StatusTodo, Priority: db.PriorityMedium},
		{Title: "snakeXcase name", Status: db.StatusTodo, Priority: db.PriorityMedium},
		{Title: `dir\x path`, Status: db.StatusTodo, Priority: db.PriorityLow},
	} {
		env.CreateTask(t, u.ID, nt)
	}
	// Another user's tasks never show up, whatever the filter.
	env.CreateTask(t, other.ID, db.NewTask{Title: "Buy milk too", Status: db.StatusTodo, Priority: db.PriorityLow, Tags: []string{"home", "work"}})

	tests := []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"no filter", nil, []string{"Buy milk", "Write report", "100% done", "1000 things", "snake_case name", "snakeXcase name", `dir\x path`}},
		{"status TODO", map[string]any{"status": []string{"TODO"}}, []string{"Buy milk", "1000 things", "snake_case name", "snakeXcase name", `dir\x path`}},
		{"status list", map[string]any{"status": []string{"IN_PROGRESS", "DONE"}}, []string{"Write report", "100% done"}},
		{"priority list", map[string]any{"priority": []string{"HIGH", "URGENT"}}, []string{"Write report", "100% done"}},
		{"priority LOW", map[string]any{"priority": []string{"LOW"}}, []string{"Buy milk", `dir\x path`}},
		{"tag", map[string]any{"tag": "work"}, []string{"Write report", "100% done"}},
		{"tag any case", map[string]any{"tag": "Shopping"}, []string{"Buy milk"}},
		{"tag unused", map[string]any{"tag": "nothing"}, nil},
		{"dueBefore is strict", map[string]any{"dueBefore": "2030-02-10T00:00:00Z"}, []string{"Buy milk"}},
		{"dueAfter is inclusive", map[string]any{"dueAfter": "2030-02-10T00:00:00Z"}, []string{"Write report", "1000 things"}},
		{"due range", map[string]any{"dueAfter": "2030-01-01T00:00:00Z", "dueBefore": "2030-03-01T00:00:00Z"}, []string{"Buy milk", "Write report"}},
		{"search title or description, any case", map[string]any{"search": "MiLk"}, []string{"Buy milk", "Write report"}},
		{"search percent is literal", map[string]any{"search": "100%"}, []string{"100% done"}},
		{"search lone percent", map[string]any{"search": "%"}, []string{"100% done"}},
		{"search underscore is literal", map[string]any{"search": "e_c"}, []string{"snake_case name"}},
		{"search backslash is literal", map[string]any{"search": `r\x`}, []string{`dir\x path`}},
		{"search trimmed", map[string]any{"search": "  report "}, []string{"Write report"}},
		{"search no match", map[string]any{"search": "zebra"}, nil},
		// "report" ends the title and "Quarterly" starts the description: not a substring of either.
		{"search does not span title and description", map[string]any{"search": "report quarterly"}, nil},
		{"combined status tag search", map[string]any{"status": []string{"TODO"}, "tag": "home", "search": "milk"}, []string{"Buy milk"}},
		{"combined priority search", map[string]any{"priority": []string{"MEDIUM"}, "search": "snake"}, []string{"snake_case name", "snakeXcase name"}},
		{"combined excluding everything", map[string]any{"status": []string{"DONE"}, "tag": "home"}, nil},
		{"combined tag and due", map[string]any{"tag": "work", "dueBefore": "2031-01-01T00:00:00Z"}, []string{"Write report"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var data struct {
				Tasks struct {
					TotalCount int
					Edges      []struct{ Node struct{ Title string } }
				}
			}
			u.Do(t, filterQuery, map[string]any{"filter": tc.filter}).Decode(t, &data)
			var got []string
			for _, e := range data.Tasks.Edges {
				got = append(got, e.Node.Title)
			}
			if !slices.Equal(sorted(got), sorted(tc.want)) {
				t.Errorf("titles = %q, want %q", got, tc.want)
			}
			if data.Tasks.TotalCount != len(tc.want) {
				t.Errorf("totalCount = %d, want %d", data.Tasks.TotalCount, len(tc.want))
			}
		})
	}

	refused := []struct {
		name   string
		filter map[string]any
		field  string
	}{
		{"dueAfter equal to dueBefore", map[string]any{"dueAfter": "2030-01-01T00:00:00Z", "dueBefore": "2030-01-01T00:00:00Z"}, "filter.dueAfter"},
		{"dueAfter after dueBefore", map[string]any{"dueAfter": "2030-05-01T00:00:00Z", "dueBefore": "2030-01-01T00:00:00Z"}, "filter.dueAfter"},
		{"search 201 chars", map[string]any{"search": strings.Repeat("a", 201)}, "filter.search"},
		{"search blank", map[string]any{"search": "  "}, "filter.search"},
		{"search with NUL", map[string]any{"search": "a\x00b"}, "filter.search"},
		{"bad tag", map[string]any{"tag": "a b"}, "filter.tag"},
		{"tag with NUL", map[string]any{"tag": "a\x00"}, "filter.tag"},
		{"unknown status", map[string]any{"status": []string{"BLOCKED"}}, ""},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, u.Do(t, filterQuery, map[string]any{"filter": tc.filter}), "BAD_USER_INPUT", tc.field)
		})
	}
	// 200 characters is still a valid search.
	var data struct{ Tasks struct{ TotalCount int } }
	u.Do(t, filterQuery, map[string]any{"filter": map[string]any{"search": strings.Repeat("é", 200)}}).Decode(t, &data)
	if data.Tasks.TotalCount != 0 {
		t.Errorf("200-char search totalCount = %d, want 0", data.Tasks.TotalCount)
	}
}

const countsQuery = `{ me { taskCounts { total todo inProgress done overdue } } }`

type taskCounts struct{ Total, Todo, InProgress, Done, Overdue int }

func TestTaskCounts(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Ada")
	other := env.Register(t, "Bob")

	counts := func(u *testsupport.User) taskCounts {
		t.Helper()
		var data struct {
			Me struct{ TaskCounts taskCounts }
		}
		u.Do(t, countsQuery, nil).Decode(t, &data)
		return data.Me.TaskCounts
	}
	if got := counts(u); got != (taskCounts{}) {
		t.Fatalf("counts without tasks = %+v, want zeros", got)
	}

	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	future := time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, nt := range []db.NewTask{
		{Title: "todo, no due", Status: db.StatusTodo},
		{Title: "todo, overdue", Status: db.StatusTodo, DueAt: &past},
		{Title: "todo, due later", Status: db.StatusTodo, DueAt: &future},
		{Title: "in progress, overdue", Status: db.StatusInProgress, DueAt: &past},
		{Title: "in progress", Status: db.StatusInProgress},
		{Title: "done, past due: not overdue", Status: db.StatusDone, DueAt: &past},
	} {
		env.CreateTask(t, u.ID, nt)
	}
	env.CreateTask(t, other.ID, db.NewTask{Title: "someone else's overdue", Status: db.StatusTodo, DueAt: &past})

	if got, want := counts(u), (taskCounts{Total: 6, Todo: 3, InProgress: 2, Done: 1, Overdue: 2}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	if got, want := counts(other), (taskCounts{Total: 1, Todo: 1, Overdue: 1}); got != want {
		t.Errorf("other's counts = %+v, want %+v", got, want)
	}

	// Counts follow API writes: finishing the overdue task removes it from overdue.
	var list struct {
		Tasks struct{ Edges []struct{ Node apiTask } }
	}
	u.Do(t, `query($f: TaskFilter) { tasks(filter: $f) { edges { node { `+taskFields+` } } } }`,
		map[string]any{"f": map[string]any{"search": "todo, overdue"}}).Decode(t, &list)
	if len(list.Tasks.Edges) != 1 {
		t.Fatalf("found %d tasks, want 1", len(list.Tasks.Edges))
	}
	updateTask(t, u, list.Tasks.Edges[0].Node.ID, map[string]any{"status": "DONE"})
	if got, want := counts(u), (taskCounts{Total: 6, Todo: 2, InProgress: 2, Done: 2, Overdue: 1}); got != want {
		t.Errorf("counts after finishing an overdue task = %+v, want %+v", got, want)
	}
}
