package cursor

import (
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// FuzzDecode: a cursor is either refused with BAD_USER_INPUT or is one this codec sealed, for this
// scope; nothing else (no panic, no internal error, no position from a forged cursor).
func FuzzDecode(f *testing.F) {
	c := NewCodec([]byte("fuzz-secret"))
	scope := Scope("user", "tasks", "DUE_AT", "ASC")
	id := uuid.MustParse("01234567-89ab-cdef-0123-456789abcdef")
	for _, key := range []any{int64(1700000000000000), "title", int64(-1), nil} {
		s, err := c.Encode(scope, key, id)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s, scope)
		f.Add(s, Scope("other"))
		f.Add(s[:len(s)-3], scope)
	}
	f.Add("", scope)
	f.Add("eyJ2IjoxfQ", scope)
	f.Fuzz(func(t *testing.T, cursor, scope string) {
		pos, err := c.Decode(cursor, scope)
		if err != nil {
			if apperr.CodeOf(err) != apperr.BadUserInput {
				t.Fatalf("Decode(%q) = %v, want BAD_USER_INPUT", cursor, err)
			}
			return
		}
		// Accepted: it must be what Encode seals for that position, byte for byte.
		var key any = pos.Key
		again, err := c.Encode(scope, key, pos.ID)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if again != cursor {
			t.Fatalf("Decode accepted %q, but this codec seals that position as %q", cursor, again)
		}
	})
}
