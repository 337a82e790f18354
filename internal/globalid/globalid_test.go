package globalid

import (
	"encoding/base64"
	"testing"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

func TestRoundTrip(t *testing.T) {
	id := uuid.New()
	kind, got, err := Decode("id", Encode(KindTask, id))
	if err != nil || kind != KindTask || got != id {
		t.Fatalf("Decode(Encode) = %v %v %v, want Task %v", kind, got, err, id)
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	for _, gid := range []string{"", "!!!", Encode("Project", uuid.New()), "VGFzazpub3QtYS11dWlk"} {
		if _, _, err := Decode("id", gid); apperr.CodeOf(err) != apperr.BadUserInput {
			t.Errorf("Decode(%q) code = %v, want BAD_USER_INPUT", gid, apperr.CodeOf(err))
		}
	}
}

func TestDecodeAsOtherKindIsNotFound(t *testing.T) {
	_, err := DecodeAs("id", KindTask, Encode(KindUser, uuid.New()))
	if apperr.CodeOf(err) != apperr.NotFound {
		t.Fatalf("code = %v, want NOT_FOUND", apperr.CodeOf(err))
	}
}

// Global ids already handed to clients were base64url("Kind:" + uuid.String()); the hand-built
// encoding must stay byte for byte the same.
func TestEncodeMatchesTheDocumentedForm(t *testing.T) {
	for _, kind := range []Kind{KindUser, KindTask, KindNotification, KindWebhook, KindJob} {
		for range 50 {
			id := uuid.New()
			want := base64.RawURLEncoding.EncodeToString([]byte(string(kind) + ":" + id.String()))
			if got := Encode(kind, id); got != want {
				t.Fatalf("Encode(%s, %s) = %s, want %s", kind, id, got, want)
			}
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	id := uuid.New()
	b.ReportAllocs()
	for b.Loop() {
		_ = Encode(KindTask, id)
	}
}
