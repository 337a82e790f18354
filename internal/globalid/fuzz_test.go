package globalid

import (
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// FuzzDecode: any string either decodes to an id that encodes back to the very same string (one
// spelling per object, so no cache or comparison can be fooled by another), or is BAD_USER_INPUT.
func FuzzDecode(f *testing.F) {
	id := uuid.MustParse("01234567-89ab-cdef-0123-456789abcdef")
	for _, k := range []Kind{KindUser, KindTask, KindNotification, KindWebhook, KindJob} {
		f.Add(Encode(k, id))
	}
	f.Add("")
	f.Add("VGFzazp4")
	f.Add(Encode(KindTask, id) + "=")
	f.Add("VGFzazp7MDEyMzQ1NjctODlhYi1jZGVmLTAxMjMtNDU2Nzg5YWJjZGVmfQ") // Task:{…}
	f.Fuzz(func(t *testing.T, gid string) {
		kind, got, err := Decode("id", gid)
		if err != nil {
			if apperr.CodeOf(err) != apperr.BadUserInput {
				t.Fatalf("Decode(%q) = %v, want BAD_USER_INPUT", gid, err)
			}
			return
		}
		if again := Encode(kind, got); again != gid {
			t.Fatalf("Decode(%q) = %s %s, which encodes as %q: two spellings of one id", gid, kind, got, again)
		}
	})
}
