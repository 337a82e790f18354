// Package cursor makes the opaque, signed, versioned cursors of Relay connections. A cursor holds a
// row's sort key and id and names the list it came from (its scope: kind, owner, order, filter); the
// HMAC makes a forged cursor detectable and the scope a foreign one, so either is BAD_USER_INPUT,
// never another list's rows. Keyset paging (db) decides what goes in; this package only seals it.
package cursor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// Codec signs and checks cursors.
type Codec struct {
	key []byte
}

// NewCodec derives the cursor key from the server secret, so cursors survive restarts and work on
// every instance that shares the secret.
func NewCodec(secret []byte) *Codec {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("taskgraph cursor v1"))
	return &Codec{key: m.Sum(nil)}
}

// version is the cursor format; a cursor of another version is refused.
const version = 1

// maxLen bounds what can possibly be a cursor this server issued.
const maxLen = 512

// Position is what a cursor holds: the row's sort key (an int64 — timestamps in microseconds,
// priorities — or a string) and its id.
type Position struct {
	Key json.RawMessage
	ID  uuid.UUID
}

type payload struct {
	V     int             `json:"v"`
	Scope string          `json:"s"`
	Key   json.RawMessage `json:"k"`
	ID    uuid.UUID       `json:"i"`
}

// Scope names one list from its parts; cursors of another list (other user, filter or order) are refused.
func Scope(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

// Encode seals a row's position in the list scope.
func (c *Codec) Encode(scope string, key any, id uuid.UUID) (string, error) {
	k, err := json.Marshal(key)
	if err != nil {
		return "", fmt.Errorf("encode cursor key: %w", err)
	}
	body, err := json.Marshal(payload{V: version, Scope: scope, Key: k, ID: id})
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	return base64.RawURLEncoding.EncodeToString(append(body, m.Sum(nil)[:16]...)), nil
}

// Invalid answers a cursor that is malformed, forged or of another version (BAD_USER_INPUT).
func Invalid() error {
	return apperr.New(apperr.BadUserInput, "cursor is not valid: pass back a cursor exactly as this server returned it")
}

// errForeign answers a cursor of another list (BAD_USER_INPUT).
func errForeign() error {
	return apperr.New(apperr.BadUserInput, "cursor belongs to a different list: cursors only work with the same filter and orderBy they came from")
}

// Decode checks a cursor's signature, version and scope and returns its position.
func (c *Codec) Decode(cursor, scope string) (Position, error) {
	if len(cursor) > maxLen || strings.ContainsAny(cursor, "\r\n") {
		return Position{}, Invalid()
	}
	// Strict, and no line breaks (which base64 skips even then): non-zero padding bits or a CR/LF would give one cursor several spellings.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(raw) <= 16 {
		return Position{}, Invalid()
	}
	body, sig := raw[:len(raw)-16], raw[len(raw)-16:]
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	if !hmac.Equal(sig, m.Sum(nil)[:16]) {
		return Position{}, Invalid()
	}
	var p payload
	if err := json.Unmarshal(body, &p); err != nil || p.V != version {
		return Position{}, Invalid()
	}
	if p.Scope != scope {
		return Position{}, errForeign()
	}
	return Position{Key: p.Key, ID: p.ID}, nil
}
