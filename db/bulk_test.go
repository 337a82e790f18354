package db_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// keyRecorder is an Invalidator that remembers what was reported.
type keyRecorder struct {
	mu   sync.Mutex
	keys []db.EntityKey
}

func (r *keyRecorder) Invalidate(_ context.Context, keys []db.EntityKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, keys...)
}

func (r *keyRecorder) take() []db.EntityKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.keys
	r.keys = nil
	return out
}

type bulkFixture struct {
	ctx         context.Context
	database    *testsupport.Database
	store       *db.DB
	keys        *keyRecorder
	owner       uuid.UUID
	other       uuid.UUID
	requestedAt time.Time
}

// newBulkFixture makes an owner with n tasks created before requestedAt (every third one tagged
// "red" and IN_PROGRESS, the rest TODO), the same for another user, and 5 tasks of the owner
// created after requestedAt.
func newBulkFixture(t *testing.T, n int) *bulkFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	database := testsupport.NewDatabase(t)
	keys := &keyRecorder{}
	store := db.New(database.Pool, nil, db.WithInvalidator(keys))
	f := &bulkFixture{ctx: ctx, database: database, store: store, keys: keys}
	for i, name := range []string{"owner", "other"} {
		u, err := store.Stores().Users.Create(ctx, db.NewUser{Name: name, Email: name + "@example.com", PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			f.owner = u.ID
		} else {
			f.other = u.ID
		}
		if _, err := database.Pool.Exec(ctx, `
			INSERT INTO tasks (id, owner_id, title, status, tags, created_at)
			SELECT gen_random_uuid(), $1, 'task ' || g,
			       CASE WHEN g % 3 = 0 THEN 'IN_PROGRESS' ELSE 'TODO' END,
			       CASE WHEN g % 3 = 0 THEN ARRAY['red', 'x'] ELSE ARRAY['blue'] END,
			       now() - g * interval '1 second'
			FROM generate_series(1, $2::int) g`, u.ID, n); err != nil {
			t.Fatal(err)
		}
	}
	f.requestedAt = time.Now()
	if _, err := database.Pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, title, tags, created_at)
		SELECT gen_random_uuid(), $1, 'late ' || g, ARRAY['red'], now() + interval '1 hour'
		FROM generate_series(1, 5) g`, f.owner); err != nil {
		t.Fatal(err)
	}
	keys.take()
	return f
}

func (f *bulkFixture) scope(filter *db.TaskFilter) db.BulkScope {
	return db.BulkScope{Tasks: db.TaskScope{UserID: f.owner}, Filter: filter, RequestedAt: f.requestedAt}
}

// walk runs chunk after chunk (each in its own transaction) until the scope is done.
func (f *bulkFixture) walk(t *testing.T, sc db.BulkScope, patch *db.BulkTaskPatch) (chunks, matched, affected int) {
	t.Helper()
	chunks, matched, affected, err := f.tryWalk(sc, patch)
	if err != nil {
		t.Fatal(err)
	}
	return chunks, matched, affected
}

func (f *bulkFixture) tryWalk(sc db.BulkScope, patch *db.BulkTaskPatch) (chunks, matched, affected int, err error) {
	var after *db.TaskKey
	for {
		var c *db.BulkChunk
		err := f.store.InTx(f.ctx, func(s db.Stores) error {
			var err error
			if patch != nil {
				c, err = s.Tasks.UpdateChunk(f.ctx, sc, *patch, after, db.BulkChunkSize)
			} else {
				c, err = s.Tasks.DeleteChunk(f.ctx, sc, after, db.BulkChunkSize)
			}
			return err
		})
		if err != nil {
			return chunks, matched, affected, fmt.Errorf("chunk %d: %w", chunks+1, err)
		}
		chunks++
		matched += c.Matched
		affected += len(c.Changed) + len(c.Deleted)
		if c.Last != nil {
			after = c.Last
		}
		if c.Done {
			return chunks, matched, affected, nil
		}
		if chunks > 100 {
			return chunks, matched, affected, errors.New("the walk does not end")
		}
	}
}

// count counts the tasks matching a condition.
func (f *bulkFixture) count(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := f.database.Pool.QueryRow(f.ctx, `SELECT count(*) FROM tasks WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBulkUpdateChunksChangeEachMatchingTaskOnce(t *testing.T) {
	f := newBulkFixture(t, 1300)
	red := "red"
	sc := f.scope(&db.TaskFilter{Tag: &red})
	total, err := f.store.Stores().Tasks.CountBulk(f.ctx, sc)
	if err != nil || total != 1300/3 {
		t.Fatalf("CountBulk = %d, %v; want %d (the late tasks excluded)", total, err, 1300/3)
	}
	// 433 red tasks, all IN_PROGRESS; make 100 of them DONE already: they match but need no change.
	if _, err := f.database.Pool.Exec(f.ctx, `
		UPDATE tasks SET status = 'DONE' WHERE id IN (
			SELECT id FROM tasks WHERE owner_id = $1 AND 'red' = ANY(tags) AND created_at <= $2 ORDER BY id LIMIT 100)`,
		f.owner, f.requestedAt); err != nil {
		t.Fatal(err)
	}
	patch := db.BulkTaskPatch{Status: db.Optional[db.TaskStatus]{Set: true, Value: db.StatusDone}}

	start := time.Now()
	chunks, matched, affected := f.walk(t, sc, &patch)
	elapsed := time.Since(start)
	if chunks != 1 || matched != total || affected != total-100 {
		t.Fatalf("walk: %d chunks, matched %d, affected %d; want 1 chunk, %d matched, %d affected", chunks, matched, affected, total, total-100)
	}
	t.Logf("one chunk of %d tasks (%d changed) in %s", matched, affected, elapsed)
	// Changed tasks are at version 2; the ones already DONE were left at version 1 (their earlier
	// update did not bump it: it was plain SQL); nothing else moved.
	if n := f.count(t, `owner_id = $1 AND 'red' = ANY(tags) AND created_at <= $2 AND status = 'DONE' AND version = 2`, f.owner, f.requestedAt); n != total-100 {
		t.Errorf("%d red tasks at DONE, version 2; want %d", n, total-100)
	}
	if n := f.count(t, `version <> 1 AND NOT (owner_id = $1 AND 'red' = ANY(tags) AND created_at <= $2)`, f.owner, f.requestedAt); n != 0 {
		t.Errorf("%d tasks outside the scope changed (another user's, unmatched or late ones)", n)
	}
	if n := f.count(t, `owner_id = $1 AND created_at > $2 AND status = 'TODO' AND version = 1`, f.owner, f.requestedAt); n != 5 {
		t.Errorf("late tasks changed: %d of 5 untouched", n)
	}
	// Every changed task and the owner's counts were reported, once, after the commit.
	keys := f.keys.take()
	tasks, counts := 0, 0
	for _, k := range keys {
		switch {
		case k.Kind == db.EntityTask:
			tasks++
		case k.Kind == db.EntityTaskCounts && k.ID == f.owner:
			counts++
		default:
			t.Errorf("unexpected key %+v", k)
		}
	}
	if tasks != total-100 || counts != 1 {
		t.Errorf("reported %d tasks and %d counts; want %d and 1", tasks, counts, total-100)
	}

	// The same chunk again, without any checkpoint: it matches the same tasks and changes none.
	chunks, matched, affected = f.walk(t, sc, &patch)
	if matched != total || affected != 0 {
		t.Fatalf("second walk: %d chunks, matched %d, affected %d; want %d matched, 0 affected", chunks, matched, affected, total)
	}
	if n := f.count(t, `version > 2`); n != 0 {
		t.Fatalf("%d tasks bumped twice", n)
	}
	if keys := f.keys.take(); len(keys) != 0 {
		t.Fatalf("a no-op chunk reported %d changes", len(keys))
	}
}

