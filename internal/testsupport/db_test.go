package testsupport

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	code := m.Run()
	ReleaseDatabases()
	os.Exit(code)
}

// TestDatabasesAreExclusiveAndComeBackEmpty checks the pool the whole suite stands on: two tests
// running at once never share a database, a database claimed by another process is left alone, and
// a database given back is empty (rows and sequences) when the next test gets it.
func TestDatabasesAreExclusiveAndComeBackEmpty(t *testing.T) {
	ctx := context.Background()
	var first string
	t.Run("use", func(t *testing.T) {
		a, b := NewDatabase(t), NewDatabase(t)
		if a.Name == b.Name {
			t.Fatalf("two live tests share database %s", a.Name)
		}
		first = a.Name
		if _, err := a.Pool.Exec(ctx, `INSERT INTO users (id, name, email, password_hash)
			VALUES (gen_random_uuid(), 'x', 'x@example.com', 'h')`); err != nil {
			t.Fatal(err)
		}
		if b.Counter.Count() != 0 {
			t.Fatalf("a new database's counter starts at %d, want 0 (preparation is not the test's)", b.Counter.Count())
		}
	})

	t.Run("reuse", func(t *testing.T) {
		d := NewDatabase(t)
		if d.Name != first {
			t.Fatalf("got %s, want %s again (the last one given back)", d.Name, first)
		}
		var users int
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil {
			t.Fatal(err)
		}
		if users != 0 {
			t.Fatalf("database %s came back with %d users (first test used %s)", d.Name, users, first)
		}
	})

	// Hand this process's databases over to another session, as if another test process had
	// claimed them: none of them may be handed out here.
	other, err := pgx.Connect(ctx, dbURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var ok bool
	pool.mu.Lock()
	pool.free = nil
	held := pool.held
	pool.held = map[string]bool{}
	for name := range held {
		if _, err := pool.claims.Exec(ctx, `SELECT pg_advisory_unlock(hashtextextended($1, 0))`, name); err != nil {
			t.Fatal(err)
		}
		if err := other.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtextextended($1, 0))`, name).Scan(&ok); err != nil || !ok {
			t.Fatalf("lock %s from the other session: %v %v", name, ok, err)
		}
	}
	pool.mu.Unlock()
	t.Run("claimed elsewhere", func(t *testing.T) {
		d := NewDatabase(t)
		if held[d.Name] {
			t.Fatalf("got %s, which another session has claimed", d.Name)
		}
	})
}

// TestChangedSchemaIsNotHandedOn: a test that adds a trigger (to inject a failure, say) leaves it in
// its database; the next test must get a database without it.
func TestChangedSchemaIsNotHandedOn(t *testing.T) {
	ctx := context.Background()
	var used string
	t.Run("change", func(t *testing.T) {
		d := NewDatabase(t)
		used = d.Name
		if _, err := d.Pool.Exec(ctx, `
			CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
			CREATE TRIGGER refuse BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("next", func(t *testing.T) {
		d := NewDatabase(t)
		var triggers int
		if err := d.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgname = 'refuse'`).Scan(&triggers); err != nil {
			t.Fatal(err)
		}
		if triggers != 0 {
			t.Fatalf("database %s (the changed one was %s) still has the test's trigger", d.Name, used)
		}
	})
}
