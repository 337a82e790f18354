package db_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cursor"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// sqlRecorder remembers the statements a store runs so the test can EXPLAIN exactly those.
type sqlRecorder struct {
	mu   sync.Mutex
	sql  []string
	args [][]any
}

func (r *sqlRecorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sql, r.args = append(r.sql, d.SQL), append(r.args, d.Args)
	return ctx
}
func (r *sqlRecorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Pages after a cursor are read in a batch (the page and the EXISTS for the other side).
func (r *sqlRecorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *sqlRecorder) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sql, r.args = append(r.sql, d.SQL), append(r.args, d.Args)
}
func (r *sqlRecorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (r *sqlRecorder) last(t *testing.T, prefix string) (string, []any) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.sql) - 1; i >= 0; i-- {
		if strings.HasPrefix(strings.TrimSpace(r.sql[i]), prefix) {
			return r.sql[i], r.args[i]
		}
	}
	t.Fatalf("no statement starting with %q was run", prefix)
	return "", nil
}

// TestEveryTaskQueryPathHasAnIndex runs each list query the API offers and checks with EXPLAIN that
// PostgreSQL can answer it from the index meant for it (sequential scans disabled, so a missing index
// shows up as a plan without it).
func TestEveryTaskQueryPathHasAnIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: seeds thousands of rows to read query plans")
	}
	database := testsupport.NewDatabase(t)
	rec := &sqlRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := db.OpenPool(ctx, database.URL, db.PoolOptions{MaxConns: 2, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store := db.New(pool, cursor.NewCodec([]byte("index-test-secret-index-test-secret")))
	user, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "Ix", Email: "ix@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	assignee, err := store.Stores().Users.Create(ctx, db.NewUser{Name: "As", Email: "as@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// Realistic statistics: many tasks, rare tags, rare search hits and few due dates in range, so
	// the planner's choice reflects the indexes rather than an empty table. One task in ten is
	// assigned (to the second user); the rest have no assignee.
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, status, priority, due_at, tags, created_at, updated_at)
		SELECT gen_random_uuid(), $1, CASE WHEN g % 10 = 0 THEN $2::uuid END,
		       CASE WHEN g % 1000 = 0 THEN 'quarterly report ' || g ELSE 'task ' || g END,
		       (ARRAY['TODO','IN_PROGRESS','DONE'])[1 + g % 3], g % 4,
		       '2031-01-01'::timestamptz + g * interval '1 hour',
		       CASE WHEN g % 1000 = 0 THEN ARRAY['work'] ELSE ARRAY['misc', 'tag' || (g % 50)] END,
		       now() - g * interval '1 minute', now() - g * interval '30 seconds'
		FROM generate_series(1, 30000) g`, user.ID, assignee.ID); err != nil {
		t.Fatal(err)
	}
	// Users too, with rare search hits and admins. Test databases are reused, emptied: whatever
	// statistics an earlier test left must not decide the plans, so every table read here is analyzed.
	if _, err := pool.Exec(ctx, `
		INSERT INTO users (id, name, email, role, password_hash)
		SELECT gen_random_uuid(), CASE WHEN g % 3000 = 0 THEN 'report writer ' || g ELSE 'user ' || g END,
		       'u' || g || '@example.com', CASE WHEN g % 50 = 0 THEN 'ADMIN' ELSE 'USER' END, 'x'
		FROM generate_series(1, 30000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE tasks; ANALYZE users`); err != nil {
		t.Fatal(err)
	}
	tag, search, due := "work", "report", time.Date(2031, 1, 2, 0, 0, 0, 0, time.UTC)
	role := policy.RoleAdmin
	assigned := &db.TaskFilter{AssignedToMe: new(true)}
	var anyTask uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT id FROM tasks LIMIT 1`).Scan(&anyTask); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		run   func() error
		index string
	}{
		{"order CREATED_AT", func() error { return listTasks(ctx, store, user.ID, nil, db.TaskOrderCreatedAt) }, "tasks_owner_created_at_idx"},
		{"order UPDATED_AT", func() error { return listTasks(ctx, store, user.ID, nil, db.TaskOrderUpdatedAt) }, "tasks_owner_updated_at_idx"},
		{"order DUE_AT", func() error { return listTasks(ctx, store, user.ID, nil, db.TaskOrderDueAt) }, "tasks_owner_due_at_idx"},
		{"order PRIORITY", func() error { return listTasks(ctx, store, user.ID, nil, db.TaskOrderPriority) }, "tasks_owner_priority_idx"},
		{"filter tag", func() error {
			return listTasks(ctx, store, user.ID, &db.TaskFilter{Tag: &tag}, db.TaskOrderCreatedAt)
		}, "tasks_tags_idx"},
		{"filter search", func() error {
			return listTasks(ctx, store, user.ID, &db.TaskFilter{Search: &search}, db.TaskOrderCreatedAt)
		}, "tasks_search_trgm_idx"},
		{"filter due range", func() error {
			return listTasks(ctx, store, user.ID, &db.TaskFilter{DueBefore: &due}, db.TaskOrderCreatedAt)
		}, "tasks_owner_due_at_range_idx"},
		// tasks(filter: {assignedToMe: true}): the partial assignee indexes, one per orderBy.
		{"assigned order CREATED_AT", func() error { return listTasks(ctx, store, assignee.ID, assigned, db.TaskOrderCreatedAt) }, "tasks_assignee_created_at_idx"},
		{"assigned order UPDATED_AT", func() error { return listTasks(ctx, store, assignee.ID, assigned, db.TaskOrderUpdatedAt) }, "tasks_assignee_updated_at_idx"},
		{"assigned order DUE_AT", func() error { return listTasks(ctx, store, assignee.ID, assigned, db.TaskOrderDueAt) }, "tasks_assignee_due_at_idx"},
		{"assigned order PRIORITY", func() error { return listTasks(ctx, store, assignee.ID, assigned, db.TaskOrderPriority) }, "tasks_assignee_priority_idx"},
		{"assigned totalCount", func() error {
			conn, err := store.Stores().Tasks.List(ctx, db.TaskScope{UserID: assignee.ID, Assigned: true}, assigned, nil, db.PageArgs{})
			if err == nil {
				_, err = store.Stores().Tasks.Count(ctx, conn)
			}
			return err
		}, "tasks_assignee_"},
		{"task by id", func() error {
			_, err := store.Stores().Tasks.Get(ctx, anyTask)
			if apperr.CodeOf(err) == apperr.NotFound {
				return nil
			}
			return err
		}, "tasks_pkey"},
		{"task counts", func() error {
			_, err := store.Stores().Tasks.CountsByOwners(ctx, []uuid.UUID{user.ID})
			return err
		}, "tasks_owner_status_idx"},
		{"users by name", func() error {
			_, err := store.Stores().Users.List(ctx, nil, &db.UserOrder{Field: db.UserOrderName, Direction: db.Asc}, db.PageArgs{})
			return err
		}, "users_name_id_idx"},
		{"users search", func() error {
			_, err := store.Stores().Users.List(ctx, &db.UserFilter{Search: &search, Role: &role}, nil, db.PageArgs{})
			return err
		}, "users_search_trgm_idx"},
		{"login by email", func() error {
			_, err := store.Stores().Users.ByEmail(ctx, "IX@example.com")
			return err
		}, "users_email_lower_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(); err != nil {
				t.Fatal(err)
			}
			sql, args := rec.last(t, "SELECT")
			plan := explain(ctx, t, pool, sql, args)
			if !strings.Contains(plan, tc.index) {
				t.Fatalf("plan for %q does not use %s:\n%s", sql, tc.index, plan)
			}
		})
	}

	// Deleting a user unassigns their tasks (ON DELETE SET NULL): PostgreSQL's referential action runs
	// this statement, which must not scan the whole table.
	t.Run("deleting a user unassigns through an assignee index", func(t *testing.T) {
		sql := `UPDATE ONLY tasks SET assignee_id = NULL WHERE $1 OPERATOR(pg_catalog.=) assignee_id`
		if plan := explain(ctx, t, pool, sql, []any{assignee.ID}); !strings.Contains(plan, "tasks_assignee_") {
			t.Fatalf("plan for %q uses no assignee index:\n%s", sql, plan)
		}
	})

	// Pages after a cursor: the page itself and the EXISTS for the other side both carry the keyset
	// condition on (key, id), and both must stay on the list's index.
	for _, tc := range []struct {
		field db.TaskOrderField
		index string
	}{
		{db.TaskOrderCreatedAt, "tasks_assignee_created_at_idx"},
		{db.TaskOrderUpdatedAt, "tasks_assignee_updated_at_idx"},
		{db.TaskOrderDueAt, "tasks_assignee_due_at_idx"},
		{db.TaskOrderPriority, "tasks_assignee_priority_idx"},
	} {
		for _, dir := range []db.Direction{db.Asc, db.Desc} {
			t.Run(fmt.Sprintf("assigned order %s %s after a cursor", tc.field, dir), func(t *testing.T) {
				if err := listTasksAfter(ctx, store, assignee.ID, assigned, db.TaskOrder{Field: tc.field, Direction: dir}); err != nil {
					t.Fatal(err)
				}
				for _, stmt := range []string{"SELECT id,", "SELECT EXISTS"} {
					sql, args := rec.last(t, stmt)
					if !strings.Contains(sql, ", id) ") || !strings.Contains(sql, "assignee_id = $1") {
						t.Fatalf("statement %q is not an assigned page after a cursor", sql)
					}
					if plan := explain(ctx, t, pool, sql, args); !strings.Contains(plan, tc.index) {
						t.Fatalf("plan for %q does not use %s:\n%s", sql, tc.index, plan)
					}
				}
			})
		}
	}
}