// A filter on the column the patch changes (status TODO → DONE) walks every task once: the walk's
// key, (created_at, id), does not move when a task stops matching.
func TestBulkUpdateWalksInChunksWhileTasksLeaveTheFilter(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: walks thousands of rows in chunks")
	}
	f := newBulkFixture(t, 1600)
	sc := f.scope(&db.TaskFilter{Status: []db.TaskStatus{db.StatusTodo}})
	want := 1600 - 1600/3
	patch := db.BulkTaskPatch{
		Status:   db.Optional[db.TaskStatus]{Set: true, Value: db.StatusDone},
		Priority: db.Optional[db.Priority]{Set: true, Value: db.PriorityUrgent},
	}
	start := time.Now()
	chunks, matched, affected := f.walk(t, sc, &patch)
	elapsed := time.Since(start)
	if chunks != 3 || matched != want || affected != want {
		t.Fatalf("walk: %d chunks, matched %d, affected %d; want 3 chunks (500, 500, %d), %d, %d", chunks, matched, affected, want-1000, want, want)
	}
	t.Logf("%d tasks in %d chunks in %s (%s per chunk of 500)", matched, chunks, elapsed, elapsed/time.Duration(chunks))
	if n := f.count(t, `owner_id = $1 AND status = 'DONE' AND priority = 3 AND version = 2`, f.owner); n != want {
		t.Fatalf("%d tasks changed once; want %d", n, want)
	}
	// Now nothing matches any more: the scope is empty, one empty chunk ends the walk.
	if chunks, matched, _ := f.walk(t, sc, &patch); chunks != 1 || matched != 0 {
		t.Fatalf("again: %d chunks, %d matched; want 1, 0", chunks, matched)
	}
}

