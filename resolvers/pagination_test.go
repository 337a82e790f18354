package resolvers_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const pageQuery = `query($first: Int, $after: String, $last: Int, $before: String, $order: TaskOrder, $filter: TaskFilter) {
  tasks(first: $first, after: $after, last: $last, before: $before, orderBy: $order, filter: $filter) {
    totalCount
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}`

type pageResult struct {
	Tasks struct {
		TotalCount int
		Edges      []struct {
			Cursor string
			Node   struct{ ID string }
		}
		PageInfo struct {
			HasNextPage, HasPreviousPage bool
			StartCursor, EndCursor       *string
		}
	}
}

func (p pageResult) ids() []string {
	out := make([]string, len(p.Tasks.Edges))
	for i, e := range p.Tasks.Edges {
		out[i] = e.Node.ID
	}
	return out
}

// seedTasks inserts n tasks with many ties on every sort key (3 per created_at minute, 4 priorities,
// repeating due dates, every fifth without a due date) so the id tie-break is exercised.
func seedTasks(t *testing.T, env *testsupport.Env, owner uuid.UUID, n int) {
	t.Helper()
	env.DB.SeedTasks(t, `
		INSERT INTO tasks (id, owner_id, title, priority, due_at, created_at, updated_at)
		SELECT gen_random_uuid(), $1, 'task ' || g, g % 4,
		       CASE WHEN g % 5 = 0 THEN NULL ELSE '2030-01-01'::timestamptz + (g % 37) * interval '1 day' END,
		       '2026-01-01'::timestamptz + (g / 3) * interval '1 minute',
		       '2026-06-01'::timestamptz + ((g * 7) % 50) * interval '1 hour'
		FROM generate_series(1, $2::int) g`, owner, n)
}

type sortRow struct {
	id               uuid.UUID
	created, updated time.Time
	due              *time.Time
	priority         int16
}

// expectedOrder computes, independently of the server's SQL, the order the API promises: by the
// sort key (missing due dates last in ASC), then by id, both in the requested direction.
func expectedOrder(t *testing.T, env *testsupport.Env, owner uuid.UUID, field db.TaskOrderField, dir db.Direction) []string {
	t.Helper()
	return expectedOrderOf(t, env, "owner_id", owner, field, dir)
}

