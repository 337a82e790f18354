package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

func newTestLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func withRequestIDValue(id string) context.Context {
	return context.WithValue(context.Background(), requestIDKey{}, id)
}

func TestRequestIDFromContext(t *testing.T) {
	t.Parallel()
	if got := RequestID(context.Background()); got != "" {
		t.Errorf("RequestID outside a request = %q, want empty", got)
	}
	if got := RequestID(withRequestIDValue("req-1")); got != "req-1" {
		t.Errorf("RequestID = %q, want req-1", got)
	}
}

func TestErrorPresenterKeepsDomainErrors(t *testing.T) {
	t.Parallel()
	twoFields := func() error {
		var v apperr.Violations
		v.Add("input.title", "must not be empty")
		v.Add("input.tags[1]", "is not a valid tag")
		return v.Err()
	}()
	tests := []struct {
		name       string
		err        error
		code       string
		message    string
		field      string // "" means no extensions.field
		violations []apperr.Violation
		// anyViolations skips the violations check.
		anyViolations bool
	}{
		{name: "plain", err: apperr.New(apperr.NotFound, "task not found"), code: "NOT_FOUND", message: "task not found"},
		{name: "invalid field", err: apperr.Invalid("input.title", "must not be empty"), code: "BAD_USER_INPUT",
			message: "input.title: must not be empty", field: "input.title",
			violations: []apperr.Violation{{Field: "input.title", Message: "must not be empty"}}},
		{name: "conflict on a field", err: apperr.FieldError(apperr.Conflict, "expectedVersion", "task is at version 3, not 2"),
			code: "CONFLICT", message: "expectedVersion: task is at version 3, not 2", field: "expectedVersion",
			violations: []apperr.Violation{{Field: "expectedVersion", Message: "task is at version 3, not 2"}}},
		{name: "several violations", err: twoFields, code: "BAD_USER_INPUT",
			message: "input.title: must not be empty; input.tags[1]: is not a valid tag", field: "input.title",
			violations: []apperr.Violation{{Field: "input.title", Message: "must not be empty"}, {Field: "input.tags[1]", Message: "is not a valid tag"}}},
		{name: "violation without field", err: apperr.Invalid("", "bad DateTime"), code: "BAD_USER_INPUT", message: "bad DateTime",
			anyViolations: true},
		{name: "wrapped", err: fmt.Errorf("loading: %w", apperr.New(apperr.Forbidden, "admins only")), code: "FORBIDDEN", message: "admins only"},
		{name: "inside a gqlerror", err: &gqlerror.Error{Err: apperr.New(apperr.Unauthenticated, "sign in"), Message: "sign in",
			Path: ast.Path{ast.PathName("me")}}, code: "UNAUTHENTICATED", message: "sign in"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, logs := newTestLogger()
			got := errorPresenter(logger, false)(withRequestIDValue("req-7"), tc.err)
			if got.Message != tc.message {
				t.Errorf("message = %q, want %q", got.Message, tc.message)
			}
			if got.Extensions["code"] != tc.code {
				t.Errorf("code = %v, want %s", got.Extensions["code"], tc.code)
			}
			field, hasField := got.Extensions["field"]
			if tc.field == "" && hasField {
				t.Errorf("extensions.field = %v, want none", field)
			}
			if tc.field != "" && field != tc.field {
				t.Errorf("extensions.field = %v, want %q", field, tc.field)
			}
			v, hasViolations := got.Extensions["violations"]
			switch {
			case tc.anyViolations:
			case tc.violations == nil && hasViolations:
				t.Errorf("extensions.violations = %v, want none", v)
			case tc.violations != nil && fmt.Sprint(v) != fmt.Sprint(tc.violations):
				t.Errorf("extensions.violations = %v, want %v", v, tc.violations)
			}
			if _, ok := got.Extensions["requestId"]; ok {
				t.Errorf("a domain error carries a requestId: %v", got.Extensions)
			}
			if logs.Len() != 0 {
				t.Errorf("domain errors are not server faults and must not be logged: %s", logs)
			}
		})
	}

	// The path of the error is kept.
	logger, _ := newTestLogger()
	in := &gqlerror.Error{Err: apperr.New(apperr.NotFound, "task not found"), Message: "x",
		Path: ast.Path{ast.PathName("nodes"), ast.PathIndex(2)}}
	if got := errorPresenter(logger, false)(context.Background(), in); got.Path.String() != "nodes[2]" {
		t.Errorf("path = %q, want nodes[2]", got.Path.String())
	}
}