// Two walks of the same scope at once (a rescued attempt while the old one still runs): the row
// locks serialize them per chunk, and every task is changed exactly once between them.
func TestBulkUpdateConcurrentWalksChangeEachTaskOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: races concurrent bulk walks")
	}
	f := newBulkFixture(t, 1200)
	sc := f.scope(nil)
	patch := db.BulkTaskPatch{DueAt: db.Optional[*time.Time]{Set: true, Value: new(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))}}
	var wg sync.WaitGroup
	affected, errs := make([]int, 2), make([]error, 2)
	for i := range affected {
		wg.Go(func() { _, _, affected[i], errs[i] = f.tryWalk(sc, &patch) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if affected[0]+affected[1] != 1200 {
		t.Fatalf("the walks changed %v tasks; want 1200 between them", affected)
	}
	if n := f.count(t, `owner_id = $1 AND created_at <= $2 AND due_at = '2030-01-02T03:04:05Z' AND version = 2`, f.owner, f.requestedAt); n != 1200 {
		t.Fatalf("%d tasks at the new due date, version 2; want 1200", n)
	}
}

func TestBulkUpdateTagsAndAssignee(t *testing.T) {
	f := newBulkFixture(t, 9)
	ctx, st := f.ctx, f.store.Stores()
	assignee, err := st.Users.Create(ctx, db.NewUser{Name: "A", Email: "a@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	// One task one tag short of the limit: adding two would exceed it.
	full := make([]string, 19)
	for i := range full {
		full[i] = "t" + strings.Repeat("x", i)
	}
	crowded, err := st.Tasks.Create(ctx, f.owner, db.NewTask{Title: "crowded", Status: db.StatusTodo, Tags: full})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.database.Pool.Exec(ctx, `UPDATE tasks SET created_at = now() - interval '1 day' WHERE id = $1`, crowded.ID); err != nil {
		t.Fatal(err)
	}
	run := func(patch db.BulkTaskPatch) *db.BulkChunk {
		t.Helper()
		var c *db.BulkChunk
		if err := f.store.InTx(ctx, func(s db.Stores) error {
			var err error
			c, err = s.Tasks.UpdateChunk(ctx, f.scope(nil), patch, nil, db.BulkChunkSize)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	tagsOf := func(id uuid.UUID) []string {
		var tags []string
		if err := f.database.Pool.QueryRow(ctx, `SELECT tags FROM tasks WHERE id = $1`, id).Scan(&tags); err != nil {
			t.Fatal(err)
		}
		return tags
	}
	var redTask, blueTask uuid.UUID
	if err := f.database.Pool.QueryRow(ctx, `SELECT id FROM tasks WHERE owner_id = $1 AND tags = ARRAY['red','x'] AND created_at <= $2 LIMIT 1`, f.owner, f.requestedAt).Scan(&redTask); err != nil {
		t.Fatal(err)
	}
	if err := f.database.Pool.QueryRow(ctx, `SELECT id FROM tasks WHERE owner_id = $1 AND tags = ARRAY['blue'] AND created_at <= $2 LIMIT 1`, f.owner, f.requestedAt).Scan(&blueTask); err != nil {
		t.Fatal(err)
	}

	// Add "Green" (any case) and "red", remove "x": red tasks become [red green], blue ones
	// [blue green red]; the crowded task would reach 21 tags and is left alone.
	c := run(db.BulkTaskPatch{AddTags: []string{"Green", "red", "green"}, RemoveTags: []string{"x"}})
	if c.Matched != 10 || len(c.Changed) != 9 {
		t.Fatalf("matched %d, changed %d; want 10, 9 (the crowded task left alone)", c.Matched, len(c.Changed))
	}
	if got := tagsOf(redTask); !slices.Equal(got, []string{"red", "green"}) {
		t.Errorf("red task tags = %v", got)
	}
	if got := tagsOf(blueTask); !slices.Equal(got, []string{"blue", "green", "red"}) {
		t.Errorf("blue task tags = %v", got)
	}
	if got := tagsOf(crowded.ID); !slices.Equal(got, full) {
		t.Errorf("crowded task changed: %v", got)
	}
	// Again: nothing to do. Removing a tag no task has: nothing either.
	if c := run(db.BulkTaskPatch{AddTags: []string{"green", "red"}, RemoveTags: []string{"x"}}); len(c.Changed) != 0 {
		t.Errorf("repeated tag patch changed %d tasks", len(c.Changed))
	}
	if c := run(db.BulkTaskPatch{RemoveTags: []string{"nope"}}); len(c.Changed) != 0 {
		t.Errorf("removing an absent tag changed %d tasks", len(c.Changed))
	}

	// Assign: every task changes, and each change carries what it was before.
	c = run(db.BulkTaskPatch{AssigneeID: db.Optional[*uuid.UUID]{Set: true, Value: &assignee.ID}})
	if len(c.Changed) != 10 {
		t.Fatalf("assign changed %d tasks, want 10", len(c.Changed))
	}
	for _, ch := range c.Changed {
		if ch.Before.AssigneeID != nil || ch.Before.OwnerID != f.owner || ch.After.AssigneeID == nil || *ch.After.AssigneeID != assignee.ID {
			t.Fatalf("change %+v", ch)
		}
	}
	if c := run(db.BulkTaskPatch{AssigneeID: db.Optional[*uuid.UUID]{Set: true, Value: &assignee.ID}}); len(c.Changed) != 0 {
		t.Errorf("assigning again changed %d tasks", len(c.Changed))
	}
	// Unassign (null) and clear the due date (already null: no change for that field alone).
	c = run(db.BulkTaskPatch{AssigneeID: db.Optional[*uuid.UUID]{Set: true}, DueAt: db.Optional[*time.Time]{Set: true}})
	if len(c.Changed) != 10 || c.Changed[0].Before.AssigneeID == nil || c.Changed[0].After.AssigneeID != nil {
		t.Fatalf("unassign changed %d tasks: %+v", len(c.Changed), c.Changed[0])
	}
	if c := run(db.BulkTaskPatch{DueAt: db.Optional[*time.Time]{Set: true}}); len(c.Changed) != 0 {
		t.Errorf("clearing absent due dates changed %d tasks", len(c.Changed))
	}

	// An assignee that does not exist: NOT_FOUND, nothing written.
	ghost := uuid.New()
	before := f.count(t, `version > 1`)
	err = f.store.InTx(ctx, func(s db.Stores) error {
		_, err := s.Tasks.UpdateChunk(ctx, f.scope(nil), db.BulkTaskPatch{AssigneeID: db.Optional[*uuid.UUID]{Set: true, Value: &ghost}}, nil, db.BulkChunkSize)
		return err
	})
	if !errors.Is(err, db.ErrAssigneeMissing) || f.count(t, `version > 1`) != before || f.count(t, `assignee_id IS NOT NULL`) != 0 {
		t.Fatalf("unknown assignee: %v; want ErrAssigneeMissing and nothing written", err)
	}

	// Outside a transaction, and with an empty patch: refused.
	if _, err := st.Tasks.UpdateChunk(ctx, f.scope(nil), db.BulkTaskPatch{AddTags: []string{"a"}}, nil, 10); err == nil {
		t.Error("UpdateChunk outside InTx was allowed")
	}
	err = f.store.InTx(ctx, func(s db.Stores) error {
		_, err := s.Tasks.UpdateChunk(ctx, f.scope(nil), db.BulkTaskPatch{}, nil, 10)
		return err
	})
	if err == nil {
		t.Error("an empty patch was allowed")
	}
}

// A chunk whose transaction fails before it commits (a crash, a lost connection) leaves nothing.
func TestBulkChunkRolledBackLeavesNothing(t *testing.T) {
	f := newBulkFixture(t, 600)
	crash := errors.New("crash before commit")
	patch := db.BulkTaskPatch{Priority: db.Optional[db.Priority]{Set: true, Value: db.PriorityHigh}}
	var changed, deleted int
	err := f.store.InTx(f.ctx, func(s db.Stores) error {
		c, err := s.Tasks.UpdateChunk(f.ctx, f.scope(nil), patch, nil, db.BulkChunkSize)
		if err != nil {
			return err
		}
		changed = len(c.Changed)
		d, err := s.Tasks.DeleteChunk(f.ctx, f.scope(nil), c.Last, db.BulkChunkSize)
		if err != nil {
			return err
		}
		deleted = len(d.Deleted)
		return crash
	})
	if !errors.Is(err, crash) || changed != 500 || deleted != 100 {
		t.Fatalf("InTx = %v after %d changed, %d deleted; want the crash after 500, 100", err, changed, deleted)
	}
	if n := f.count(t, `version > 1 OR priority = 2`); n != 0 {
		t.Fatalf("%d tasks changed by a rolled-back chunk", n)
	}
	if n := f.count(t, `owner_id = $1`, f.owner); n != 605 {
		t.Fatalf("the owner has %d tasks after a rolled-back delete, want 605", n)
	}
}

func TestBulkDeleteChunksDeleteExactlyTheScope(t *testing.T) {
	f := newBulkFixture(t, 1300)
	sc := f.scope(&db.TaskFilter{Status: []db.TaskStatus{db.StatusTodo}})
	want := 1300 - 1300/3
	chunks, matched, affected := f.walk(t, sc, nil)
	if chunks != 2 || matched != want || affected != want {
		t.Fatalf("walk: %d chunks, matched %d, deleted %d; want 2, %d, %d", chunks, matched, affected, want, want)
	}
	if n := f.count(t, `owner_id = $1 AND status = 'TODO' AND created_at <= $2`, f.owner, f.requestedAt); n != 0 {
		t.Errorf("%d matching tasks left", n)
	}
	if n := f.count(t, `owner_id = $1`, f.owner); n != 1300/3+5 {
		t.Errorf("the owner has %d tasks left, want %d (unmatched and late ones)", n, 1300/3+5)
	}
	if n := f.count(t, `owner_id = $1`, f.other); n != 1300 {
		t.Errorf("the other user has %d tasks, want 1300", n)
	}
	tasks := 0
	for _, k := range f.keys.take() {
		if k.Kind == db.EntityTask {
			tasks++
		}
	}
	if tasks != want {
		t.Errorf("reported %d deleted tasks, want %d", tasks, want)
	}
	// Again: nothing left to delete.
	if _, matched, affected := f.walk(t, sc, nil); matched != 0 || affected != 0 {
		t.Fatalf("second walk matched %d, deleted %d", matched, affected)
	}
}

// The chunk statements stay on tasks_owner_created_at_idx, from the start and after a key, with and
// without a filter on a column that index does not hold.
func TestBulkChunkQueriesUseTheOwnerCreatedAtIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: seeds thousands of rows to read query plans")
	}
	f := newBulkFixture(t, 20000)
	rec := &sqlRecorder{}
	pool, err := db.OpenPool(f.ctx, f.database.URL, db.PoolOptions{MaxConns: 2, Tracer: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(f.ctx, `ANALYZE tasks`); err != nil {
		t.Fatal(err)
	}
	store := db.New(pool, nil)
	todo := &db.TaskFilter{Status: []db.TaskStatus{db.StatusTodo}}
	for _, tc := range []struct {
		name   string
		filter *db.TaskFilter
		delete bool
	}{
		{"update, no filter", nil, false},
		{"update, status filter", todo, false},
		{"delete, status filter", todo, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var first *db.BulkChunk
			for _, after := range []bool{false, true} {
				err := store.InTx(f.ctx, func(s db.Stores) error {
					var key *db.TaskKey
					if after {
						key = first.Last
					}
					var err error
					var c *db.BulkChunk
					if tc.delete {
						c, err = s.Tasks.DeleteChunk(f.ctx, f.scope(tc.filter), key, db.BulkChunkSize)
					} else {
						c, err = s.Tasks.UpdateChunk(f.ctx, f.scope(tc.filter), db.BulkTaskPatch{Priority: db.Optional[db.Priority]{Set: true, Value: db.PriorityLow}}, key, db.BulkChunkSize)
					}
					if first == nil {
						first = c
					}
					return errors.Join(err, errors.New("rollback: only the plan matters"))
				})
				if err != nil && !strings.Contains(err.Error(), "rollback: only the plan matters") {
					t.Fatal(err)
				}
				prefix := "SELECT id, created_at"
				if tc.delete {
					prefix = "DELETE"
				}
				sql, args := rec.last(t, prefix)
				if after != strings.Contains(sql, "(created_at, id) >") {
					t.Fatalf("statement %q: after a key = %v", sql, after)
				}
				if plan := explain(f.ctx, t, pool, sql, args); !strings.Contains(plan, "tasks_owner_created_at_idx") {
					t.Fatalf("plan for %q does not use tasks_owner_created_at_idx:\n%s", sql, plan)
				}
			}
		})
	}
}
