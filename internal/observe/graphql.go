package observe

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/auth"
)

// Client identification headers sent by Apollo-style clients.
const (
	clientNameHeader    = "Apollographql-Client-Name"
	clientVersionHeader = "Apollographql-Client-Version"
)

// codeInternal labels an error without extensions.code.
const codeInternal = "INTERNAL"

// maxErrorCodes bounds the code label; codes are chosen by the server, so this is only a backstop.
const maxErrorCodes = 50

// clientLabelExtra are the bytes kept in client names and versions besides [A-Za-z0-9_]
// ("web-app", "1.4.2").
const clientLabelExtra = ".-"

// GraphQLExtension returns the gqlgen extension that measures operations (duration by name and
// type), counts response error codes and uses of @deprecated fields, marks the viewer as active, and
// fills the request's RequestLog (operation, type, user, error codes). Add it with srv.Use. On a nil
// *Metrics it still fills the RequestLog.
func (m *Metrics) GraphQLExtension() graphql.HandlerExtension {
	return graphqlExtension{m: m}
}

type graphqlExtension struct{ m *Metrics }

var (
	_ graphql.HandlerExtension     = graphqlExtension{}
	_ graphql.OperationInterceptor = graphqlExtension{}
	_ graphql.ResponseInterceptor  = graphqlExtension{}
)

func (graphqlExtension) ExtensionName() string                   { return "Observe" }
func (graphqlExtension) Validate(graphql.ExecutableSchema) error { return nil }

// operationState is one executing operation's, shared by its field and response callbacks.
type operationState struct {
	headers http.Header

	clientOnce                sync.Once
	clientName, clientVersion string
}

type operationStateKey struct{}

// InterceptOperation runs once per executed operation (parsed, validated and admitted); requests
// refused before that are seen by InterceptResponse only.
func (e graphqlExtension) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	opCtx := graphql.GetOperationContext(ctx)
	if opCtx.Operation == nil {
		return next(ctx)
	}
	name, opType := operationName(opCtx.Operation), string(opCtx.Operation.Operation)
	e.noteRequest(ctx, name, opType)
	ctx = context.WithValue(ctx, operationStateKey{}, &operationState{headers: opCtx.Headers})
	e.countDeprecated(ctx, opCtx.Operation)

	start := opCtx.Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	var duration func()
	if e.m != nil {
		label := name
		if label != labelAnonymous {
			label = e.m.operations.get(name)
		}
		hist := e.m.operationDuration.WithLabelValues(label, opType)
		duration = func() { hist.Observe(time.Since(start).Seconds()) }
	}

	responses := next(ctx)
	observed := false
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if resp != nil {
			e.countErrors(ctx, resp.Errors)
		}
		// A query or mutation ends with its (only) response, a subscription when its stream ends.
		if duration != nil && !observed && (resp == nil || opType != string(ast.Subscription)) {
			observed = true
			duration()
		}
		return resp
	}
}

// InterceptResponse sees every response that goes through gqlgen's response chain. Responses of
// executed operations are counted by InterceptOperation's handler (which also sees the few that
// bypass this chain); this counts the rest: requests refused before execution (parse, validation,
// limits, budget), whose context carries no operation state.
func (e graphqlExtension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if ctx.Value(operationStateKey{}) != nil || resp == nil {
		return resp
	}
	if graphql.HasOperationContext(ctx) {
		if op := graphql.GetOperationContext(ctx).Operation; op != nil {
			e.noteRequest(ctx, operationName(op), string(op.Operation))
		}
	}
	e.countErrors(ctx, resp.Errors)
	return resp
}

