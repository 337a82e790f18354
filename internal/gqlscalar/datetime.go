// Package gqlscalar holds the marshalling of the schema's custom scalars.
package gqlscalar

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// MarshalDateTime writes t as RFC 3339 in UTC with at most microsecond precision (what PostgreSQL keeps).
func MarshalDateTime(t time.Time) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		_, _ = io.WriteString(w, strconv.Quote(t.UTC().Format(time.RFC3339Nano)))
	})
}

// UnmarshalDateTime accepts an RFC 3339 string with a time zone; anything else is BAD_USER_INPUT.
func UnmarshalDateTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, apperr.Invalid("", fmt.Sprintf("DateTime must be an RFC 3339 string, got %T", v))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, apperr.Invalid("", "DateTime must be an RFC 3339 date-time with a time zone, such as 2026-11-29T09:00:00Z")
	}
	return t.Truncate(time.Microsecond), nil
}
