package db

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

// Direction is a sort direction; the GraphQL OrderDirection enum is bound to it.
type Direction string

const (
	Asc  Direction = "ASC"
	Desc Direction = "DESC"
)

// PageArgs are the Relay connection arguments as the client sent them.
type PageArgs struct {
	First, Last   *int
	After, Before *string
}

// Page size limits for every connection.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// PageInfo is Relay's PageInfo.
type PageInfo struct {
	HasNextPage     bool
	HasPreviousPage bool
	StartCursor     *string
	EndCursor       *string
}

// CursorCodec signs and checks cursors. A cursor names the list it came from (kind, order, owner and
// filter); the HMAC makes forged cursors detectable, and the scope makes foreign ones detectable.
type CursorCodec struct {
	key []byte
}

// NewCursorCodec derives the cursor key from the server secret, so cursors survive restarts and work on
// every instance that shares the secret.
func NewCursorCodec(secret []byte) *CursorCodec {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("taskgraph cursor v1"))
	return &CursorCodec{key: m.Sum(nil)}
}

const cursorVersion = 1

// cursorPayload is what a cursor holds before signing. Key is the sort key of the row: an int64
// (timestamps in microseconds, priorities) or a string (names).
type cursorPayload struct {
	V     int             `json:"v"`
	Scope string          `json:"s"`
	Key   json.RawMessage `json:"k"`
	ID    uuid.UUID       `json:"i"`
}

// scope identifies one list: cursors from another list (other user, filter or order) are refused.
func scopeOf(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

func (c *CursorCodec) encode(scope string, key any, id uuid.UUID) (string, error) {
	k, err := json.Marshal(key)
	if err != nil {
		return "", fmt.Errorf("encode cursor key: %w", err)
	}
	body, err := json.Marshal(cursorPayload{V: cursorVersion, Scope: scope, Key: k, ID: id})
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	return base64.RawURLEncoding.EncodeToString(append(body, m.Sum(nil)[:16]...)), nil
}

var (
	errBadCursor     = apperr.New(apperr.BadUserInput, "cursor is not valid: pass back a cursor exactly as this server returned it")
	errForeignCursor = apperr.New(apperr.BadUserInput, "cursor belongs to a different list: cursors only work with the same filter and orderBy they came from")
)

func (c *CursorCodec) decode(cursor, scope string) (cursorPayload, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) <= 16 || len(cursor) > 512 {
		return cursorPayload{}, errBadCursor
	}
	body, sig := raw[:len(raw)-16], raw[len(raw)-16:]
	m := hmac.New(sha256.New, c.key)
	m.Write(body)
	if !hmac.Equal(sig, m.Sum(nil)[:16]) {
		return cursorPayload{}, errBadCursor
	}
	var p cursorPayload
	if err := json.Unmarshal(body, &p); err != nil || p.V != cursorVersion {
		return cursorPayload{}, errBadCursor
	}
	if p.Scope != scope {
		return cursorPayload{}, errForeignCursor
	}
	return p, nil
}

// pageRequest is a validated page request: its direction, size and decoded cursor.
type pageRequest struct {
	limit    int
	backward bool
	cursor   *cursorPayload
}

// parsePage validates Relay arguments. Paging forward uses first/after, backward last/before; mixing
// them is refused because it has no single sensible meaning with keyset pagination.
func (c *CursorCodec) parsePage(args PageArgs, scope string) (pageRequest, error) {
	var v apperr.Violations
	if args.First != nil && args.Last != nil {
		v.Add("first", "give either first or last, not both")
	}
	if args.After != nil && args.Before != nil {
		v.Add("after", "give either after or before, not both")
	}
	if args.First != nil && args.Before != nil {
		v.Add("before", "use last with before to page backward (first goes with after)")
	}
	if args.Last != nil && args.After != nil {
		v.Add("after", "use first with after to page forward (last goes with before)")
	}
	checkSize := func(name string, n *int) {
		if n != nil && (*n < 1 || *n > MaxPageSize) {
			v.Add(name, fmt.Sprintf("must be between 1 and %d, got %d", MaxPageSize, *n))
		}
	}
	checkSize("first", args.First)
	checkSize("last", args.Last)
	if err := v.Err(); err != nil {
		return pageRequest{}, err
	}

	req := pageRequest{limit: DefaultPageSize}
	cursor := args.After
	if args.Last != nil || args.Before != nil {
		req.backward = true
		cursor = args.Before
	}
	if args.First != nil {
		req.limit = *args.First
	}
	if args.Last != nil {
		req.limit = *args.Last
	}
	if cursor != nil {
		p, err := c.decode(*cursor, scope)
		if err != nil {
			return pageRequest{}, err
		}
		req.cursor = &p
	}
	return req, nil
}