// countDeprecated counts each selection of a field whose definition carries @deprecated, walking
// the operation once (fragments included) instead of intercepting every resolved field, which would
// cost a closure per field on every request.
func (e graphqlExtension) countDeprecated(ctx context.Context, op *ast.OperationDefinition) {
	if e.m == nil {
		return
	}
	var name, version string
	budget := 10_000 // selections visited; validated documents are far smaller
	var walk func(set ast.SelectionSet, inFragment map[string]bool)
	walk = func(set ast.SelectionSet, inFragment map[string]bool) {
		for _, sel := range set {
			if budget--; budget < 0 {
				return
			}
			switch s := sel.(type) {
			case *ast.Field:
				if isDeprecated(s.Definition) && s.ObjectDefinition != nil {
					if name == "" {
						name, version = e.m.clientLabels(ctx)
					}
					e.m.deprecatedUsage.WithLabelValues(s.ObjectDefinition.Name+"."+s.Name, name, version).Inc()
				}
				walk(s.SelectionSet, inFragment)
			case *ast.InlineFragment:
				walk(s.SelectionSet, inFragment)
			case *ast.FragmentSpread:
				if s.Definition != nil && !inFragment[s.Name] {
					inFragment[s.Name] = true
					walk(s.Definition.SelectionSet, inFragment)
					delete(inFragment, s.Name)
				}
			}
		}
	}
	walk(op.SelectionSet, map[string]bool{})
}

// noteRequest puts the operation and viewer on the request's log line and marks the viewer active.
func (e graphqlExtension) noteRequest(ctx context.Context, name, opType string) {
	l := RequestLogFrom(ctx)
	l.SetOperation(name, opType)
	if v, ok := auth.ActorFrom(ctx); ok {
		l.SetUser(v.UserID)
		e.m.SawUser(v.UserID)
	}
}

// countErrors counts each error's code and adds it to the request's log line.
func (e graphqlExtension) countErrors(ctx context.Context, errs gqlerror.List) {
	if len(errs) == 0 {
		return
	}
	l := RequestLogFrom(ctx)
	for _, err := range errs {
		code := errorCode(err)
		l.AddErrorCode(code)
		if e.m != nil {
			e.m.graphqlErrors.WithLabelValues(e.m.errorCodes.get(code)).Inc()
		}
	}
}

// errorCode is err's extensions.code as a label, "INTERNAL" when it has none.
func errorCode(err *gqlerror.Error) string {
	if err == nil {
		return codeInternal
	}
	code, _ := err.Extensions["code"].(string)
	if code = sanitize(code, ""); code == "" {
		return codeInternal
	}
	return code
}

// operationName is op's name as a label: [A-Za-z0-9_], at most 64 bytes, "anonymous" when unnamed.
func operationName(op *ast.OperationDefinition) string {
	if name := sanitize(op.Name, ""); name != "" {
		return name
	}
	return labelAnonymous
}

// isDeprecated reports whether a field's schema definition is marked @deprecated.
func isDeprecated(def *ast.FieldDefinition) bool {
	return def != nil && def.Directives.ForName("deprecated") != nil
}

// clientLabels are the client_name and client_version labels of the operation in ctx, worked out
// once per operation.
func (m *Metrics) clientLabels(ctx context.Context) (name, version string) {
	st, _ := ctx.Value(operationStateKey{}).(*operationState)
	if st == nil {
		var h http.Header
		if graphql.HasOperationContext(ctx) {
			h = graphql.GetOperationContext(ctx).Headers
		}
		return m.clientPair(h)
	}
	st.clientOnce.Do(func() { st.clientName, st.clientVersion = m.clientPair(st.headers) })
	return st.clientName, st.clientVersion
}

// clientPair sanitizes the client headers ("unknown" when absent) and bounds the distinct pairs.
func (m *Metrics) clientPair(h http.Header) (name, version string) {
	name, version = labelUnknown, labelUnknown
	if h != nil {
		if n := sanitize(strings.TrimSpace(h.Get(clientNameHeader)), clientLabelExtra); n != "" {
			name = n
		}
		if v := sanitize(strings.TrimSpace(h.Get(clientVersionHeader)), clientLabelExtra); v != "" {
			version = v
		}
	}
	if m.clients.get(name+"\x00"+version) == labelOther {
		return labelOther, labelOther
	}
	return name, version
}