func TestErrorPresenterHidesInternalErrors(t *testing.T) {
	t.Parallel()
	const sqlText = `ERROR: relation "tasks" does not exist (SQLSTATE 42P01)`
	tests := []struct {
		name string
		err  error
	}{
		{"plain", errors.New(sqlText)},
		{"wrapped", fmt.Errorf("tasks: %w", errors.New(sqlText))},
		{"gqlerror without code", gqlerror.Errorf("json request body could not be decoded: %s", sqlText)},
		{"gqlerror with an unknown code", &gqlerror.Error{Message: sqlText, Extensions: map[string]any{"code": "SOMETHING_ELSE"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logger, logs := newTestLogger()
			got := errorPresenter(logger, false)(withRequestIDValue("req-42"), tc.err)
			for _, leak := range []string{"SQL", "relation", "42P01", "tasks", "does not exist"} {
				if strings.Contains(got.Message, leak) {
					t.Errorf("message %q leaks %q", got.Message, leak)
				}
			}
			if got.Message == "" {
				t.Error("empty message")
			}
			if got.Extensions["code"] != "INTERNAL" {
				t.Errorf("code = %v, want INTERNAL", got.Extensions["code"])
			}
			if got.Extensions["requestId"] != "req-42" {
				t.Errorf("requestId = %v, want req-42", got.Extensions["requestId"])
			}
			if len(got.Extensions) != 2 {
				t.Errorf("extensions = %v, want only code and requestId", got.Extensions)
			}
			// The detail goes to the log, tied to the request id.
			line := logs.String()
			if !strings.Contains(line, `relation \"tasks\" does not exist (SQLSTATE 42P01)`) {
				t.Errorf("log does not hold the original error: %s", line)
			}
			if !strings.Contains(line, `"request_id":"req-42"`) || !strings.Contains(line, `"level":"ERROR"`) {
				t.Errorf("log line lacks the request id or ERROR level: %s", line)
			}
		})
	}
}

func TestErrorPresenterMapsGraphQLDocumentErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []string{errcode.ValidationFailed, errcode.ParseFailed} {
		t.Run(code, func(t *testing.T) {
			logger, logs := newTestLogger()
			in := &gqlerror.Error{Message: `Cannot query field "mee" on type "Query".`, Locations: []gqlerror.Location{{Line: 1, Column: 3}}}
			errcode.Set(in, code)
			in.Extensions["internal"] = "must not be passed on"
			got := errorPresenter(logger, false)(withRequestIDValue("req-9"), in)
			if got.Extensions["code"] != "BAD_USER_INPUT" {
				t.Errorf("code = %v, want BAD_USER_INPUT", got.Extensions["code"])
			}
			if got.Message != `Cannot query field "mee" on type "Query".` {
				t.Errorf("message = %q, want gqlgen's message kept", got.Message)
			}
			if len(got.Locations) != 1 || got.Locations[0].Line != 1 || got.Locations[0].Column != 3 {
				t.Errorf("locations = %+v, want line 1 column 3", got.Locations)
			}
			if len(got.Extensions) != 1 {
				t.Errorf("extensions = %v, want only code", got.Extensions)
			}
			if logs.Len() != 0 {
				t.Errorf("a client's document error was logged: %s", logs)
			}
		})
	}
}

func TestRecoverFunc(t *testing.T) {
	t.Parallel()
	logger, logs := newTestLogger()
	ctx := withRequestIDValue("req-panic")
	err := recoverFunc(logger)(ctx, "boom: secret detail")
	if err == nil {
		t.Fatal("recoverFunc returned nil")
	}
	line := logs.String()
	for _, want := range []string{"panic", "boom: secret detail", `"request_id":"req-panic"`, `"level":"ERROR"`, "stack", "TestRecoverFunc"} {
		if !strings.Contains(line, want) {
			t.Errorf("log lacks %q: %s", want, line)
		}
	}
	// What the client finally sees is an INTERNAL error without the panic's detail.
	got := errorPresenter(logger, false)(ctx, err)
	if got.Extensions["code"] != "INTERNAL" || strings.Contains(got.Message, "boom") || strings.Contains(got.Message, "secret") {
		t.Errorf("presented panic = %q %v", got.Message, got.Extensions)
	}
	if got.Extensions["requestId"] != "req-panic" {
		t.Errorf("requestId = %v", got.Extensions["requestId"])
	}
	// A panic value that is an error works too.
	if err := recoverFunc(logger)(ctx, errors.New("nil map")); err == nil || !strings.Contains(logs.String(), "nil map") {
		t.Errorf("error panic value: err=%v, log %s", err, logs)
	}
}

// TestPresenterDatabaseUnavailable: an error that means the database could not be reached (down,
// failing over) is UNAVAILABLE with a fixed message and the request id, never the driver's words.
func TestPresenterDatabaseUnavailable(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("create task: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}),
		fmt.Errorf("create task: %w", &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}),
		fmt.Errorf("list: %w", pgconn.ErrConnClosed),
	} {
		logger, _ := newTestLogger()
		got := errorPresenter(logger, false)(withRequestIDValue("req-7"), err)
		if got.Extensions["code"] != "UNAVAILABLE" || got.Message != UnavailableMessage || got.Extensions["requestId"] != "req-7" {
			t.Errorf("%v: presented as %q %v", err, got.Message, got.Extensions)
		}
	}
}
