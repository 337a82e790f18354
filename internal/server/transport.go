package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// The HTTP transports: GraphQL over HTTP as the spec's two JSON media types, an SSE stream
// (graphql-sse's distinct connections mode) and multipart/mixed (incremental delivery as Apollo
// Client and urql read it). guardGraphQL has validated the request and chosen the delivery
// (chooseDelivery); each transport serves one kind. They replace gqlgen's POST, GET, SSE and
// MultipartMixed transports, which answer request errors with data: null and a 422 for
// application/json, send @defer's later payloads in a shape no client reads (or drop them), and set
// no status for the graphql-response+json refusals made by extensions.

// sseKeepAlive is how often an idle event stream gets a comment, so proxies keep it open.
const sseKeepAlive = 25 * time.Second

type jsonTransport struct{}
type sseTransport struct{}
type multipartTransport struct{}

var (
	_ graphql.Transport = jsonTransport{}
	_ graphql.Transport = sseTransport{}
	_ graphql.Transport = multipartTransport{}
)

func servesMedia(r *http.Request, media ...string) bool {
	d, ok := deliveryFrom(r.Context())
	if !ok || isWebsocket(r) {
		return false
	}
	for _, m := range media {
		if d.media == m {
			return true
		}
	}
	return false
}

func (jsonTransport) Supports(r *http.Request) bool {
	return servesMedia(r, mediaJSON, mediaGraphQLResponse)
}

func (sseTransport) Supports(r *http.Request) bool {
	return r.Method == http.MethodPost && servesMedia(r, mediaEventStream)
}

func (multipartTransport) Supports(r *http.Request) bool {
	return r.Method == http.MethodPost && servesMedia(r, mediaMultipart)
}

// Do answers with one JSON document. @defer was dropped for this request (deferDelivery), so the
// single result is the whole answer.
func (jsonTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	d, _ := deliveryFrom(r.Context())
	rc, ok := prepare(w, r, exec, d)
	if !ok {
		return
	}
	if rc.Operation.Operation == ast.Subscription {
		writeRequestError(w, r.Context(), exec, d.json, rc, gqlerror.List{refusal(apperr.BadUserInput, msgSubscriptionTransport)})
		return
	}
	ctx, note := withEscapedNote(r.Context())
	responses, ctx := exec.DispatchOperation(ctx, rc)
	resp := responses(ctx)
	writeGraphQL(w, http.StatusOK, d.media, resp, note.data)
}

const msgSubscriptionTransport = "subscriptions are served over a websocket (graphql-transport-ws) or as an event stream (POST with Accept: text/event-stream)"

// Do answers with an event stream: every result is a next event, then complete. Request errors are
// next events too (the GraphQL over SSE protocol), so the status is always 200.
func (sseTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	params, err := readParams(r)
	if err != nil {
		panic(err) // guardGraphQL has checked the body
	}
	rc, errs := exec.CreateOperationContext(ctx, params)
	h := w.Header()
	h.Set("Content-Type", mediaEventStream)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events on at once
	w.WriteHeader(http.StatusOK)
	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	s.write(":\n\n")
	if errs != nil {
		s.next(requestError(exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)))
		s.write("event: complete\ndata:\n\n")
		return
	}
	responses, ctx := exec.DispatchOperation(ctx, rc)
	stop := s.keepAlive(ctx, sseKeepAlive)
	defer stop()
	for {
		resp := responses(ctx)
		if resp == nil {
			break
		}
		if resp.HasNext != nil && !*resp.HasNext {
			// The last payload of an incremental answer goes out with complete and the end of the
			// body, unflushed so all three leave together: a client that stops reading at
			// hasNext: false and aborts (urql) then finds the response already over.
			s.mu.Lock()
			_, _ = io.WriteString(w, event(framed(resp))+"event: complete\ndata:\n\n")
			s.mu.Unlock()
			return
		}
		s.write(event(framed(resp)))
	}
	if ctx.Err() == nil {
		s.write("event: complete\ndata:\n\n")
	}
}

type eventStream struct {
	mu sync.Mutex
	w  io.Writer
	rc *http.ResponseController
}

func (s *eventStream) write(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, text)
	_ = s.rc.Flush()
}

func (s *eventStream) next(v any) { s.write(event(v)) }