// expectedOrderOf is expectedOrder for the tasks whose column (owner_id or assignee_id) is user.
func expectedOrderOf(t *testing.T, env *testsupport.Env, column string, user uuid.UUID, field db.TaskOrderField, dir db.Direction) []string {
	t.Helper()
	rows, err := env.DB.Pool.Query(context.Background(),
		`SELECT id, created_at, updated_at, due_at, priority FROM tasks WHERE `+column+` = $1`, user)
	if err != nil {
		t.Fatal(err)
	}
	var all []sortRow
	for rows.Next() {
		var r sortRow
		if err := rows.Scan(&r.id, &r.created, &r.updated, &r.due, &r.priority); err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	key := func(a, b sortRow) int {
		switch field {
		case db.TaskOrderCreatedAt:
			return a.created.Compare(b.created)
		case db.TaskOrderUpdatedAt:
			return a.updated.Compare(b.updated)
		case db.TaskOrderPriority:
			return cmp.Compare(a.priority, b.priority)
		case db.TaskOrderDueAt:
			switch {
			case a.due == nil && b.due == nil:
				return 0
			case a.due == nil:
				return 1
			case b.due == nil:
				return -1
			}
			return a.due.Compare(*b.due)
		}
		t.Fatalf("unknown field %s", field)
		return 0
	}
	slices.SortFunc(all, func(a, b sortRow) int {
		c := cmp.Or(key(a, b), bytes.Compare(a.id[:], b.id[:]))
		if dir == db.Desc {
			return -c
		}
		return c
	})
	out := make([]string, len(all))
	for i, r := range all {
		out[i] = globalid.Encode(globalid.KindTask, r.id)
	}
	return out
}

func fetchPage(t *testing.T, u *testsupport.User, vars map[string]any) pageResult {
	t.Helper()
	var p pageResult
	u.Do(t, pageQuery, vars).Decode(t, &p)
	return p
}

func orderVars(field db.TaskOrderField, dir db.Direction) map[string]any {
	return map[string]any{"field": string(field), "direction": string(dir)}
}

func TestPaginationWalksEveryOrderBothWays(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: pages through thousands of rows in every order")
	}
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Walker")
	const total, size = 260, 23
	seedTasks(t, env, u.ID, total)

	for _, field := range []db.TaskOrderField{db.TaskOrderCreatedAt, db.TaskOrderUpdatedAt, db.TaskOrderDueAt, db.TaskOrderPriority} {
		for _, dir := range []db.Direction{db.Asc, db.Desc} {
			t.Run(fmt.Sprintf("%s_%s", field, dir), func(t *testing.T) {
				want := expectedOrder(t, env, u.ID, field, dir)
				order := orderVars(field, dir)

				// Forward: first/after until hasNextPage is false.
				var got []string
				var after any
				for page := 0; ; page++ {
					p := fetchPage(t, u, map[string]any{"first": size, "after": after, "order": order})
					if p.Tasks.TotalCount != total {
						t.Fatalf("totalCount = %d, want %d", p.Tasks.TotalCount, total)
					}
					if p.Tasks.PageInfo.HasPreviousPage != (page > 0) {
						t.Fatalf("page %d: hasPreviousPage = %v", page, p.Tasks.PageInfo.HasPreviousPage)
					}
					got = append(got, p.ids()...)
					if !p.Tasks.PageInfo.HasNextPage {
						break
					}
					if len(p.Tasks.Edges) != size || *p.Tasks.PageInfo.EndCursor != p.Tasks.Edges[size-1].Cursor {
						t.Fatalf("page %d: %d edges, endCursor mismatch", page, len(p.Tasks.Edges))
					}
					after = *p.Tasks.PageInfo.EndCursor
				}
				if !slices.Equal(got, want) {
					t.Fatalf("forward walk differs from expected order (got %d ids, want %d)", len(got), len(want))
				}

				// Backward: last/before from the end until hasPreviousPage is false.
				var back []string
				var before any
				for page := 0; ; page++ {
					p := fetchPage(t, u, map[string]any{"last": size, "before": before, "order": order})
					if p.Tasks.PageInfo.HasNextPage != (page > 0) {
						t.Fatalf("backward page %d: hasNextPage = %v", page, p.Tasks.PageInfo.HasNextPage)
					}
					back = append(p.ids(), back...)
					if !p.Tasks.PageInfo.HasPreviousPage {
						break
					}
					before = *p.Tasks.PageInfo.StartCursor
				}
				if !slices.Equal(back, want) {
					t.Fatalf("backward walk differs from expected order (got %d ids, want %d)", len(back), len(want))
				}
			})
		}
	}
}

func TestPaginationStableUnderInsertsAndDeletes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: pages through thousands of rows under concurrent writes")
	}
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Churn")
	seedTasks(t, env, u.ID, 250)

	for _, tc := range []struct {
		field    db.TaskOrderField
		dir      db.Direction
		backward bool
	}{
		{db.TaskOrderCreatedAt, db.Desc, false},
		{db.TaskOrderUpdatedAt, db.Asc, true},
		{db.TaskOrderDueAt, db.Asc, false},
		{db.TaskOrderPriority, db.Desc, true},
	} {
		t.Run(fmt.Sprintf("%s_%s_backward=%v", tc.field, tc.dir, tc.backward), func(t *testing.T) {
			original := expectedOrder(t, env, u.ID, tc.field, tc.dir)
			deleted := map[string]bool{}
			seen := map[string]int{}
			var cursor any
			for page := 0; page < 100; page++ {
				vars := map[string]any{"order": orderVars(tc.field, tc.dir)}
				if tc.backward {
					vars["last"], vars["before"] = 20, cursor
				} else {
					vars["first"], vars["after"] = 20, cursor
				}
				p := fetchPage(t, u, vars)
				for _, id := range p.ids() {
					seen[id]++
				}
				more := p.Tasks.PageInfo.HasNextPage
				next := p.Tasks.PageInfo.EndCursor
				if tc.backward {
					more, next = p.Tasks.PageInfo.HasPreviousPage, p.Tasks.PageInfo.StartCursor
				}
				if !more {
					break
				}
				cursor = *next
				// Between pages: new tasks arrive (sorting anywhere) and the row under the cursor is deleted.
				for i := range 3 {
					due := time.Date(2030, 1, 1+(page*3+i)%40, 0, 0, 0, 0, time.UTC)
					env.CreateTask(t, u.ID, db.NewTask{Title: fmt.Sprintf("new %d-%d", page, i), Priority: db.Priority(i % 4), DueAt: &due})
				}
				edge := p.Tasks.Edges[len(p.Tasks.Edges)-1]
				if tc.backward {
					edge = p.Tasks.Edges[0]
				}
				res := u.Do(t, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": edge.Node.ID})
				if len(res.Errors) > 0 {
					t.Fatalf("delete: %+v", res.Errors)
				}
				deleted[edge.Node.ID] = true
			}
			for _, id := range original {
				if seen[id] != 1 {
					t.Fatalf("original task %s seen %d times, want exactly once", id, seen[id])
				}
			}
			for id, n := range seen {
				if n > 1 {
					t.Fatalf("task %s seen %d times", id, n)
				}
			}
			if len(deleted) < 5 {
				t.Fatalf("only %d pages walked; the churn was not exercised", len(deleted))
			}
		})
	}
}

