// Package apperr defines the domain errors every layer returns and the stable codes clients see.
//
// Stores, services and resolvers return *Error (or wrap one); the GraphQL error presenter turns it into
// `extensions.code`. Anything that is not an *Error is an internal fault: it is logged and shown as INTERNAL.
package apperr

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code is one of the values of the schema's ErrorCode enum.
type Code string

const (
	Unauthenticated Code = "UNAUTHENTICATED"
	Forbidden       Code = "FORBIDDEN"
	NotFound        Code = "NOT_FOUND"
	BadUserInput    Code = "BAD_USER_INPUT"
	Conflict        Code = "CONFLICT"
	RateLimited     Code = "RATE_LIMITED"
	QueryTooComplex Code = "QUERY_TOO_COMPLEX"
	Internal        Code = "INTERNAL"
	// Unavailable: the database could not take the request right now (down, failing over); retry.
	Unavailable Code = "UNAVAILABLE"
)

// Violation names one invalid input field and what is wrong with it.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is a failure safe to show to a client: its message never holds internals.
type Error struct {
	Code       Code
	Message    string
	Violations []Violation
	// RetryAfter, on RATE_LIMITED errors, is how long the client should wait (HTTP Retry-After).
	RetryAfter time.Duration
	// listed: Message is the violations joined ("field: message; …"), so Under rebuilds it.
	listed bool
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is makes errors.Is(err, apperr.ErrNotFound) match any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is; they match any *Error of their code.
var (
	ErrUnauthenticated = &Error{Code: Unauthenticated}
	ErrForbidden       = &Error{Code: Forbidden}
	ErrNotFound        = &Error{Code: NotFound}
	ErrBadUserInput    = &Error{Code: BadUserInput}
	ErrConflict        = &Error{Code: Conflict}
)

// New returns an error with the given code and client-facing message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports one invalid field. field may be empty when the position is given by the GraphQL path.
func Invalid(field, message string) error {
	return FieldError(BadUserInput, field, message)
}

// FieldError is an error about one input field with the given code (e.g. CONFLICT for a taken email).
func FieldError(code Code, field, message string) *Error {
	text := message
	if field != "" {
		text = field + ": " + message
	}
	return &Error{Code: code, Message: text, Violations: []Violation{{Field: field, Message: message}}, listed: true}
}

// Whole, as a violation's field, names the validated value itself (e.g. a patch that changes
// nothing); Under turns it into the prefix.
const Whole = "."

// Under places err's field names under an input path: a domain names the fields of what it
// validates ("title", "tags[2]"), the transport says where that value came from ("input"), so
// clients see "input.title". Errors that are not *Error, or name no fields, pass unchanged.
func Under(prefix string, err error) error {
	var e *Error
	if prefix == "" || !errors.As(err, &e) || len(e.Violations) == 0 {
		return err
	}
	out := *e
	out.Violations = make([]Violation, len(e.Violations))
	for i, v := range e.Violations {
		switch v.Field {
		case "":
		case Whole:
			v.Field = prefix
		default:
			v.Field = prefix + "." + v.Field
		}
		out.Violations[i] = v
	}
	if e.listed {
		out.Message = joinViolations(out.Violations)
	}
	return &out
}

// Throttled is a RATE_LIMITED error telling the client when to retry.
func Throttled(retryAfter time.Duration, format string, args ...any) *Error {
	e := New(RateLimited, format, args...)
	e.RetryAfter = retryAfter
	return e
}

// CodeOf returns the code of err, or Internal when err is not (or does not wrap) an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Violations collects every invalid field of an input before any write, so a client can fix them all at once.
type Violations []Violation

// Add records that field is invalid.
func (v *Violations) Add(field, message string) {
	*v = append(*v, Violation{Field: field, Message: message})
}

// Err returns nil when nothing was recorded, else one BAD_USER_INPUT error listing every violation.
func (v Violations) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Code: BadUserInput, Message: joinViolations(v), Violations: v, listed: true}
}

// joinViolations is the message of an error that lists its violations.
func joinViolations(v []Violation) string {
	parts := make([]string, len(v))
	for i, x := range v {
		if x.Field == "" {
			parts[i] = x.Message
		} else {
			parts[i] = x.Field + ": " + x.Message
		}
	}
	return strings.Join(parts, "; ")
}
