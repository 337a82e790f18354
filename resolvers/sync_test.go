package resolvers_test

// Delta sync (Query.taskChanges): changes of the tasks the viewer may see, deletions and lost
// visibility, in commit order, paged; a transaction that commits late is never passed by a token;
// a sync loop converges to exactly the server's visible set; tokens older than the retention expire.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

const syncQuery = `query($since: String, $first: Int) {
  taskChanges(since: $since, first: $first) { syncToken hasMore changes { kind taskId version task { id title } } }
}`

type syncPage struct {
	SyncToken string
	HasMore   bool
	Changes   []struct {
		Kind, TaskID string
		Version      int
		Task         *struct{ ID, Title string }
	}
}

func syncOnce(t *testing.T, u *testsupport.User, since string, first int) syncPage {
	t.Helper()
	vars := map[string]any{"first": first}
	if since != "" {
		vars["since"] = since
	}
	var out struct{ TaskChanges syncPage }
	u.Do(t, syncQuery, vars).Decode(t, &out)
	return out.TaskChanges
}

// syncClient is what a client keeps: per task, the highest version it was told of, and whether it
// still has the task.
type syncClient struct {
	token string
	tasks map[string]syncCopy
}

type syncCopy struct {
	version int
	title   string
	gone    bool
}

func (c *syncClient) apply(kind, id string, version int, title string) {
	old, seen := c.tasks[id]
	gone := kind != "CHANGED"
	if seen && (old.version > version || (old.version == version && old.gone && !gone)) {
		return // an older change arriving after a newer one (another window)
	}
	c.tasks[id] = syncCopy{version: version, title: title, gone: gone}
}

func (c *syncClient) visible() map[string]string {
	out := map[string]string{}
	for id, cp := range c.tasks {
		if !cp.gone {
			out[id] = cp.title
		}
	}
	return out
}

