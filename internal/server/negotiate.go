package server

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Media types of GraphQL over HTTP.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
	mediaEventStream     = "text/event-stream"
	mediaMultipart       = "multipart/mixed"
)

// accepted is what a client's Accept header allows, in its order of preference.
type accepted struct {
	// json is the JSON media type to answer with: application/graphql-response+json when the client
	// prefers it, else application/json (also for no Accept header or one naming nothing we serve).
	json string
	// first is the client's first choice among the JSON types, text/event-stream and
	// multipart/mixed ("" when it names none of them).
	first string
	// streaming is the client's first choice among text/event-stream and multipart/mixed ("": none).
	streaming string
}

// parseAccept reads an Accept header (RFC 9110 §12.5.1): media ranges sorted by q, stable in the
// client's order, q=0 excluded. application/graphql+json (the draft's older name) counts as
// application/graphql-response+json, and */* or application/* as application/json.
func parseAccept(header string) accepted {
	type choice struct {
		media string
		q     float64
	}
	var choices []choice
	for part := range strings.SplitSeq(header, ",") {
		mt, params, err := parseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil && v >= 0 && v <= 1 {
				q = v
			}
		}
		switch mt {
		case mediaGraphQLResponse, "application/graphql+json":
			mt = mediaGraphQLResponse
		case mediaJSON, "application/*", "*/*":
			mt = mediaJSON
		case mediaEventStream, mediaMultipart:
		default:
			continue
		}
		if q > 0 {
			choices = append(choices, choice{mt, q})
		}
	}
	slices.SortStableFunc(choices, func(a, b choice) int {
		switch {
		case a.q > b.q:
			return -1
		case a.q < b.q:
			return 1
		}
		return 0
	})
	out := accepted{}
	for _, c := range choices {
		if out.first == "" {
			out.first = c.media
		}
		switch c.media {
		case mediaJSON, mediaGraphQLResponse:
			if out.json == "" {
				out.json = c.media
			}
		default:
			if out.streaming == "" {
				out.streaming = c.media
			}
		}
	}
	if out.json == "" {
		out.json = mediaJSON
	}
	if out.first == "" {
		out.first = mediaJSON
	}
	return out
}

// delivery is how the answer to one GraphQL request is framed.
type delivery struct {
	// media is the answer's media type: application/json or application/graphql-response+json (one
	// whole answer), text/event-stream (graphql-sse's distinct connections mode) or multipart/mixed
	// (incremental delivery); "" for a websocket, whose messages frame the results.
	media string
	// json is the JSON media type for an answer that is not a stream (request errors).
	json string
}

// incremental reports whether the answer can carry @defer's later payloads; otherwise the request
// gets the whole answer at once.
func (d delivery) incremental() bool {
	return d.media == mediaEventStream || d.media == mediaMultipart || d.media == ""
}

type deliveryKey struct{}

