package globalid

import (
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
