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
	// IdempotencyKeyReused: the Idempotency-Key was already used with a different request.
	IdempotencyKeyReused Code = "IDEMPOTENCY_KEY_REUSED"
	// IdempotencyKeyInUse: a request with the same Idempotency-Key is still running; retry shortly.
	IdempotencyKeyInUse Code = "IDEMPOTENCY_KEY_IN_USE"
	// SyncTokenExpired: the sync token is older than the change retention; reload everything.
	SyncTokenExpired Code = "SYNC_TOKEN_EXPIRED"
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
	// ViolationCount is how many violations were found; Violations holds at most MaxViolations of
	// them, so an answer stays small however many elements of an input are wrong.
	ViolationCount int
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
	return &Error{Code: code, Message: text, Violations: []Violation{{Field: field, Message: message}}, ViolationCount: 1, listed: true}
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
		out.Message = joinViolations(out.Violations, out.ViolationCount)
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

// MaxViolations is how many violations one error lists; the rest are only counted
// (Error.ViolationCount), so a hostile input with a wrong value in each of 100,000 elements gets an
// answer of a few hundred bytes, not megabytes.
const MaxViolations = 10

// Violations collects the invalid fields of an input before any write, so a client can fix them
// all at once. It keeps the first MaxViolations and counts the rest.
type Violations struct {
	list  []Violation
	count int
}

// Add records that field is invalid.
func (v *Violations) Add(field, message string) {
	v.count++
	if len(v.list) < MaxViolations {
		v.list = append(v.list, Violation{Field: field, Message: message})
	}
}

// AddAll records the violations of err (an *Error listing some; other errors are ignored).
func (v *Violations) AddAll(err *Error) {
	for _, x := range err.Violations {
		v.Add(x.Field, x.Message)
	}
	v.count += max(0, err.ViolationCount-len(err.Violations))
}

// List is the violations kept (at most MaxViolations).
func (v *Violations) List() []Violation { return v.list }

// Len is how many violations were recorded.
func (v *Violations) Len() int { return v.count }

// Err returns nil when nothing was recorded, else one BAD_USER_INPUT error listing the violations
// (at most MaxViolations of them) and their count.
func (v *Violations) Err() error {
	if v.count == 0 {
		return nil
	}
	return &Error{Code: BadUserInput, Message: joinViolations(v.list, v.count), Violations: v.list,
		ViolationCount: v.count, listed: true}
}

// joinViolations is the message of an error that lists its violations, saying how many more there
// are beyond the listed ones.
func joinViolations(v []Violation, count int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		if x.Field == "" {
			parts[i] = x.Message
		} else {
			parts[i] = x.Field + ": " + x.Message
		}
	}
	msg := strings.Join(parts, "; ")
	if more := count - len(v); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return msg
}
