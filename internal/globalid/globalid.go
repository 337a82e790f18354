// Package globalid encodes the opaque global IDs of the Node interface: base64url("Kind:uuid").
package globalid

import (
	"encoding/base64"
	"strings"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Kind is the GraphQL type a global ID points at.
type Kind string

const (
	KindUser         Kind = "User"
	KindTask         Kind = "Task"
	KindNotification Kind = "Notification"
	KindWebhook      Kind = "Webhook"
	KindJob          Kind = "Job"
)

// Encode returns the global ID of the object of kind with database id.
// Every row's id goes through here, so it builds the text on the stack: one allocation, the result.
func Encode(kind Kind, id uuid.UUID) string {
	var raw [64]byte
	b := append(raw[:0], kind...)
	b = append(b, ':')
	b = AppendUUID(b, id)
	var out [88]byte
	enc := base64.RawURLEncoding
	if n := enc.EncodedLen(len(b)); n <= len(out) {
		enc.Encode(out[:n], b)
		return string(out[:n])
	}
	return enc.EncodeToString(b)
}

// AppendUUID appends id in its canonical text form (uuid.UUID.String) without allocating.
func AppendUUID(b []byte, id uuid.UUID) []byte {
	var s [36]byte
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[x>>4], hexDigits[x&0x0f]
		j += 2
	}
	return append(b, s[:]...)
}

// Decode splits a global ID; a malformed one is BAD_USER_INPUT naming field.
func Decode(field, gid string) (Kind, uuid.UUID, error) {
	bad := apperr.Invalid(field, "is not a valid ID: pass back an id exactly as this server returned it")
	if len(gid) > 100 || strings.ContainsAny(gid, "\r\n") {
		return "", uuid.Nil, bad
	}
	// Strict, and no line breaks (which base64 skips even then): non-zero padding bits or a CR/LF would give one id several spellings.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(gid)
	if err != nil {
		return "", uuid.Nil, bad
	}
	kind, rest, ok := strings.Cut(string(raw), ":")
	if !ok || (Kind(kind) != KindUser && Kind(kind) != KindTask && Kind(kind) != KindNotification && Kind(kind) != KindWebhook && Kind(kind) != KindJob) {
		return "", uuid.Nil, bad
	}
	// uuid.Parse also takes {…}, urn:uuid:…, upper case and no hyphens: only the spelling Encode
	// writes is an id, so one object has one global id.
	id, err := uuid.Parse(rest)
	if err != nil || rest != id.String() {
		return "", uuid.Nil, bad
	}
	return Kind(kind), id, nil
}

// DecodeAs decodes a global ID that must be of kind; any other kind is NOT_FOUND, as a missing object.
func DecodeAs(field string, want Kind, gid string) (uuid.UUID, error) {
	kind, id, err := Decode(field, gid)
	if err != nil {
		return uuid.Nil, err
	}
	if kind != want {
		return uuid.Nil, apperr.New(apperr.NotFound, "%s not found", strings.ToLower(string(want)))
	}
	return id, nil
}
