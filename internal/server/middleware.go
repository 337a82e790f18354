package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/observe"
)

type requestIDKey struct{}

// RequestID returns the id of the request being served ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// withRequestID tags each request with an id: the caller's X-Request-ID when it is sane (so a proxy's
// id carries through), otherwise a new one. It is echoed in the response and attached to every log line.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

// withRecover keeps a panic outside the GraphQL executor from killing the connection without an answer.
func withRecover(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger.ErrorContext(r.Context(), "panic in handler", "request_id", RequestID(r.Context()),
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				writeError(w, http.StatusInternalServerError, apperr.Internal, "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withAccessLog writes one structured line per request: request id, method, path, status, duration,
// and (filled in by the GraphQL extension) operation name and type, user id and error codes. Never
// variables, tokens, passwords or the query text.
func withAccessLog(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx, rl := observe.WithRequestLog(r.Context())
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		attrs := append([]slog.Attr{
			slog.String("request_id", RequestID(ctx)), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", rec.status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
		}, rl.Attrs()...)
		logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// writeError answers in GraphQL's error shape with a stable code, for requests refused before execution.
func writeError(w http.ResponseWriter, status int, code apperr.Code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]any{{"message": message, "extensions": map[string]any{"code": string(code)}}},
	})
}

// guardGraphQL refuses malformed requests before gqlgen sees them: wrong method or content type,
// oversized or non-UTF-8 or non-JSON bodies, batched arrays, and mutations over GET. The request is
// never echoed back. It also chooses how the answer is framed (chooseDelivery) for the transports.
func guardGraphQL(maxBody int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebsocket(r) {
			// A websocket upgrade: its operations arrive as messages (graphql-transport-ws), read
			// with the transport's own size limit.
			next.ServeHTTP(w, r)
			return
		}
		accept := parseAccept(r.Header.Get("Accept"))
		switch r.Method {
		case http.MethodPost:
			mediaType, _, err := parseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mediaType != "application/json" {
				discardBody(w, r, false)
				writeError(w, http.StatusUnsupportedMediaType, apperr.BadUserInput, "Content-Type must be application/json")
				return
			}
			tooLarge := func(started bool) {
				discardBody(w, r, started)
				writeError(w, http.StatusRequestEntityTooLarge, apperr.BadUserInput, fmt.Sprintf("request body is larger than %d bytes", maxBody))
			}
			if r.ContentLength > maxBody {
				// Refused from the length alone: a client that waits for 100 Continue never sends it.
				tooLarge(false)
				return
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			switch {
			case err != nil:
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "request body could not be read")
				return
			case int64(len(body)) > maxBody:
				tooLarge(true)
				return
			case !utf8.Valid(body):
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "request body is not valid UTF-8")
				return
			case !json.Valid(body):
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "request body is not valid JSON")
				return
			}
			if b := bytes.TrimLeft(body, " \t\r\n"); len(b) == 0 || b[0] != '{' {
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "request body must be one JSON object {\"query\": ..., \"variables\": ...}; batched arrays are not supported")
				return
			}
			// gqlgen answers a body of the wrong shape (e.g. "variables": 5) with an uncoded error that
			// quotes the whole body; refuse it here instead.
			var params graphql.RawParams
			if decodeParams(body, &params) != nil {
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "request body must be {\"query\": string, \"operationName\": string, \"variables\": object, \"extensions\": object}")
				return
			}
			r.Body = &guardedBody{Reader: bytes.NewReader(body), params: &params}
			r = r.WithContext(withDelivery(r.Context(), chooseDelivery(accept, params.Query)))
		case http.MethodGet:
			params, err := url.ParseQuery(r.URL.RawQuery)
			if err != nil || !jsonObjectOrEmpty(params.Get("variables")) || !jsonObjectOrEmpty(params.Get("extensions")) {
				writeError(w, http.StatusBadRequest, apperr.BadUserInput, "query string must be query=...&operationName=...&variables=<JSON object>")
				return
			}
			if isMutation(params.Get("query"), params.Get("operationName")) {
				w.Header().Set("Allow", "POST")
				writeError(w, http.StatusMethodNotAllowed, apperr.BadUserInput, msgGETMutation)
				return
			}
			// A persisted-query hash hides the document from this check; getRunsQueriesOnly repeats it.
			ctx := context.WithValue(r.Context(), getRequestKey{}, true)
			r = r.WithContext(withDelivery(ctx, delivery{media: accept.json, json: accept.json}))
		case http.MethodOptions:
		default:
			discardBody(w, r, false)
			w.Header().Set("Allow", "GET, POST")
			writeError(w, http.StatusMethodNotAllowed, apperr.BadUserInput, "use POST (or GET for queries)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// maxDiscardBytes and discardTimeout bound how much of a refused body is read and dropped, and for
// how long, so its refusal can be read.
const (
	maxDiscardBytes = 64 << 20
	discardTimeout  = 5 * time.Second
)

// discardBody reads the rest of a body the server refuses before answering: a client still sending
// (curl, a browser) reads the answer only once its body is out, and a connection closed under it
// reaches it as a reset, not as the refusal. A client that waits for "100 Continue" has sent nothing
// and is not asked for it (started reports whether reading already began). A body beyond
// maxDiscardBytes is not read: the connection is closed after the answer.
func discardBody(w http.ResponseWriter, r *http.Request, started bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	if !started && strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		w.Header().Set("Connection", "close")
		return
	}
	if r.ContentLength > maxDiscardBytes {
		w.Header().Set("Connection", "close")
		return
	}
	// A bounded time too: streaming requests (SSE) run without the server's read deadline.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(discardTimeout))
	if n, _ := io.CopyN(io.Discard, r.Body, maxDiscardBytes+1); n > maxDiscardBytes {
		w.Header().Set("Connection", "close")
	}
}