// event is one next event carrying v.
func event(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return "event: next\ndata: " + string(b) + "\n\n"
}

// keepAlive writes a comment every interval until ctx ends or stop is called.
func (s *eventStream) keepAlive(ctx context.Context, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.write(": keep-alive\n\n")
			}
		}
	}()
	return func() { cancel(); <-done }
}

// multipartBoundary is the part delimiter of incremental delivery answers ("---" on the wire).
const multipartBoundary = "-"

// Do answers with multipart/mixed, one part per result (the initial one, then one per deferred
// fragment), flushed as each is ready. Request errors are one JSON answer, as for any request.
func (multipartTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	d, _ := deliveryFrom(r.Context())
	rc, ok := prepare(w, r, exec, d)
	if !ok {
		return
	}
	if rc.Operation.Operation == ast.Subscription {
		writeRequestError(w, r.Context(), exec, d.json, rc, gqlerror.List{refusal(apperr.BadUserInput, msgSubscriptionTransport)})
		return
	}
	h := w.Header()
	h.Set("Content-Type", `multipart/mixed; boundary="`+multipartBoundary+`"; deferSpec=20220824`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flush := http.NewResponseController(w).Flush
	_, _ = io.WriteString(w, "--"+multipartBoundary)
	responses, ctx := exec.DispatchOperation(r.Context(), rc)
	for {
		resp := responses(ctx)
		if resp == nil {
			break
		}
		b, err := json.Marshal(framed(resp))
		if err != nil {
			panic(err)
		}
		_, _ = io.WriteString(w, "\r\nContent-Type: application/json; charset=utf-8\r\n\r\n")
		_, _ = w.Write(b)
		_, _ = io.WriteString(w, "\r\n--"+multipartBoundary)
		if resp.HasNext != nil && *resp.HasNext {
			// More to come: this part goes out now. The last one leaves with the closing delimiter
			// and the end of the body.
			_ = flush()
		}
	}
	_, _ = io.WriteString(w, "--\r\n")
}

// prepare reads the request's parameters and builds its operation; on a request error it answers
// it and reports false.
func prepare(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, d delivery) (*graphql.OperationContext, bool) {
	params, err := readParams(r)
	if err != nil {
		panic(err) // guardGraphQL has checked the parameters
	}
	rc, errs := exec.CreateOperationContext(r.Context(), params)
	if errs != nil {
		writeRequestError(w, r.Context(), exec, d.json, rc, errs)
		return nil, false
	}
	return rc, true
}

// readParams reads the operation from a POST body or a GET query string.
func readParams(r *http.Request) (*graphql.RawParams, error) {
	start := graphql.Now()
	p := &graphql.RawParams{Headers: r.Header}
	if r.Method == http.MethodGet {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, err
		}
		p.Query, p.OperationName = q.Get("query"), q.Get("operationName")
		for name, dst := range map[string]*map[string]any{"variables": &p.Variables, "extensions": &p.Extensions} {
			if s := q.Get(name); s != "" {
				if err := decodeJSON([]byte(s), dst); err != nil {
					return nil, err
				}
			}
		}
	} else if decoded, ok := guardDecoded(r); ok {
		*p = *decoded // what decoding the same body again would give
		p.Headers = r.Header
	} else {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if err := decodeJSON(body, p); err != nil {
			return nil, err
		}
	}
	p.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	return p, nil
}

// guardDecoded returns the parameters guardGraphQL decoded from r's body, if the body is still
// the one it checked and unread.
func guardDecoded(r *http.Request) (*graphql.RawParams, bool) {
	if gb, ok := r.Body.(*guardedBody); ok {
		return gb.decoded()
	}
	return nil, false
}

