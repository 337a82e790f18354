package db_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

// ListWithOwners reads the page List reads (rows, order, cursors, page info) for every order, in
// both directions and on both sides of a cursor, and with it each owner once, as Users.ByIDs reads
// them: the owners come joined in the page's statement, so the order must survive the join.
func TestListWithOwnersIsListPlusItsOwners(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: database")
	}
	ctx, pool, store := openStores(t)
	var owners []*db.User
	for _, name := range []string{"Ada", "Grace", "Edsger"} {
		u, err := store.Users.Create(ctx, db.NewUser{Name: name, Email: name + "@example.com", PasswordHash: "h-" + name})
		if err != nil {
			t.Fatal(err)
		}
		owners = append(owners, u)
	}
	viewer := owners[0]
	// The viewer owns 9 tasks and is assigned 9 of the others' (so the assigned list has two owners).
	// Equal sort keys (priority, due dates) make the id tie-break decide the order.
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, status, priority, due_at, created_at, updated_at)
		SELECT gen_random_uuid(), CASE WHEN g <= 9 THEN $1::uuid WHEN g % 2 = 0 THEN $2::uuid ELSE $3::uuid END,
		       CASE WHEN g > 9 THEN $1::uuid END, 'task ' || g, 'TODO', g % 3,
		       CASE WHEN g % 4 = 0 THEN NULL ELSE now() + (g % 5) * interval '1 hour' END,
		       now() - g * interval '1 second', now() - (g % 7) * interval '1 minute'
		FROM generate_series(1, 18) g`, viewer.ID, owners[1].ID, owners[2].ID); err != nil {
		t.Fatal(err)
	}
	assigned := true
	scopes := map[string]struct {
		scope  db.TaskScope
		filter *db.TaskFilter
		owners int
	}{
		"own":      {db.TaskScope{UserID: viewer.ID}, nil, 1},
		"assigned": {db.TaskScope{UserID: viewer.ID, Assigned: true}, &db.TaskFilter{AssignedToMe: &assigned}, 2},
	}
	fields := []db.TaskOrderField{db.TaskOrderCreatedAt, db.TaskOrderUpdatedAt, db.TaskOrderDueAt, db.TaskOrderPriority}
	for name, sc := range scopes {
		for _, field := range fields {
			for _, dir := range []db.Direction{db.Asc, db.Desc} {
				order := &db.TaskOrder{Field: field, Direction: dir}
				first, last := 4, 4
				pages := []db.PageArgs{{First: &first}}
				plain, err := store.Tasks.List(ctx, sc.scope, sc.filter, order, pages[0])
				if err != nil {
					t.Fatal(err)
				}
				if plain.Owners() != nil {
					t.Fatal("List read owners")
				}
				pages = append(pages, db.PageArgs{First: &first, After: plain.PageInfo.EndCursor},
					db.PageArgs{Last: &last, Before: plain.PageInfo.EndCursor}, db.PageArgs{Last: &last})
				for i, args := range pages {
					want, err := store.Tasks.List(ctx, sc.scope, sc.filter, order, args)
					if err != nil {
						t.Fatal(err)
					}
					got, err := store.Tasks.ListWithOwners(ctx, sc.scope, sc.filter, order, args)
					if err != nil {
						t.Fatalf("%s by %s %s, page %d: %v", name, field, dir, i, err)
					}
					if !reflect.DeepEqual(got.Edges, want.Edges) || !reflect.DeepEqual(got.PageInfo, want.PageInfo) {
						t.Errorf("%s by %s %s, page %d: ListWithOwners differs from List:\n got %+v\nwant %+v",
							name, field, dir, i, got.Edges, want.Edges)
					}
					checkOwners(t, store, got)
				}
			}
		}
		// The whole list: every owner of it, once.
		all := 50
		conn, err := store.Tasks.ListWithOwners(ctx, sc.scope, sc.filter, nil, db.PageArgs{First: &all})
		if err != nil {
			t.Fatal(err)
		}
		if len(conn.Edges) != 9 || len(conn.Owners()) != sc.owners {
			t.Errorf("%s: %d tasks and %d owners, want 9 and %d", name, len(conn.Edges), len(conn.Owners()), sc.owners)
		}
	}
}

// checkOwners checks that conn's owners are its tasks' owners, each once, as Users.ByIDs reads them.
func checkOwners(t *testing.T, store db.Stores, conn *db.TaskConnection) {
	t.Helper()
	var ids []uuid.UUID
	seen := map[uuid.UUID]bool{}
	for _, e := range conn.Edges {
		if !seen[e.Node.OwnerID] {
			seen[e.Node.OwnerID] = true
			ids = append(ids, e.Node.OwnerID)
		}
	}
	want, err := store.Users.ByIDs(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	got := conn.Owners()
	if got == nil || len(got) != len(want) {
		t.Fatalf("owners %+v, want %+v", got, want)
	}
	byID := map[uuid.UUID]db.User{}
	for _, u := range want {
		byID[u.ID] = u
	}
	for _, u := range got {
		if w, ok := byID[u.ID]; !ok || !reflect.DeepEqual(*u, w) {
			t.Errorf("owner %+v, want %+v", *u, w)
		}
		delete(byID, u.ID)
	}
}
