package auth

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// ErrSessionInactive is what a SessionLookup wraps when the session is revoked, expired or unknown,
// telling the middleware to answer 401 rather than 503.
var ErrSessionInactive = errors.New("session is not active")

// Authenticator turns a verified token's claims into the operation's actor: the session must be
// live and belong to the token's user, and the role is the user's current one. It returns an error
// wrapping ErrSessionInactive when the token must not be honoured and any other error for faults
// (internal/accounts implements it).
type Authenticator func(ctx context.Context, c Claims) (policy.Actor, error)

const (
	msgInvalidToken = "access token is invalid or expired"
	msgUnavailable  = "temporarily unable to verify the access token"
)

// Middleware turns a Bearer token into the request's actor (and keeps its claims, for connections
// that outlive the request). No Authorization header, an empty one or "Bearer" with no token (what
// client auth links send while signed out) means anonymous; a present but bad token is always 401,
// never silently anonymous, so a client with a stale token learns to refresh instead of seeing empty
// results.
func Middleware(tokens *TokenIssuer, authenticate Authenticator, logger *slog.Logger) func(http.Handler) http.Handler {
	if tokens == nil || authenticate == nil {
		panic("auth.Middleware: tokens and authenticate are required")
	}
	if logger == nil {
		logger = slog.Default()
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			values := r.Header.Values("Authorization")
			if len(values) == 0 || (len(values) == 1 && noCredentials(values[0])) {
				next.ServeHTTP(w, r)
				return
			}
			ctx := r.Context()
			raw, ok := bearerToken(values)
			if !ok {
				logger.DebugContext(ctx, "rejected access token", "reason", "malformed Authorization header")
				writeUnauthorized(w)
				return
			}
			claims, err := tokens.Verify(raw)
			if err != nil {
				logger.DebugContext(ctx, "rejected access token", "reason", err.Error())
				writeUnauthorized(w)
				return
			}
			a, err := authenticate(ctx, claims)
			switch {
			case errors.Is(err, ErrSessionInactive):
				logger.DebugContext(ctx, "rejected access token", "reason", err.Error(), "session_id", claims.SessionID)
				writeUnauthorized(w)
				return
			case err != nil:
				logger.ErrorContext(ctx, "access token: session lookup failed", "session_id", claims.SessionID, "err", err)
				code := apperr.Internal
				if db.IsUnavailable(err) {
					code = apperr.Unavailable // the database is down or failing over: the client retries
				}
				writeError(w, http.StatusServiceUnavailable, code, msgUnavailable)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithClaims(WithActor(ctx, a), claims)))
		})
	}
}

// noCredentials reports whether an Authorization header carries no token at all: empty, or the
// Bearer scheme alone.
func noCredentials(v string) bool {
	v = strings.TrimSpace(v)
	return v == "" || strings.EqualFold(v, "Bearer")
}

// bearerToken accepts exactly one header of the form "Bearer <token>" (scheme case-insensitive).
func bearerToken(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", false
	}
	return token, true
}

func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	writeError(w, http.StatusUnauthorized, apperr.Unauthenticated, msgInvalidToken)
}

// gqlErrorBody mirrors a GraphQL error response so clients parse middleware failures like any other.
type gqlErrorBody struct {
	Errors []gqlError `json:"errors"`
}

type gqlError struct {
	Message    string        `json:"message"`
	Extensions gqlExtensions `json:"extensions"`
}

type gqlExtensions struct {
	Code apperr.Code `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code apperr.Code, msg string) {
	body, err := json.Marshal(gqlErrorBody{Errors: []gqlError{{Message: msg, Extensions: gqlExtensions{Code: code}}}})
	if err != nil {
		// Marshalling fixed strings cannot fail; fall back to a bare status just in case.
		http.Error(w, http.StatusText(status), status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
