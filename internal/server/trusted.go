package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/internal/apperr"
)

// trustedDocuments accepts only operations from a fixed manifest (hash → document), the production
// mode where clients ship their documents at build time. A client may send the document itself or
// only its hash in the APQ extension (`{"persistedQuery": {"version": 1, "sha256Hash": ...}}`).
type trustedDocuments struct {
	docs map[string]string
}

// loadTrustedDocuments reads a JSON object mapping sha256 hex hashes to documents, checking each hash.
func loadTrustedDocuments(path string) (*trustedDocuments, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read trusted documents: %w", err)
	}
	var docs map[string]string
	if err := json.Unmarshal(raw, &docs); err != nil {
		return nil, fmt.Errorf("parse trusted documents %s: want a JSON object of sha256 → document: %w", path, err)
	}
	for hash, doc := range docs {
		if documentHash(doc) != hash {
			return nil, fmt.Errorf("trusted documents %s: hash %s does not match its document", path, hash)
		}
	}
	return &trustedDocuments{docs: docs}, nil
}

func documentHash(doc string) string {
	sum := sha256.Sum256([]byte(doc))
	return hex.EncodeToString(sum[:])
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*trustedDocuments)(nil)

func (t *trustedDocuments) ExtensionName() string                   { return "TrustedDocuments" }
func (t *trustedDocuments) Validate(graphql.ExecutableSchema) error { return nil }
func (t *trustedDocuments) MutateOperationParameters(_ context.Context, p *graphql.RawParams) *gqlerror.Error {
	if p.Query != "" {
		if _, ok := t.docs[documentHash(p.Query)]; ok {
			return nil
		}
		return refusal(apperr.Forbidden, "this server only runs its trusted documents; this document is not one of them")
	}
	var hash string
	if pq, ok := p.Extensions["persistedQuery"].(map[string]any); ok {
		hash, _ = pq["sha256Hash"].(string)
	}
	doc, ok := t.docs[hash]
	if !ok {
		return refusal(apperr.Forbidden, "unknown trusted document hash")
	}
	p.Query = doc
	delete(p.Extensions, "persistedQuery") // resolved here; APQ must not try to register it
	return nil
}

// refusal is a pre-execution error carrying a domain code. The code is also set on the error
// itself: gqlgen's websocket transport sends pre-execution errors of the "user" kind as they are,
// without the presenter, and a refusal must read the same over every transport.
func refusal(code apperr.Code, msg string) *gqlerror.Error {
	return refusalOf(apperr.New(code, "%s", msg))
}

// refusalOf is refusal for a prepared domain error (a RATE_LIMITED one with its retry delay).
func refusalOf(e *apperr.Error) *gqlerror.Error {
	ext := map[string]any{"code": string(e.Code)}
	if e.RetryAfter > 0 {
		ext["retryAfter"] = int(math.Ceil(e.RetryAfter.Seconds()))
	}
	return &gqlerror.Error{Err: e, Message: e.Message, Extensions: ext}
}

// persistedQueries is gqlgen's automatic persisted queries with its request errors (bad extension
// data, a hash that does not match) given the BAD_USER_INPUT code; "not found" keeps the protocol's
// own code, which clients answer by resending the document.
//
// A document sent with its hash is registered only once the operation is about to run: after it
// parsed, validated, passed the limits and was paid for from the client's budget. gqlgen registers it on
// arrival, so a client could fill the store (every instance's memory, and Redis for a day) with
// documents that are refused, as large as the body limit, without spending anything.
type persistedQueries struct {
	apq extension.AutomaticPersistedQuery
}

// maxPersistedDocumentBytes bounds what one registration stores; a larger document still runs, it is
// just not remembered (the client keeps sending it in full).
const maxPersistedDocumentBytes = 32 << 10

// pendingDocumentKey holds, in the operation's Stats, the document to register once it runs.
const pendingDocumentKey = "PersistedQueries.pending"

type pendingDocument struct{ hash, query string }

// deferredAdd is the APQ cache as gqlgen sees it while checking parameters: reads go to the store,
// registrations wait in the operation context.
type deferredAdd struct{ graphql.Cache[string] }

func (deferredAdd) Add(ctx context.Context, hash, query string) {
	if graphql.HasOperationContext(ctx) {
		graphql.GetOperationContext(ctx).Stats.SetExtension(pendingDocumentKey, pendingDocument{hash: hash, query: query})
	}
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationInterceptor
} = persistedQueries{}

func (p persistedQueries) ExtensionName() string                     { return "PersistedQueries" }
func (p persistedQueries) Validate(s graphql.ExecutableSchema) error { return p.apq.Validate(s) }
func (p persistedQueries) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	apq := extension.AutomaticPersistedQuery{Cache: deferredAdd{p.apq.Cache}}
	err := apq.MutateOperationParameters(ctx, raw)
	if err == nil {
		return nil
	}
	if code, _ := err.Extensions["code"].(string); code == persistedQueryNotFound {
		return err
	}
	return refusal(apperr.BadUserInput, "persisted query: "+err.Message)
}

// InterceptOperation registers the document of an operation that passed every check before it runs.
func (p persistedQueries) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if graphql.HasOperationContext(ctx) {
		if doc, ok := graphql.GetOperationContext(ctx).Stats.GetExtension(pendingDocumentKey).(pendingDocument); ok &&
			len(doc.query) <= maxPersistedDocumentBytes {
			p.apq.Cache.Add(ctx, doc.hash, doc.query)
		}
	}
	return next(ctx)
}