const msgGETMutation = "mutations must be sent with POST; GET only runs queries"

type getRequestKey struct{}

// getRunsQueriesOnly refuses, after the document is known, a GET whose operation is not a query: one
// reached through a persisted-query hash (APQ or trusted documents) that guardGraphQL could not see.
// gqlgen's own check would answer 406 with an uncoded error.
type getRunsQueriesOnly struct{}

var (
	_ graphql.HandlerExtension        = getRunsQueriesOnly{}
	_ graphql.OperationContextMutator = getRunsQueriesOnly{}
)

func (getRunsQueriesOnly) ExtensionName() string                   { return "GETRunsQueriesOnly" }
func (getRunsQueriesOnly) Validate(graphql.ExecutableSchema) error { return nil }

func (getRunsQueriesOnly) MutateOperationContext(ctx context.Context, opCtx *graphql.OperationContext) *gqlerror.Error {
	if get, _ := ctx.Value(getRequestKey{}).(bool); !get || opCtx.Operation == nil || opCtx.Operation.Operation == ast.Query {
		return nil
	}
	markStatus(ctx, http.StatusMethodNotAllowed, "Allow", "POST")
	return refusal(apperr.BadUserInput, msgGETMutation)
}

// guardedBody is a POST body guardGraphQL has read, checked and decoded: the transport reuses the
// decoded parameters (readParams) as long as nobody has read from or replaced the body since.
type guardedBody struct {
	*bytes.Reader
	params *graphql.RawParams
}

func (*guardedBody) Close() error { return nil }

// decoded returns the parameters decoded from the body, if it is still unread.
func (b *guardedBody) decoded() (*graphql.RawParams, bool) {
	if b.params == nil || b.Len() != int(b.Size()) {
		return nil, false
	}
	p := b.params
	b.params = nil // handed out once
	return p, true
}

func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// jsonObjectOrEmpty reports whether s is empty or a JSON object (or null), as gqlgen's GET transport needs.
func jsonObjectOrEmpty(s string) bool {
	var m map[string]any
	return s == "" || decodeJSON([]byte(s), &m) == nil
}

// isMutation reports whether the GET query's selected operation is anything but a query. A document
// that does not parse is left for gqlgen to report.
func isMutation(query, operationName string) bool {
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, parserTokenLimit)
	if err != nil {
		return false
	}
	for _, op := range doc.Operations {
		if (operationName == "" || op.Name == operationName) && op.Operation != ast.Query {
			return true
		}
	}
	return false
}

// withDeadline bounds each request's work, database included: a slow database makes requests fail
// after the timeout instead of piling up and holding every pool connection.
func withDeadline(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