func withDelivery(ctx context.Context, d delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

// deliveryFrom returns the delivery chosen for the request of ctx (ok false outside one).
func deliveryFrom(ctx context.Context) (delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(delivery)
	return d, ok
}

// deferDirective finds @defer in a document's text (GraphQL allows ignored tokens after the @).
// A false match only means a streaming answer with a single result.
var deferDirective = regexp.MustCompile(`@[\s,]*defer\b`)

// chooseDelivery picks the framing of the answer to a POST: the client's first choice, except that
// a client that prefers JSON but also accepts a streaming type (urql lists text/event-stream and
// multipart/mixed after the JSON types in every request) gets the stream only when the operation
// has something to stream (@defer). A subscription that ends up with a JSON answer is refused by
// the JSON transport.
func chooseDelivery(a accepted, query string) delivery {
	d := delivery{media: a.json, json: a.json}
	switch {
	case a.first == mediaEventStream || a.first == mediaMultipart:
		d.media = a.first
	case a.streaming != "" && deferDirective.MatchString(query):
		d.media = a.streaming
	}
	return d
}

// prefersEventStream reports whether r is a POST whose client wants an event stream above all
// (graphql-sse, urql's subscriptions): its answer, refusals included, is an SSE stream.
func prefersEventStream(r *http.Request) bool {
	return r.Method == http.MethodPost && parseAccept(r.Header.Get("Accept")).first == mediaEventStream
}

// maxRefusalBody bounds what withNegotiatedRefusals holds back to reframe; refusals are a few
// hundred bytes.
const maxRefusalBody = 64 << 10

// withNegotiatedRefusals makes every answer written before GraphQL runs (the auth middleware's 401,
// the request guard's 400/405/413/415, a recovered panic's 500) honour the negotiated media type:
// application/graphql-response+json when the client prefers it, so clients such as Apollo Client 4
// read the error and its extensions.code; and for a client that asked for an event stream, the
// GraphQL over SSE protocol's framing: a 200 stream whose next event carries the errors, then
// complete (a 4xx makes EventSource and graphql-sse drop the body, and graphql-sse retry).
func withNegotiatedRefusals(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebsocket(r) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept")
		rw := &refusalWriter{ResponseWriter: w, json: parseAccept(r.Header.Get("Accept")).json, sse: prefersEventStream(r)}
		next.ServeHTTP(rw, r)
		rw.finish()
	})
}

// refusalWriter rewrites JSON refusals on their way out; any other answer passes through untouched.
type refusalWriter struct {
	http.ResponseWriter
	json        string // the JSON media type the client prefers
	sse         bool   // the client asked for an event stream
	wroteHeader bool
	held        *bytes.Buffer // a refusal held back to be sent as an event (sse only)
}

func (rw *refusalWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	rw.wroteHeader = true
	h := rw.Header()
	if mt, _, _ := parseMediaType(h.Get("Content-Type")); mt == mediaJSON {
		switch {
		case rw.sse:
			rw.held = &bytes.Buffer{}
			return
		case rw.json == mediaGraphQLResponse:
			h.Set("Content-Type", mediaGraphQLResponse)
		}
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *refusalWriter) Write(b []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.held != nil {
		if rw.held.Len()+len(b) <= maxRefusalBody {
			rw.held.Write(b)
		}
		return len(b), nil
	}
	return rw.ResponseWriter.Write(b)
}

// finish sends a held refusal as an event stream: one next event with the GraphQL errors, then
// complete.
func (rw *refusalWriter) finish() {
	if rw.held == nil {
		return
	}
	h := rw.Header()
	h.Set("Content-Type", mediaEventStream)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	rw.ResponseWriter.WriteHeader(http.StatusOK)
	var b bytes.Buffer
	b.WriteString("event: next\ndata: ")
	b.Write(bytes.ReplaceAll(bytes.TrimSpace(rw.held.Bytes()), []byte("\n"), []byte("\ndata: ")))
	b.WriteString("\n\nevent: complete\ndata:\n\n")
	_, _ = rw.ResponseWriter.Write(b.Bytes())
}

func (rw *refusalWriter) Flush() {
	if rw.held == nil {
		_ = http.NewResponseController(rw.ResponseWriter).Flush()
	}
}

func (rw *refusalWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// parseMediaType is mime.ParseMediaType, answered without it (and the parameter map it allocates)
// for a bare lowercase type such as application/json: it runs on every request and every answer.
func parseMediaType(v string) (mediatype string, params map[string]string, err error) {
	if plainMediaType(v) {
		return v, nil, nil
	}
	return mime.ParseMediaType(v)
}

// plainMediaType reports whether v is type/subtype in lowercase token characters, no parameters.
func plainMediaType(v string) bool {
	slash := strings.IndexByte(v, '/')
	if slash <= 0 || slash == len(v)-1 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if i != slash && !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.') {
			return false
		}
	}
	return true
}