// errorResult is the answer to a request that failed before execution: no data member at all
// (GraphQL spec: "If an error was raised before execution begins, the data entry should not be
// present"; GraphQL over HTTP relies on it to tell request errors from field errors).
type errorResult struct {
	Errors     gqlerror.List  `json:"errors"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

func requestError(resp *graphql.Response) errorResult {
	return errorResult{Errors: resp.Errors, Extensions: resp.Extensions}
}

// writeRequestError answers a request error in the negotiated JSON media type. As
// application/json it is 200, GraphQL over HTTP's SHOULD for a well-formed request; as
// application/graphql-response+json, whose clients tell request errors by status, a 4xx (or 5xx)
// named by the first error's code. The throttle writer still makes a RATE_LIMITED answer 429 and a
// mutation sent over GET 405.
func writeRequestError(w http.ResponseWriter, ctx context.Context, exec graphql.GraphExecutor, media string, rc *graphql.OperationContext, errs gqlerror.List) {
	resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
	status := http.StatusOK
	if media == mediaGraphQLResponse {
		status = requestErrorStatus(resp.Errors)
	}
	writeGraphQL(w, status, media, requestError(resp), nil)
}

// requestErrorStatus is the application/graphql-response+json status of a request error.
func requestErrorStatus(errs gqlerror.List) int {
	code := ""
	if len(errs) > 0 {
		code, _ = errs[0].Extensions["code"].(string)
	}
	switch apperr.Code(code) {
	case apperr.Unauthenticated:
		return http.StatusUnauthorized
	case apperr.Forbidden:
		return http.StatusForbidden
	case apperr.RateLimited:
		return http.StatusTooManyRequests
	case apperr.Internal:
		return http.StatusInternalServerError
	default:
		return http.StatusBadRequest
	}
}

// writeGraphQL writes v as the answer; escaped is data the response cache served already escaped.
func writeGraphQL(w http.ResponseWriter, status int, media string, v any, escaped []byte) {
	b, release, err := marshalResponse(v, escaped)
	if err != nil {
		panic(err)
	}
	defer release()
	w.Header().Set("Content-Type", media)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// incrementalResult is a later payload of an operation with @defer, in the format of the
// 2022-08-24 incremental delivery draft (deferSpec=20220824) that Apollo Client's
// Defer20220824Handler and urql read: each deferred fragment's data with its path and label.
type incrementalResult struct {
	Incremental []incrementalItem `json:"incremental"`
	HasNext     bool              `json:"hasNext"`
	Extensions  map[string]any    `json:"extensions,omitempty"`
}

type incrementalItem struct {
	Data   json.RawMessage `json:"data"`
	Path   ast.Path        `json:"path"`
	Label  string          `json:"label,omitempty"`
	Errors gqlerror.List   `json:"errors,omitempty"`
}

// framed is how one result goes on a stream: gqlgen's later payloads (those with a path) as
// incremental results, anything else as it is.
func framed(resp *graphql.Response) any {
	if resp.Path == nil {
		return resp
	}
	hasNext := resp.HasNext != nil && *resp.HasNext
	return incrementalResult{
		Incremental: []incrementalItem{{Data: resp.Data, Path: resp.Path, Label: resp.Label, Errors: resp.Errors}},
		HasNext:     hasNext,
		Extensions:  resp.Extensions,
	}
}

// incrementalWebsockets lets websocket clients take @defer's later payloads: they are framed like on
// the HTTP streams, and the operations of the connection keep their @defer (deferDelivery).
func incrementalWebsockets(ws transport.Websocket) transport.Websocket {
	if ws.Implementation == nil {
		ws.Implementation = transport.CoderWebsocketImplementation{}
	}
	ws.Implementation = incrementalWebsocket{ws.Implementation}
	init := ws.InitFunc
	ws.InitFunc = func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		ctx = withDelivery(ctx, delivery{media: "", json: mediaJSON})
		if init == nil {
			return ctx, nil, nil
		}
		return init(ctx, p)
	}
	return ws
}

// incrementalWebsocket frames @defer's later payloads on websocket connections like the HTTP
// streams do (gqlgen's websocket transport sends them in its own shape).
type incrementalWebsocket struct {
	transport.WebsocketImplementation
}

func (i incrementalWebsocket) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	conn, err := i.WebsocketImplementation.Accept(w, r, o)
	if err != nil {
		return nil, err
	}
	return &incrementalConn{WebsocketConn: conn}, nil
}

type incrementalConn struct{ transport.WebsocketConn }

// wsMessage is a graphql-transport-ws (or legacy graphql-ws) message.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (c *incrementalConn) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m wsMessage
	// Only @defer's payloads carry hasNext; subscription events pass through untouched.
	if bytes.Contains(b, []byte(`"hasNext"`)) && json.Unmarshal(b, &m) == nil && (m.Type == "next" || m.Type == "data") {
		var resp graphql.Response
		if json.Unmarshal(m.Payload, &resp) == nil && resp.Path != nil {
			if m.Payload, err = json.Marshal(framed(&resp)); err != nil {
				return err
			}
			return c.WebsocketConn.WriteJSON(m)
		}
	}
	return c.WebsocketConn.WriteJSON(json.RawMessage(b))
}

// The connection keeps the read limit and deadlines the transport sets on it.
func (c *incrementalConn) SetReadLimit(limit int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(limit)
	}
}

func (c *incrementalConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// deferDelivery drops @defer from operations whose answer cannot carry later payloads (a single
// JSON answer), so those clients get the whole answer at once; gqlgen would otherwise send the
// initial payload only, with nulls where the deferred fields go. The operation is copied: the
// parsed document is shared through the query cache.
type deferDelivery struct{}

var (
	_ graphql.HandlerExtension        = deferDelivery{}
	_ graphql.OperationContextMutator = deferDelivery{}
)

func (deferDelivery) ExtensionName() string                   { return "DeferDelivery" }
func (deferDelivery) Validate(graphql.ExecutableSchema) error { return nil }

func (deferDelivery) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if d, ok := deliveryFrom(ctx); (ok && d.incremental()) || oc.Operation == nil || oc.Doc == nil || !hasDefer(oc.Doc) {
		return nil
	}
	doc := *oc.Doc
	doc.Fragments = make(ast.FragmentDefinitionList, len(oc.Doc.Fragments))
	for i, f := range oc.Doc.Fragments {
		c := *f
		doc.Fragments[i] = &c
	}
	for _, f := range doc.Fragments {
		f.SelectionSet = withoutDefer(f.SelectionSet, doc.Fragments)
	}
	op := *oc.Operation
	op.SelectionSet = withoutDefer(op.SelectionSet, doc.Fragments)
	doc.Operations = make(ast.OperationList, len(oc.Doc.Operations))
	for i, o := range oc.Doc.Operations {
		doc.Operations[i] = o
		if o == oc.Operation {
			doc.Operations[i] = &op
		}
	}
	oc.Doc, oc.Operation = &doc, &op
	return nil
}

// hasDefer reports whether the document uses @defer anywhere.
func hasDefer(doc *ast.QueryDocument) bool {
	if doc.Position != nil && doc.Position.Src != nil && !strings.Contains(doc.Position.Src.Input, "defer") {
		return false // the common case, without walking the document
	}
	var walk func(ast.SelectionSet) bool
	walk = func(set ast.SelectionSet) bool {
		for _, sel := range set {
			switch s := sel.(type) {
			case *ast.Field:
				if walk(s.SelectionSet) {
					return true
				}
			case *ast.InlineFragment:
				if s.Directives.ForName("defer") != nil || walk(s.SelectionSet) {
					return true
				}
			case *ast.FragmentSpread:
				if s.Directives.ForName("defer") != nil {
					return true
				}
			}
		}
		return false
	}
	for _, op := range doc.Operations {
		if walk(op.SelectionSet) {
			return true
		}
	}
	for _, f := range doc.Fragments {
		if walk(f.SelectionSet) {
			return true
		}
	}
	return false
}

// withoutDefer copies a selection set without @defer on its fragments; spreads point at the
// copied fragments.
func withoutDefer(set ast.SelectionSet, fragments ast.FragmentDefinitionList) ast.SelectionSet {
	if set == nil {
		return nil
	}
	out := make(ast.SelectionSet, len(set))
	for i, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			c := *s
			c.SelectionSet = withoutDefer(s.SelectionSet, fragments)
			out[i] = &c
		case *ast.InlineFragment:
			c := *s
			c.Directives = dropDefer(s.Directives)
			c.SelectionSet = withoutDefer(s.SelectionSet, fragments)
			out[i] = &c
		case *ast.FragmentSpread:
			c := *s
			c.Directives = dropDefer(s.Directives)
			if f := fragments.ForName(s.Name); f != nil {
				c.Definition = f
			}
			out[i] = &c
		default:
			out[i] = sel
		}
	}
	return out
}

func dropDefer(ds ast.DirectiveList) ast.DirectiveList {
	if ds.ForName("defer") == nil {
		return ds
	}
	out := make(ast.DirectiveList, 0, len(ds))
	for _, d := range ds {
		if d.Name != "defer" {
			out = append(out, d)
		}
	}
	return out
}