// scopeFor is the list a filter asks of a user: their own tasks, or those assigned to them.
func scopeFor(user uuid.UUID, f *db.TaskFilter) db.TaskScope {
	return db.TaskScope{UserID: user, Assigned: f.AssignedOnly()}
}

func listTasks(ctx context.Context, store *db.DB, user uuid.UUID, f *db.TaskFilter, field db.TaskOrderField) error {
	_, err := store.Stores().Tasks.List(ctx, scopeFor(user, f), f, &db.TaskOrder{Field: field, Direction: db.Asc}, db.PageArgs{})
	return err
}

// listTasksAfter reads a second page, so the keyset condition on (key, id) is part of the statement.
func listTasksAfter(ctx context.Context, store *db.DB, viewer uuid.UUID, f *db.TaskFilter, order db.TaskOrder) error {
	first := 5
	conn, err := store.Stores().Tasks.List(ctx, scopeFor(viewer, f), f, &order, db.PageArgs{First: &first})
	if err != nil {
		return err
	}
	_, err = store.Stores().Tasks.List(ctx, scopeFor(viewer, f), f, &order, db.PageArgs{First: &first, After: conn.PageInfo.EndCursor})
	return err
}

func explain(ctx context.Context, t *testing.T, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, sql string, args []any) string {
	t.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	var plan []map[string]any
	if err := tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&plan); err != nil {
		t.Fatalf("explain %q: %v", sql, err)
	}
	b, _ := json.Marshal(plan)
	return string(b)
}
