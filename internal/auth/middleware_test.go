package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/taskgraph/taskgraph/internal/policy"
)

type lookupResult struct {
	userID uuid.UUID
	role   policy.Role
	err    error
}

// serve runs one request through the middleware and reports the viewer the handler saw.
func serve(t *testing.T, authz []string, res lookupResult, logs io.Writer) (*httptest.ResponseRecorder, *policy.Actor) {
	t.Helper()
	ti := newTestIssuer(t)
	authenticate := func(ctx context.Context, c Claims) (policy.Actor, error) {
		if res.err != nil {
			return policy.Actor{}, res.err
		}
		return policy.Actor{UserID: res.userID, Role: res.role, SessionID: c.SessionID}, nil
	}
	if logs == nil {
		logs = io.Discard
	}
	var seen *policy.Actor
	var called bool
	h := Middleware(ti, authenticate, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			called = true
			if v, ok := ActorFrom(r.Context()); ok {
				seen = &v
			}
			w.WriteHeader(http.StatusNoContent)
		}))
	req := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	for _, a := range authz {
		req.Header.Add("Authorization", a)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if called != (rec.Code == http.StatusNoContent) {
		t.Fatalf("handler called=%v but status %d", called, rec.Code)
	}
	return rec, seen
}

const want401Body = `{"errors":[{"message":"access token is invalid or expired","extensions":{"code":"UNAUTHENTICATED"}}]}`

func assert401(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
		t.Fatalf("WWW-Authenticate = %q", got)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q", got)
	}
	if got := rec.Body.String(); got != want401Body {
		t.Fatalf("body = %s, want %s", got, want401Body)
	}
}

func TestMiddlewareAnonymous(t *testing.T) {
	rec, v := serve(t, nil, lookupResult{err: errors.New("must not be called")}, nil)
	if rec.Code != http.StatusNoContent || v != nil {
		t.Fatalf("status %d viewer %+v; want pass-through anonymous", rec.Code, v)
	}
}

// TestMiddlewareEmptyCredentialsAreAnonymous: an empty Authorization header, or the Bearer scheme with
// no token, is what client auth links send while signed out (Apollo's documented link sends
// `authorization: ""`); it means anonymous, like no header at all, so register and login work.
func TestMiddlewareEmptyCredentialsAreAnonymous(t *testing.T) {
	for _, h := range []string{"", " ", "Bearer", "Bearer ", "bearer", "BEARER  ", "\tBearer\t"} {
		t.Run(fmt.Sprintf("%q", h), func(t *testing.T) {
			rec, v := serve(t, []string{h}, lookupResult{err: errors.New("must not be called")}, nil)
			if rec.Code != http.StatusNoContent || v != nil {
				t.Fatalf("status %d viewer %+v; want pass-through anonymous", rec.Code, v)
			}
		})
	}
}

func TestMiddlewareMalformedHeader(t *testing.T) {
	ti := newTestIssuer(t)
	tok, _, err := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]string{
		{"Basic dXNlcjpwdw=="}, {"Basic"}, {tok}, {"Bearer  " + tok}, {"Bearerx"},
		{"Bearer " + tok + " extra"}, {"Bearer " + tok, "Bearer " + tok}, {"Bearer not-a-token"},
		{"", ""}, {"", "Bearer " + tok}, {"Bearer", "Bearer"},
	} {
		t.Run(fmt.Sprint(len(h), strings.SplitN(h[0], ".", 2)[0]), func(t *testing.T) {
			rec, v := serve(t, h, lookupResult{err: errors.New("must not be called")}, nil)
			assert401(t, rec)
			if v != nil {
				t.Fatal("viewer set on a rejected request")
			}
		})
	}
}

func TestMiddlewareValidToken(t *testing.T) {
	ti := newTestIssuer(t)
	user, sess := uuid.New(), uuid.New()
	// The token says USER but the database now says ADMIN: the database wins.
	tok, _, err := ti.Issue(user, policy.RoleUser, sess)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		rec, v := serve(t, []string{scheme + " " + tok}, lookupResult{userID: user, role: policy.RoleAdmin}, nil)
		if rec.Code != http.StatusNoContent || v == nil {
			t.Fatalf("%s: status %d viewer %v; want viewer", scheme, rec.Code, v)
		}
		if *v != (policy.Actor{UserID: user, Role: policy.RoleAdmin, SessionID: sess}) {
			t.Fatalf("viewer = %+v", *v)
		}
	}
}

func TestMiddlewareSessionInactive(t *testing.T) {
	ti := newTestIssuer(t)
	user := uuid.New()
	tok, _, _ := ti.Issue(user, policy.RoleUser, uuid.New())
	rec, v := serve(t, []string{"Bearer " + tok}, lookupResult{err: fmt.Errorf("lookup: %w", ErrSessionInactive)}, nil)
	assert401(t, rec)
	if v != nil {
		t.Fatal("viewer set for an inactive session")
	}
}

func TestMiddlewareLookupError(t *testing.T) {
	ti := newTestIssuer(t)
	tok, _, _ := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	var logs strings.Builder
	rec, _ := serve(t, []string{"Bearer " + tok}, lookupResult{err: errors.New("connection refused")}, &logs)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	want := `{"errors":[{"message":"temporarily unable to verify the access token","extensions":{"code":"INTERNAL"}}]}`
	if got := rec.Body.String(); got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
	if rec.Header().Get("WWW-Authenticate") != "" {
		t.Fatal("503 must not tell the client its token is invalid")
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Fatalf("lookup fault not logged: %q", logs.String())
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), strings.Split(tok, ".")[2]) {
		t.Fatal("token was logged")
	}
}

// TestMiddlewareDatabaseUnavailable: when the session cannot be looked up because the database is
// down or failing over, the 503 says UNAVAILABLE, which clients retry.
func TestMiddlewareDatabaseUnavailable(t *testing.T) {
	ti := newTestIssuer(t)
	tok, _, _ := ti.Issue(uuid.New(), policy.RoleUser, uuid.New())
	rec, _ := serve(t, []string{"Bearer " + tok}, lookupResult{err: fmt.Errorf("lookup: %w", &pgconn.PgError{Code: "57P03"})}, nil)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", rec.Code)
	}
	want := `{"errors":[{"message":"temporarily unable to verify the access token","extensions":{"code":"UNAVAILABLE"}}]}`
	if got := rec.Body.String(); got != want {
		t.Fatalf("body = %s, want %s", got, want)
	}
}
