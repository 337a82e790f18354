package observe

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/google/uuid"
)

// maxLoggedErrorCodes bounds the error_codes of one log line; the metrics count every error.
const maxLoggedErrorCodes = 16

// RequestLog collects what the GraphQL layer learns about a request for its access-log line. It is
// safe for concurrent use (resolvers run in parallel), and a nil *RequestLog ignores every call. It
// holds only names, ids and codes: never variables, tokens, passwords or the query text.
type RequestLog struct {
	mu            sync.Mutex
	operation     string
	operationType string
	userID        uuid.UUID
	errorCodes    []string
}

type requestLogKey struct{}

// WithRequestLog returns ctx carrying a new RequestLog, and that log. If ctx already carries one, it
// is returned unchanged with it, so nested middleware share one line.
func WithRequestLog(ctx context.Context) (context.Context, *RequestLog) {
	if l := RequestLogFrom(ctx); l != nil {
		return ctx, l
	}
	l := &RequestLog{}
	return context.WithValue(ctx, requestLogKey{}, l), l
}

// RequestLogFrom returns the request's RequestLog, or nil outside one.
func RequestLogFrom(ctx context.Context) *RequestLog {
	l, _ := ctx.Value(requestLogKey{}).(*RequestLog)
	return l
}

// SetOperation records the GraphQL operation's name ("anonymous" when unnamed) and type (query,
// mutation, subscription).
func (l *RequestLog) SetOperation(name, opType string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.operation, l.operationType = name, opType
	l.mu.Unlock()
}

// SetUser records the signed-in user.
func (l *RequestLog) SetUser(id uuid.UUID) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.userID = id
	l.mu.Unlock()
}

// AddErrorCode records the extensions.code of an error in the response. Each code is kept once, in
// the order first seen, and at most 16 distinct codes are kept.
func (l *RequestLog) AddErrorCode(code string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errorCodes) < maxLoggedErrorCodes && !slices.Contains(l.errorCodes, code) {
		l.errorCodes = append(l.errorCodes, code)
	}
}

// Operation returns the recorded operation name and type.
func (l *RequestLog) Operation() (name, opType string) {
	if l == nil {
		return "", ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.operation, l.operationType
}

// UserID returns the recorded user (uuid.Nil when none).
func (l *RequestLog) UserID() uuid.UUID {
	if l == nil {
		return uuid.Nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.userID
}

// ErrorCodes returns a copy of the recorded error codes.
func (l *RequestLog) ErrorCodes() []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errorCodes)
}

// Attrs returns the recorded fields as log attributes: operation, operation_type, user_id and
// error_codes, each only when set (a health check has none of them).
func (l *RequestLog) Attrs() []slog.Attr {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var attrs []slog.Attr
	if l.operation != "" {
		attrs = append(attrs, slog.String("operation", l.operation), slog.String("operation_type", l.operationType))
	}
	if l.userID != uuid.Nil {
		attrs = append(attrs, slog.String("user_id", l.userID.String()))
	}
	if len(l.errorCodes) > 0 {
		attrs = append(attrs, slog.Any("error_codes", slices.Clone(l.errorCodes)))
	}
	return attrs
}
