package server

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/google/uuid"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/schemaversion"
)

const (
	// headerIdempotencyKey is the IETF draft's request header (HTTP and graphql-sse requests).
	headerIdempotencyKey = "Idempotency-Key"
	// extensionIdempotencyKey carries the key in a request's extensions: the only way on a websocket,
	// where one connection carries many operations.
	extensionIdempotencyKey = "idempotencyKey"
	// headerReplayed marks an answer that was stored by an earlier request with the same key (Stripe).
	headerReplayed    = "Idempotent-Replayed"
	maxIdempotencyKey = 255
)

// idempotentMutations makes a retried mutation safe: a mutation sent with an Idempotency-Key runs at
// most once per client (the signed-in user, else the client IP) and key; a repeat of the same request
// gets the stored answer, the same key with another request is refused (IDEMPOTENCY_KEY_REUSED), and a
// repeat while the first still runs is refused with a retryable IDEMPOTENCY_KEY_IN_USE. The claim lives
// in PostgreSQL, so it holds across instances; db.InTx marks it committed inside the write's own
// transaction.
type idempotentMutations struct {
	store  *db.DB
	keep   time.Duration // how long a key and its answer are kept
	lease  time.Duration // how long a run may hold its key before a retry may take over
	seal   cipher.AEAD   // stored answers are sealed: they carry tokens (register) and personal data
	logger *slog.Logger
}

// newIdempotentMutations derives the answer-sealing key from the server secret, so every instance
// that shares the secret opens every stored answer.
func newIdempotentMutations(d Deps) (idempotentMutations, error) {
	m := hmac.New(sha256.New, []byte(d.Config.JWTSecret))
	m.Write([]byte("taskgraph idempotency answers v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return idempotentMutations{}, fmt.Errorf("idempotency: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return idempotentMutations{}, fmt.Errorf("idempotency: %w", err)
	}
	return idempotentMutations{store: d.DB, keep: d.Config.IdempotencyKeyTTL,
		lease: d.Config.RequestTimeout + 10*time.Second, seal: aead, logger: d.Logger}, nil
}

// sealAnswer encrypts an answer bound to its key (a sealed answer moved to another row fails to open).
func (m idempotentMutations) sealAnswer(c *db.IdempotencyClaim, plain []byte) ([]byte, error) {
	nonce := make([]byte, m.seal.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return m.seal.Seal(nonce, nonce, plain, []byte(c.Scope+"\x00"+c.Key)), nil
}

func (m idempotentMutations) openAnswer(scope, key string, sealed []byte) ([]byte, error) {
	n := m.seal.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("idempotency: stored answer too short")
	}
	return m.seal.Open(nil, sealed[:n], sealed[n:], []byte(scope+"\x00"+key))
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = idempotentMutations{}

func (idempotentMutations) ExtensionName() string                   { return "IdempotentMutations" }
func (idempotentMutations) Validate(graphql.ExecutableSchema) error { return nil }

// storedAnswer is what is kept of an answer: data and errors (extensions describe the later request).
type storedAnswer struct {
	Data   json.RawMessage `json:"data"`
	Errors gqlerror.List   `json:"errors,omitempty"`
}

func (m idempotentMutations) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
		return next(ctx)
	}
	key, present, problem := idempotencyKeyOf(ctx, oc)
	if !present {
		return next(ctx)
	}
	if problem != "" {
		return refuseOperation(apperr.BadUserInput, problem)
	}
	scope := "ip:" + ClientIP(ctx)
	if a, ok := auth.ActorFrom(ctx); ok {
		scope = "user:" + a.UserID.String()
	}
	hash, err := requestHash(oc)
	if err != nil {
		return refuseOperation(apperr.BadUserInput, "the variables cannot be encoded")
	}
	claim := &db.IdempotencyClaim{Scope: scope, Key: key, Lease: uuid.New()}
	st := m.store.Stores()
	claimed, rec, err := st.Idempotency.Claim(ctx, scope, key, hash, claim.Lease, m.lease, m.keep)
	if err != nil {
		m.logger.ErrorContext(ctx, "idempotency key claim failed", "request_id", RequestID(ctx), "err", err)
		return refuseOperation(apperr.Internal, "internal error: the request could not be completed; retry")
	}
	if !claimed {
		return m.answerExisting(ctx, scope, key, rec, hash)
	}
	h := next(db.WithIdempotencyClaim(ctx, claim))
	first := true
	return func(ctx context.Context) *graphql.Response {
		resp := h(ctx)
		if !first || resp == nil {
			return resp // later payloads of an incremental answer: the first decided the key's fate
		}
		first = false
		m.finish(ctx, claim, resp)
		return resp
	}
}

