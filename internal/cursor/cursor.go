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
	"hash"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/globalid"
)

// Codec signs and checks cursors.
type Codec struct {
	key []byte
	// sealers holds keyed HMAC states and payload buffers: a page encodes a cursor per row, and
	// hmac.New costs several allocations each time.
	sealers sync.Pool
}

type sealer struct {
	mac hash.Hash
	buf [256]byte
}

// NewCodec derives the cursor key from the server secret, so cursors survive restarts and work on
// every instance that shares the secret.
func NewCodec(secret []byte) *Codec {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("taskgraph cursor v1"))
	c := &Codec{key: m.Sum(nil)}
	c.sealers.New = func() any { return &sealer{mac: hmac.New(sha256.New, c.key)} }
	return c
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

// Encode seals a row's position in the list scope. The payload is written by hand, byte for byte
// what json.Marshal(payload{…}) writes (cursor_test.go proves it), because a page encodes one
// cursor per row.
func (c *Codec) Encode(scope string, key any, id uuid.UUID) (string, error) {
	sl := c.sealers.Get().(*sealer)
	defer c.sealers.Put(sl)
	body := append(sl.buf[:0], `{"v":`...)
	body = strconv.AppendInt(body, version, 10)
	body = append(body, `,"s":`...)
	body, err := appendJSON(body, scope)
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	body = append(body, `,"k":`...)
	if body, err = appendJSON(body, key); err != nil {
		return "", fmt.Errorf("encode cursor key: %w", err)
	}
	body = append(body, `,"i":"`...)
	body = globalid.AppendUUID(body, id)
	body = append(body, `"}`...)

	sl.mac.Reset()
	sl.mac.Write(body)
	n := len(body)
	body = sl.mac.Sum(body)[:n+16]

	var out [512]byte
	enc := base64.RawURLEncoding
	if enc.EncodedLen(len(body)) > len(out) {
		return enc.EncodeToString(body), nil
	}
	dst := out[:enc.EncodedLen(len(body))]
	enc.Encode(dst, body)
	return string(dst), nil
}

// appendJSON appends v as json.Marshal writes it: integers and plain strings directly, anything
// else through encoding/json.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case int64:
		return strconv.AppendInt(b, v, 10), nil
	case int:
		return strconv.AppendInt(b, int64(v), 10), nil
	case string:
		if plainJSONString(v) {
			b = append(b, '"')
			b = append(b, v...)
			return append(b, '"'), nil
		}
	}
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

// plainJSONString reports whether json.Marshal writes s unchanged between quotes: printable ASCII
// without the characters it escapes (quote, backslash and the HTML-sensitive <, > and &).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
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