func TestTaskChangesDeliversChangesDeletionsAndLostVisibility(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	owner := env.Register(t, "Owner")
	helper := env.Register(t, "Helper")
	ownerTok := syncOnce(t, owner, "", 10).SyncToken
	helperTok := syncOnce(t, helper, "", 10).SyncToken

	var created struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	owner.Do(t, `mutation($a: ID) { createTask(input: {title: "shared", assigneeId: $a}) { task { id } } }`,
		map[string]any{"a": helper.GlobalID}).Decode(t, &created)
	id := created.CreateTask.Task.ID
	var other struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	owner.Do(t, `mutation { createTask(input: {title: "mine"}) { task { id } } }`, nil).Decode(t, &other)
	owner.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {assigneeId: null}) { task { id } } }`, map[string]any{"id": id}).Decode(t, &struct{}{})
	owner.Do(t, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": other.CreateTask.Task.ID}).Decode(t, &struct{}{})

	// The owner: both created (one page of 1 at a time, so paging is exercised), one updated, one deleted.
	var kinds []string
	testenv.WaitForState(t, 20*time.Second, "the owner's four changes", func() (bool, string) {
		for {
			p := syncOnce(t, owner, ownerTok, 1)
			ownerTok = p.SyncToken
			for _, c := range p.Changes {
				kinds = append(kinds, c.Kind+":"+c.TaskID)
			}
			if !p.HasMore {
				break
			}
		}
		return len(kinds) >= 4, fmt.Sprint(kinds)
	})
	want := []string{"CHANGED:" + id, "CHANGED:" + other.CreateTask.Task.ID, "CHANGED:" + id, "DELETED:" + other.CreateTask.Task.ID}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("owner's changes = %v, want %v", kinds, want)
	}
	// The helper: the task arrived when assigned, and went away (REMOVED) when unassigned; the
	// owner's private task never shows.
	var hk []string
	testenv.WaitForState(t, 20*time.Second, "the helper's two changes", func() (bool, string) {
		p := syncOnce(t, helper, helperTok, 100)
		helperTok = p.SyncToken
		for _, c := range p.Changes {
			hk = append(hk, c.Kind+":"+c.TaskID)
		}
		return len(hk) >= 2, fmt.Sprint(hk)
	})
	if fmt.Sprint(hk) != fmt.Sprint([]string{"CHANGED:" + id, "REMOVED:" + id}) {
		t.Fatalf("helper's changes = %v", hk)
	}

	// Tokens are per user and sealed.
	if r := helper.Do(t, syncQuery, map[string]any{"since": ownerTok}); len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
		t.Fatalf("another user's token: %+v", r.Errors)
	}
	if r := owner.Do(t, syncQuery, map[string]any{"since": "garbage"}); len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
		t.Fatalf("a forged token: %+v", r.Errors)
	}
	if r := owner.Do(t, syncQuery, map[string]any{"first": 0}); len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
		t.Fatalf("first: 0: %+v", r.Errors)
	}
}

// A transaction that took its id first but commits last must not be passed: a reader by sequence
// alone would deliver the later commits and move its position past the slow one's changes.
func TestTaskChangesNeverPassesASlowTransaction(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Slow")
	tok := syncOnce(t, u, "", 100).SyncToken
	ctx := context.Background()

	slow, err := env.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck // committed below
	// The slow transaction writes first: the lowest seq and the lowest xid.
	var slowID uuid.UUID
	if err := slow.QueryRow(ctx, `INSERT INTO tasks (id, owner_id, title) VALUES (gen_random_uuid(), $1, 'slow') RETURNING id`, u.ID).Scan(&slowID); err != nil {
		t.Fatal(err)
	}
	fast := map[string]bool{}
	for i := range 3 {
		var d struct {
			CreateTask struct{ Task struct{ ID string } }
		}
		u.Do(t, `mutation($t: String!) { createTask(input: {title: $t}) { task { id } } }`, map[string]any{"t": fmt.Sprint("fast ", i)}).Decode(t, &d)
		fast[d.CreateTask.Task.ID] = true
	}
	seen := map[string]bool{}
	collect := func() {
		for {
			p := syncOnce(t, u, tok, 2)
			tok = p.SyncToken
			for _, c := range p.Changes {
				seen[c.TaskID] = true
			}
			if !p.HasMore {
				return
			}
		}
	}
	// While the slow transaction is open, sync as much as the server will give.
	for range 5 {
		collect()
	}
	if seen[globalid.Encode(globalid.KindTask, slowID)] {
		t.Fatal("an uncommitted change was delivered")
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForState(t, 30*time.Second, "every change, the slow one included", func() (bool, string) {
		collect()
		for id := range fast {
			if !seen[id] {
				return false, "missing a fast change"
			}
		}
		return seen[globalid.Encode(globalid.KindTask, slowID)], fmt.Sprintf("%d seen", len(seen))
	})
}

// Random operations by two users (create, retitle, assign, unassign, hand over, delete), with sync
// calls at random points between them, some while another transaction is held open: after the last
// commit, syncing converges to exactly the tasks the server shows the viewer.
func TestTaskChangesSyncLoopConverges(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	ctx := context.Background()
	svc := env.App.Services.Tasks
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 14))
		a, b := env.Register(t, fmt.Sprint("A", seed)), env.Register(t, fmt.Sprint("B", seed))
		users := []uuid.UUID{a.ID, b.ID}
		viewer := policy.Actor{UserID: a.ID, Role: policy.RoleUser}
		client := &syncClient{tasks: map[string]syncCopy{}}
		page, err := svc.Changes(ctx, viewer, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		client.token = page.Token
		sync := func() {
			for {
				first := 1 + rng.IntN(4)
				p, err := svc.Changes(ctx, viewer, client.token, &first)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				client.token = p.Token
				for _, c := range p.Changes {
					title := ""
					if c.Task != nil {
						title = c.Task.Title
					}
					client.apply(string(c.Kind), c.TaskID.String(), int(c.Version), title)
				}
				if !p.HasMore {
					return
				}
			}
		}
		var held pgx.Tx
		heldTouched := map[uuid.UUID]bool{} // rows the held transaction locked: others must not wait on them
		for step := range 40 {
			var ids []uuid.UUID
			rows, _ := env.DB.Pool.Query(ctx, `SELECT id FROM tasks WHERE owner_id = ANY($1) ORDER BY id`, users)
			ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			if err != nil {
				t.Fatal(err)
			}
			var q pgxExec = env.DB.Pool
			if held == nil && rng.IntN(8) == 0 {
				if held, err = env.DB.Pool.Begin(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if held != nil && rng.IntN(2) == 0 {
				q = held
			} else {
				ids = slices.DeleteFunc(ids, func(id uuid.UUID) bool { return heldTouched[id] })
			}
			pick := func() uuid.UUID {
				id := ids[rng.IntN(len(ids))]
				if q == held {
					heldTouched[id] = true
				}
				return id
			}
			who := users[rng.IntN(2)]
			switch op := rng.IntN(6); {
			case op == 0 || len(ids) == 0:
				_, err = q.Exec(ctx, `INSERT INTO tasks (id, owner_id, title) VALUES (gen_random_uuid(), $1, $2)`, who, fmt.Sprint("t", step))
			case op == 1:
				_, err = q.Exec(ctx, `UPDATE tasks SET title = $2, version = version + 1 WHERE id = $1`, pick(), fmt.Sprint("r", step))
			case op == 2:
				_, err = q.Exec(ctx, `UPDATE tasks SET assignee_id = $2, version = version + 1 WHERE id = $1`, pick(), who)
			case op == 3:
				_, err = q.Exec(ctx, `UPDATE tasks SET assignee_id = NULL, version = version + 1 WHERE id = $1`, pick())
			case op == 4:
				_, err = q.Exec(ctx, `UPDATE tasks SET owner_id = $2, version = version + 1 WHERE id = $1`, pick(), who)
			default:
				_, err = q.Exec(ctx, `DELETE FROM tasks WHERE id = $1`, pick())
			}
			if err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
			if held != nil && rng.IntN(4) == 0 {
				if err := held.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				held = nil
				clear(heldTouched)
			}
			if rng.IntN(3) == 0 {
				sync()
			}
		}
		if held != nil {
			if err := held.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		want := map[string]string{}
		rows, _ := env.DB.Pool.Query(ctx, `SELECT id, title FROM tasks WHERE owner_id = $1 OR assignee_id = $1`, a.ID)
		var id uuid.UUID
		var title string
		if _, err := pgx.ForEachRow(rows, []any{&id, &title}, func() error { want[id.String()] = title; return nil }); err != nil {
			t.Fatal(err)
		}
		testenv.WaitForState(t, 30*time.Second, fmt.Sprintf("seed %d: the client's set equals the server's", seed), func() (bool, string) {
			sync()
			got := client.visible()
			return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("client %v, server %v", got, want)
		})
	}
}

type pgxExec interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func TestTaskChangesTokenExpiresWithRetention(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	u := env.Register(t, "Old")
	ctx := context.Background()
	old := syncOnce(t, u, "", 10).SyncToken
	u.Do(t, `mutation { createTask(input: {title: "a"}) { task { id } } }`, nil).Decode(t, &struct{}{})
	env.Exec(t, `UPDATE task_changes SET changed_at = now() - interval '8 days'`)
	// Only changes below every running transaction are pruned (other tests' may hold it back).
	testenv.WaitFor(t, 30*time.Second, "the change to be pruned", func() bool {
		n, err := env.App.Services.Tasks.PruneChanges(ctx, 7*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	})
	r := u.Do(t, syncQuery, map[string]any{"since": old})
	if len(r.Errors) == 0 || r.Errors[0].Code() != string(apperr.SyncTokenExpired) {
		t.Fatalf("expired token: %+v", r.Errors)
	}
	// A fresh token works, and so do changes after the pruning.
	fresh := syncOnce(t, u, "", 10).SyncToken
	u.Do(t, `mutation { createTask(input: {title: "b"}) { task { id } } }`, nil).Decode(t, &struct{}{})
	testenv.WaitFor(t, 20*time.Second, "the new change", func() bool {
		p := syncOnce(t, u, fresh, 10)
		fresh = p.SyncToken
		return len(p.Changes) == 1 && p.Changes[0].Task.Title == "b"
	})
}
