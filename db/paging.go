package db

import (
	"fmt"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/cursor"
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

// CursorCodec seals the cursors of every connection (internal/cursor).
type CursorCodec = cursor.Codec

// NewCursorCodec derives the cursor key from the server secret.
func NewCursorCodec(secret []byte) *cursor.Codec { return cursor.NewCodec(secret) }

// scopeOf names one list for its cursors.
func scopeOf(parts ...string) string { return cursor.Scope(parts...) }

// pageRequest is a validated page request: its direction, size and decoded cursor.
type pageRequest struct {
	limit    int
	backward bool
	cursor   *cursor.Position
}

// parsePage validates Relay arguments. Paging forward uses first/after, backward last/before; mixing
// them is refused because it has no single sensible meaning with keyset pagination.
func parsePage(c *cursor.Codec, args PageArgs, scope string) (pageRequest, error) {
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
	given := args.After
	if args.Last != nil || args.Before != nil {
		req.backward = true
		given = args.Before
	}
	if args.First != nil {
		req.limit = *args.First
	}
	if args.Last != nil {
		req.limit = *args.Last
	}
	if given != nil {
		p, err := c.Decode(*given, scope)
		if err != nil {
			return pageRequest{}, err
		}
		req.cursor = &p
	}
	return req, nil
}