func TestCursorsAreValidated(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	a := env.Register(t, "Alice")
	b := env.Register(t, "Bob")
	seedTasks(t, env, a.ID, 30)
	seedTasks(t, env, b.ID, 30)

	created := orderVars(db.TaskOrderCreatedAt, db.Asc)
	first := fetchPage(t, a, map[string]any{"first": 5, "order": created})
	cursor := *first.Tasks.PageInfo.EndCursor
	// A cursor is base64url: swapping one character keeps it decodable but breaks the signature.
	swap := "A"
	if cursor[10:11] == "A" {
		swap = "B"
	}
	tampered := cursor[:10] + swap + cursor[11:]

	cases := []struct {
		name string
		user *testsupport.User
		vars map[string]any
	}{
		{"tampered", a, map[string]any{"first": 5, "after": tampered, "order": created}},
		{"garbage", a, map[string]any{"first": 5, "after": "not a cursor"}},
		{"truncated", a, map[string]any{"first": 5, "after": cursor[:len(cursor)-4], "order": created}},
		{"foreign user", b, map[string]any{"first": 5, "after": cursor, "order": created}},
		{"other order", a, map[string]any{"first": 5, "after": cursor, "order": orderVars(db.TaskOrderPriority, db.Asc)}},
		{"other direction", a, map[string]any{"first": 5, "after": cursor, "order": orderVars(db.TaskOrderCreatedAt, db.Desc)}},
		{"other filter", a, map[string]any{"first": 5, "after": cursor, "order": created, "filter": map[string]any{"status": []string{"TODO"}}}},
		{"first zero", a, map[string]any{"first": 0}},
		{"first too big", a, map[string]any{"first": 101}},
		{"last negative", a, map[string]any{"last": -1}},
		{"first and last", a, map[string]any{"first": 5, "last": 5}},
		{"first with before", a, map[string]any{"first": 5, "before": cursor, "order": created}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.user.Do(t, pageQuery, tc.vars)
			if len(res.Errors) != 1 || res.Errors[0].Code() != "BAD_USER_INPUT" {
				t.Fatalf("errors = %+v, want one BAD_USER_INPUT", res.Errors)
			}
			if string(res.Data) != "null" {
				t.Fatalf("data = %s, want null (no rows leak)", res.Data)
			}
		})
	}

	t.Run("same cursor still works", func(t *testing.T) {
		p := fetchPage(t, a, map[string]any{"first": 5, "after": cursor, "order": created})
		if len(p.Tasks.Edges) != 5 || !p.Tasks.PageInfo.HasPreviousPage {
			t.Fatalf("got %d edges, hasPreviousPage %v", len(p.Tasks.Edges), p.Tasks.PageInfo.HasPreviousPage)
		}
	})
	t.Run("default page size is 20 and max 100", func(t *testing.T) {
		if p := fetchPage(t, a, map[string]any{}); len(p.Tasks.Edges) != 20 || !p.Tasks.PageInfo.HasNextPage {
			t.Fatalf("default page: %d edges", len(p.Tasks.Edges))
		}
		if p := fetchPage(t, a, map[string]any{"first": 100}); len(p.Tasks.Edges) != 30 || p.Tasks.PageInfo.HasNextPage {
			t.Fatalf("first 100 of 30: %d edges, hasNext %v", len(p.Tasks.Edges), p.Tasks.PageInfo.HasNextPage)
		}
	})
	t.Run("cursor message says why", func(t *testing.T) {
		res := b.Do(t, pageQuery, map[string]any{"first": 5, "after": cursor, "order": created})
		if !strings.Contains(res.Errors[0].Message, "different list") {
			t.Fatalf("message = %q", res.Errors[0].Message)
		}
	})
}
