package db_test

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// The task and user reads scan rows by column order instead of pgx.RowToStructByName; every column
// must still land in its field, NULLs and empty arrays included.
func TestRowScansMatchRowToStructByName(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: database")
	}
	ctx, pool, store := openStores(t)
	owner, err := store.Users.Create(ctx, db.NewUser{Name: "Scan", Email: "scan@example.com", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Users.Create(ctx, db.NewUser{Name: "Other", Email: "other@example.com", PasswordHash: "y"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `
		INSERT INTO tasks (id, owner_id, assignee_id, title, description, status, priority, due_at, tags, created_at, version)
		SELECT gen_random_uuid(), $1, CASE WHEN g % 2 = 0 THEN $2::uuid END, 'task ' || g,
		       CASE WHEN g % 3 = 0 THEN 'about ' || g END, (ARRAY['TODO','IN_PROGRESS','DONE'])[1 + g % 3], g % 4,
		       CASE WHEN g % 2 = 1 THEN now() + g * interval '1 hour' END,
		       CASE WHEN g % 4 = 0 THEN ARRAY[]::text[] ELSE ARRAY['t' || g, 'u'] END,
		       now() - g * interval '1 second', g
		FROM generate_series(1, 12) g`, owner.ID, other.ID); err != nil {
		t.Fatal(err)
	}

	rows, err := pool.Query(ctx, `SELECT id, owner_id, assignee_id, title, description, status, priority, due_at, tags,
		created_at, updated_at, version FROM tasks ORDER BY created_at DESC, id DESC`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowToStructByName[db.Task])
	if err != nil {
		t.Fatal(err)
	}

	conn, err := store.Tasks.List(ctx, db.TaskScope{UserID: owner.ID}, nil, nil, db.PageArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.Tasks(); len(got) != len(want) {
		t.Fatalf("List: %d tasks, want %d", len(got), len(want))
	}
	for i, task := range conn.Tasks() {
		if !reflect.DeepEqual(*task, want[i]) {
			t.Errorf("List row %d = %+v, want %+v", i, *task, want[i])
		}
		got, err := store.Tasks.Get(ctx, want[i].ID)
		if err != nil || !reflect.DeepEqual(*got, want[i]) {
			t.Errorf("Get(%s) = %+v, %v, want %+v", want[i].ID, got, err, want[i])
		}
	}
	ids := make([]uuid.UUID, len(want))
	for i, w := range want {
		ids[i] = w.ID
	}
	byIDs, err := store.Tasks.ByIDs(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(byIDs, func(a, b db.Task) int { return b.CreatedAt.Compare(a.CreatedAt) })
	if !reflect.DeepEqual(byIDs, want) {
		t.Errorf("ByIDs = %+v, want %+v", byIDs, want)
	}

	rows, err = pool.Query(ctx, `SELECT id, name, email, role, password_hash, created_at, updated_at FROM users ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	wantUsers, err := pgx.CollectRows(rows, pgx.RowToStructByName[db.User])
	if err != nil {
		t.Fatal(err)
	}
	users, err := store.Users.ByIDs(ctx, []uuid.UUID{owner.ID, other.ID})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(users, func(a, b db.User) int { return strings.Compare(a.Name, b.Name) })
	if !reflect.DeepEqual(users, wantUsers) {
		t.Errorf("Users.ByIDs = %+v, want %+v", users, wantUsers)
	}
}

// openStores gives a test a database of its own: a context bounded to a minute, a small pool on the
// database and the stores over it.
func openStores(t *testing.T) (context.Context, *pgxpool.Pool, db.Stores) {
	t.Helper()
	database := testsupport.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	pool, err := db.OpenPool(ctx, database.URL, db.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return ctx, pool, db.New(pool, db.NewCursorCodec([]byte("test cursors"))).Stores()
}

// Ids are sent and read as PostgreSQL's binary uuid, without the text detour pgx takes for a
// google/uuid value it was not told about (driver.Valuer: format, fail a binary encode, re-parse).
func TestPoolSendsAndReadsUUIDsInBinary(t *testing.T) {
	ctx, pool, _ := openStores(t)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	types := conn.Conn().TypeMap()
	id := uuid.New()
	var buf []byte
	allocs := testing.AllocsPerRun(100, func() {
		if buf, err = types.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, id, buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	// Two boxings into interfaces remain (the argument, and the wrapper handing it on); the text
	// detour made 20.
	if allocs > 2 || !slices.Equal(buf, id[:]) {
		t.Fatalf("encoding a uuid.UUID: %v allocations, bytes %x; want at most 2 and %x", allocs, buf, id[:])
	}

	var (
		got     uuid.UUID
		missing uuid.NullUUID
		anyID   any
	)
	if err := conn.QueryRow(ctx, `SELECT $1::uuid, NULL::uuid, $1::uuid`, id).Scan(&got, &missing, &anyID); err != nil {
		t.Fatal(err)
	}
	if got != id || missing.Valid || anyID != any(id) {
		t.Fatalf("read back %v, %+v, %#v; want %v, NULL and %v", got, missing, anyID, id, id)
	}
	var ids []uuid.UUID
	if err := conn.QueryRow(ctx, `SELECT $1::uuid[]`, []uuid.UUID{id, id}).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []uuid.UUID{id, id}) {
		t.Fatalf("uuid[] read back %v", ids)
	}
}
