package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
)

// UnavailableMessage is what a request that failed because the database could not be reached says.
const UnavailableMessage = "the database is unavailable right now (restarting or failing over); retry in a moment"

// persistedQueryNotFound is the APQ protocol's code for "send the whole document".
const persistedQueryNotFound = "PERSISTED_QUERY_NOT_FOUND"

// errorPresenter is the one place errors become client-visible. Domain errors keep their code and
// message; gqlgen's parse and validation errors become BAD_USER_INPUT; anything else is logged with
// the request id and shown as INTERNAL with no detail. hideSuggestions drops gqlparser's "Did you
// mean …" from document errors (production): gqlgen's SetDisableSuggestion covers field names
// only, not arguments, enum values, input fields or type conditions.
func errorPresenter(logger *slog.Logger, hideSuggestions bool) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		base := graphql.DefaultErrorPresenter(ctx, err)
		out := &gqlerror.Error{Path: base.Path, Locations: base.Locations, Extensions: map[string]any{}}

		var app *apperr.Error
		if errors.As(err, &app) {
			out.Message = app.Message
			out.Extensions["code"] = string(app.Code)
			if app.RetryAfter > 0 {
				markThrottled(ctx, app.RetryAfter)
				out.Extensions["retryAfter"] = int(math.Ceil(app.RetryAfter.Seconds()))
			}
			if len(app.Violations) > 0 {
				violations := fieldsFromPath(app.Violations, base.Path)
				if violations[0].Field != "" {
					out.Extensions["field"] = violations[0].Field
				}
				out.Extensions["violations"] = violations
				// The list is capped (apperr.MaxViolations); the count says how many there were.
				out.Extensions["violationCount"] = max(app.ViolationCount, len(violations))
			}
			return out
		}
		code, _ := base.Extensions["code"].(string)
		switch {
		case code == persistedQueryNotFound:
			// Apollo-style clients answer this exact code by resending the full document.
			out.Message = base.Message
			out.Extensions["code"] = persistedQueryNotFound
			return out
		case code == errcode.ParseFailed || code == errcode.ValidationFailed:
			msg := base.Message
			if hideSuggestions {
				msg = suggestion.ReplaceAllString(msg, "")
			}
			out.Message, out.Path = redactRequestValues(msg, base.Path)
			out.Extensions["code"] = string(apperr.BadUserInput)
			return out
		}
		id := RequestID(ctx)
		if db.IsUnavailable(err) && !errors.Is(err, context.DeadlineExceeded) {
			// Not a fault of the request or the server: the client retries, so no error-level noise.
			logger.WarnContext(ctx, "database unavailable", "request_id", id, "err", err, "path", base.Path.String())
			out.Message = UnavailableMessage
			out.Extensions["code"] = string(apperr.Unavailable)
			out.Extensions["requestId"] = id
			return out
		}
		logger.ErrorContext(ctx, "internal error", "request_id", id, "err", err, "path", base.Path.String())
		out.Message = "internal error: the request could not be completed; quote the request id when reporting it"
		if errors.Is(err, context.DeadlineExceeded) {
			out.Message = "the request ran out of time (REQUEST_TIMEOUT) and was stopped; retry later"
		}
		out.Extensions["code"] = string(apperr.Internal)
		out.Extensions["requestId"] = id
		return out
	}
}

var (
	// graphQLName is what a document's identifiers look like; such words are safe to repeat.
	graphQLName = regexp.MustCompile(`^[_A-Za-z][_0-9A-Za-z]{0,63}$`)
	// punctuator is what the lexer quotes in syntax errors (Unexpected "}").
	punctuator = regexp.MustCompile(`^(?:[!$&():=@\[\]{|}]|\.\.\.)$`)
	// quotedText is a double-quoted string inside a message, with escapes.
	quotedText = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// notAValidEnum is gqlparser's message for a variable's unknown enum value, which it prints unquoted.
	notAValidEnum = regexp.MustCompile(`(?s)^(.*) is not a valid ([_A-Za-z][_0-9A-Za-z]*)$`)
	// suggestion is the "Did you mean …?" gqlparser appends to a validation message (core.SuggestList*,
	// fields_on_correct_type); it always ends the message.
	suggestion = regexp.MustCompile(`(?s)\s*Did you mean .*$`)
	// operationNotFound is gqlgen's message for an operationName that names no operation.
	operationNotFound = regexp.MustCompile(`(?s)^operation (.*) not found$`)
)

// maxDocumentErrorLen bounds a document error's message: gqlparser prints offending literals in full.
const maxDocumentErrorLen = 300

// redactRequestValues keeps gqlparser's and gqlgen's document errors useful without repeating what
// the client sent: values (string literals, variable values, the operationName, unknown input keys in
// the path) are replaced by "…" unless they look like GraphQL names, and the message is bounded.
func redactRequestValues(msg string, path ast.Path) (string, ast.Path) {
	if m := operationNotFound.FindStringSubmatch(msg); m != nil {
		msg = "operationName does not name an operation of the document"
	}
	if m := notAValidEnum.FindStringSubmatch(msg); m != nil && !graphQLName.MatchString(m[1]) {
		msg = "the value is not a valid " + m[2]
	}
	msg = quotedText.ReplaceAllStringFunc(msg, func(q string) string {
		inner := q[1 : len(q)-1]
		if graphQLName.MatchString(inner) || punctuator.MatchString(inner) {
			return q
		}
		return `"…"`
	})
	if utf8.RuneCountInString(msg) > maxDocumentErrorLen {
		msg = string([]rune(msg)[:maxDocumentErrorLen]) + "…"
	}
	var out ast.Path
	for _, el := range path {
		if name, ok := el.(ast.PathName); ok && !graphQLName.MatchString(string(name)) {
			el = ast.PathName("…")
		}
		out = append(out, el)
	}
	return msg, out
}

// recoverFunc turns a resolver panic into an error, logging the stack; the presenter then shows it as
// INTERNAL. The process keeps serving.
func recoverFunc(logger *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in resolver", "request_id", RequestID(ctx), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return fmt.Errorf("panic in resolver: %v", p)
	}
}

// fieldsFromPath names violations that were raised without a field (a scalar that failed to parse
// knows only its value) after their place in the document: ["createTask","input","dueAt"] becomes
// "input.dueAt", the same form resolvers use.
func fieldsFromPath(vs []apperr.Violation, path ast.Path) []apperr.Violation {
	if len(path) < 2 {
		return vs
	}
	var b strings.Builder
	for _, el := range path[1:] {
		switch el := el.(type) {
		case ast.PathName:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(string(el))
		case ast.PathIndex:
			fmt.Fprintf(&b, "[%d]", int(el))
		}
	}
	out := make([]apperr.Violation, len(vs))
	for i, v := range vs {
		if v.Field == "" {
			v.Field = b.String()
		}
		out[i] = v
	}
	return out
}
