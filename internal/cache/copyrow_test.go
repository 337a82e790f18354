package cache

import (
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/db"
)

// TestCopyRowCoversEveryField: copyRow's copies share nothing mutable with the remembered row only
// if it copies every pointer and slice field; a reference field added to a row type must be added
// to copyRow (and here).
func TestCopyRowCoversEveryField(t *testing.T) {
	copied := map[reflect.Type]map[string]bool{
		reflect.TypeFor[db.Task]():       {"AssigneeID": true, "Description": true, "DueAt": true, "Tags": true},
		reflect.TypeFor[db.User]():       {},
		reflect.TypeFor[db.Session]():    {},
		reflect.TypeFor[db.TaskCounts](): {},
	}
	for typ, fields := range copied {
		for i := range typ.NumField() {
			f := typ.Field(i)
			switch f.Type.Kind() {
			case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer:
				if !fields[f.Name] {
					t.Errorf("%s.%s is a reference (%s) that copyRow does not copy", typ.Name(), f.Name, f.Type)
				}
			case reflect.Struct:
				if f.Type != reflect.TypeFor[time.Time]() && f.Type != reflect.TypeFor[uuid.UUID]() {
					t.Errorf("%s.%s is a struct (%s) that this test does not know to be immutable", typ.Name(), f.Name, f.Type)
				}
			}
		}
	}
}

// TestLocalReadsAreFreshDecodes: a read from the in-process cache answers exactly what decoding the
// cached JSON answers (the first read decodes, later ones copy the remembered value), each read gets
// its own copy, and ids come back missing or found as before, whatever their order.
func TestLocalReadsAreFreshDecodes(t *testing.T) {
	c, err := NewLocal(100, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	due := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	owner, assignee := uuid.New(), uuid.New()
	var ids []uuid.UUID
	for range 4 {
		ids = append(ids, uuid.New())
	}
	// row builds row i afresh each time, so nothing a caller scribbles on reaches the "database".
	row := func(i int) db.Task {
		r := db.Task{ID: ids[i], OwnerID: owner, Title: "t", Status: db.TaskStatus("TODO"), Priority: 2,
			CreatedAt: due, UpdatedAt: due.Add(time.Second), Version: int32(i), Tags: []string{}}
		if i != 3 { // 3 keeps nil pointers and empty tags
			desc, d, a := "d", due, assignee
			r.Description, r.DueAt, r.AssigneeID, r.Tags = &desc, &d, &a, []string{"a", "b"}
		}
		return r
	}
	load := func(_ context.Context, want []uuid.UUID) ([]db.Task, error) {
		var out []db.Task
		for _, id := range want {
			for i := range ids {
				if ids[i] == id {
					out = append(out, row(i))
				}
			}
		}
		return out, nil
	}
	id := func(r db.Task) uuid.UUID { return r.ID }
	decoded := func(r db.Task) db.Task {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var out db.Task
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctx := context.Background()
	// Cache ids 1 and 3 only; tombstone id 2 (after caching it); id 0 stays uncached; one id is absent.
	if _, err := Many(ctx, c, db.EntityTask, []uuid.UUID{ids[1], ids[2], ids[3]}, load, id); err != nil {
		t.Fatal(err)
	}
	c.Invalidate(ctx, []db.EntityKey{{Kind: db.EntityTask, ID: ids[2]}})
	absent := uuid.New()
	for round := range 3 {
		ask := []uuid.UUID{ids[0], absent, ids[1], ids[2], ids[3]}
		got, err := Many(ctx, c, db.EntityTask, ask, load, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 4 || got[absent] != nil {
			t.Fatalf("round %d: %d rows (absent %v)", round, len(got), got[absent])
		}
		for _, i := range []int{1, 3} { // from the cache
			if want := decoded(row(i)); !reflect.DeepEqual(*got[ids[i]], want) {
				t.Fatalf("round %d: row %d is\n%+v, a fresh decode\n%+v", round, i, *got[ids[i]], want)
			}
		}
		// Scribble over everything the caller got; the next round must not see it.
		for _, r := range got {
			r.Title = "scribbled"
			if r.Description != nil {
				*r.Description = "scribbled"
				*r.DueAt = time.Time{}
				*r.AssigneeID = uuid.Nil
			}
			for j := range r.Tags {
				r.Tags[j] = "scribbled"
			}
		}
	}
}

// key must name entries exactly as string(kind) + ":" + id.String() did (Redis holds entries under it).
func TestKeyIsKindColonUUID(t *testing.T) {
	for _, kind := range []db.EntityKind{db.EntityTask, db.EntityUser, db.EntitySession, db.EntityTaskCounts, "x"} {
		for _, id := range []uuid.UUID{uuid.Nil, uuid.Max, uuid.New(), uuid.New(), uuid.New()} {
			if got, want := key(kind, id), string(kind)+":"+id.String(); got != want {
				t.Fatalf("key = %q, want %q", got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = key(db.EntityTask, uuid.Max) }); n > 1 {
		t.Errorf("key allocates %v times, want 1", n)
	}
}