// finish stores the answer of a run that committed (or succeeded without a transaction), and gives
// the key up after one that wrote nothing, so a retry runs again (Stripe keeps no answer for a
// request that did not execute).
func (m idempotentMutations) finish(ctx context.Context, claim *db.IdempotencyClaim, resp *graphql.Response) {
	// Even when the client has gone: the answer belongs to the write that happened.
	ctx = context.WithoutCancel(ctx)
	st := m.store.Stores()
	var err error
	if claim.Committed() || len(resp.Errors) == 0 {
		var body []byte
		if body, err = json.Marshal(storedAnswer{Data: resp.Data, Errors: resp.Errors}); err == nil {
			if body, err = m.sealAnswer(claim, body); err == nil {
				err = st.Idempotency.Finish(ctx, claim, body)
			}
		}
	} else {
		err = st.Idempotency.Release(ctx, claim)
	}
	if err != nil {
		m.logger.ErrorContext(ctx, "idempotency key: storing the answer failed", "request_id", RequestID(ctx), "err", err)
	}
}

// answerExisting answers a request whose key another run holds or finished.
func (m idempotentMutations) answerExisting(ctx context.Context, scope, key string, rec *db.IdempotencyRecord, hash []byte) graphql.ResponseHandler {
	switch {
	case !bytes.Equal(rec.RequestHash, hash):
		markStatus(ctx, http.StatusUnprocessableEntity, "", "")
		return refuseOperation(apperr.IdempotencyKeyReused,
			"this Idempotency-Key was already used with a different request; use a new key for a new request")
	case rec.Response != nil:
		var a storedAnswer
		plain, err := m.openAnswer(scope, key, rec.Response)
		if err == nil {
			err = json.Unmarshal(plain, &a)
		}
		if err != nil {
			m.logger.ErrorContext(ctx, "idempotency key: stored answer unreadable", "request_id", RequestID(ctx), "err", err)
			return refuseOperation(apperr.Internal, "internal error: the stored answer cannot be read")
		}
		markHeader(ctx, headerReplayed, "true")
		return graphql.OneShot(&graphql.Response{Data: a.Data, Errors: a.Errors,
			Extensions: map[string]any{"apiVersion": schemaversion.Version, "idempotency": map[string]any{"replayed": true}}})
	case rec.CommittedAt != nil && time.Since(*rec.CommittedAt) > m.lease:
		// The write committed but its run died before storing the answer: it must not run again.
		markStatus(ctx, http.StatusConflict, "", "")
		return refuseOperation(apperr.Conflict,
			"the request with this Idempotency-Key was applied but its answer was lost; read the current state instead")
	default:
		markStatus(ctx, http.StatusConflict, "Retry-After", "1")
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
			Message:    "a request with this Idempotency-Key is still running; retry in a second to get its answer",
			Extensions: map[string]any{"code": string(apperr.IdempotencyKeyInUse), "retryAfter": 1},
		}}})
	}
}

// idempotencyKeyOf finds the key: the Idempotency-Key header (not on a websocket, whose upgrade
// headers are the connection's, not the operation's) or extensions.idempotencyKey. problem is set
// when the key is present but unusable.
func idempotencyKeyOf(ctx context.Context, oc *graphql.OperationContext) (key string, present bool, problem string) {
	var fromHeader, fromExt string
	var inHeader, inExt bool
	if live, _ := ctx.Value(liveKey{}).(bool); !live && oc.Headers != nil {
		if vs := oc.Headers.Values(headerIdempotencyKey); len(vs) > 0 {
			if len(vs) > 1 {
				return "", true, "send one Idempotency-Key header"
			}
			fromHeader, inHeader = vs[0], true
		}
	}
	if raw, ok := oc.Extensions[extensionIdempotencyKey]; ok {
		s, isString := raw.(string)
		if !isString {
			return "", true, "extensions.idempotencyKey must be a string"
		}
		fromExt, inExt = s, true
	}
	switch {
	case inHeader && inExt && fromHeader != fromExt:
		return "", true, "the Idempotency-Key header and extensions.idempotencyKey differ"
	case inHeader:
		key = fromHeader
	case inExt:
		key = fromExt
	default:
		return "", false, ""
	}
	if !validIdempotencyKey(key) {
		return "", true, "an Idempotency-Key is 1 to 255 visible ASCII characters"
	}
	return key, true, ""
}

// validIdempotencyKey: 1..255 VCHARs (RFC 5234: visible ASCII, no spaces or controls).
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > maxIdempotencyKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestHash identifies the request a key was used with: operation name, document and variables
// (json.Marshal sorts map keys, so equal variables hash equally).
func requestHash(oc *graphql.OperationContext) ([]byte, error) {
	vars, err := json.Marshal(oc.Variables)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	for _, part := range []string{oc.OperationName, oc.RawQuery, string(vars)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return h.Sum(nil), nil
}
