package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	coderws "github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/apperr"
	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/events"
)

// Live subscriptions: graphql-transport-ws (and legacy graphql-ws) over a websocket, and SSE.
const (
	// wsKeepAlive is how often the server pings an idle websocket.
	wsKeepAlive = 25 * time.Second
	// wsInitTimeout is how long a client has to send connection_init.
	wsInitTimeout = 10 * time.Second
	// wsReadLimit is the largest message a client may send over the websocket.
	wsReadLimit int64 = 64 << 10
)

// isWebsocket reports whether r asks for a websocket upgrade.
func isWebsocket(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// isEventStream reports whether r asks for an SSE answer above all (urql lists text/event-stream
// after the JSON types in every request: those get JSON).
func isEventStream(r *http.Request) bool { return prefersEventStream(r) }

// isStreaming: the request lives as long as its subscriptions.
func isStreaming(r *http.Request) bool { return isWebsocket(r) || isEventStream(r) }

// websocketTransport authenticates in connection_init with the same check as the HTTP middleware
// (accounts.Authenticate) and registers the connection with the session watch, which closes it
// (4403, with the reason) when its session ends, its user's role changes or its token expires. The
// connection's context carries the actor, the claims for re-checking every operation (liveAuth)
// and the per-connection subscription limit.
func websocketTransport(d Deps) transport.Websocket {
	accept := coderws.AcceptOptions{}
	for _, o := range d.Config.CORSAllowedOrigins {
		if o == "*" {
			accept.InsecureSkipVerify = true
			break
		}
		if u, err := url.Parse(o); err == nil && u.Host != "" {
			accept.OriginPatterns = append(accept.OriginPatterns, u.Host)
		}
	}
	readLimit := wsReadLimit
	perConn := int(d.Config.SubscriptionsPerConnection)
	return transport.Websocket{
		Implementation:        heldWebsockets{transport.CoderWebsocketImplementation{AcceptOptions: accept}},
		KeepAlivePingInterval: wsKeepAlive,
		InitTimeout:           wsInitTimeout,
		PayloadReadLimit:      &readLimit,
		InitFunc: func(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx = events.WithConnLimit(ctx, perConn)
			claims, ok := auth.ClaimsFrom(ctx) // the upgrade request's Authorization header, if any
			if raw := initToken(payload); raw != "" {
				c, err := d.Tokens.Verify(raw)
				if err != nil {
					return refuseInit(ctx, "access token is invalid or expired")
				}
				claims, ok = c, true
			}
			if !ok {
				return refuseInit(ctx, "connection_init must carry an access token")
			}
			a, err := d.Services.Accounts.Authenticate(ctx, claims)
			switch {
			case errors.Is(err, auth.ErrSessionInactive):
				return refuseInit(ctx, "access token is invalid or expired")
			case err != nil:
				d.Logger.ErrorContext(ctx, "websocket init: session lookup failed", "error", err.Error())
				return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, 4500), "unavailable"), nil,
					errors.New("temporarily unable to verify the access token")
			}
			if d.Sessions != nil {
				held := heldFrom(ctx)
				release, err := d.Sessions.Open(a, claims.ExpiresAt, func(reason string) { held.close(closeForbidden, reason) })
				if err != nil {
					return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, closePolicyViolation), "too many connections"),
						nil, err
				}
				context.AfterFunc(ctx, release)
			}
			return withLive(auth.WithClaims(auth.WithActor(ctx, a), claims)), nil, nil
		},
	}
}

// Websocket close codes. graphql-ws clients retry after 4403 (so a client whose session ended, or
// whose token expired, reconnects with fresh credentials from connectionParams) and give up after
// 1008 (a refusal retrying cannot fix).
const (
	closeForbidden       = 4403
	closePolicyViolation = 1008
)

// heldWebsockets wraps the websocket implementation so that the connection can be closed from
// outside gqlgen's transport (the session watch), with a close code and reason of our choosing.
type heldWebsockets struct {
	inner transport.WebsocketImplementation
}

func (h heldWebsockets) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	conn, err := h.inner.Accept(w, r, o)
	if err == nil {
		if held := heldFrom(r.Context()); held != nil {
			held.set(conn)
		}
	}
	return conn, err
}

// heldConn is one request's websocket, once accepted.
type heldConn struct {
	mu   sync.Mutex
	conn transport.WebsocketConn
}

func (h *heldConn) set(c transport.WebsocketConn) {
	h.mu.Lock()
	h.conn = c
	h.mu.Unlock()
}

// close ends the websocket with code and reason; gqlgen's transport then stops its subscriptions.
func (h *heldConn) close(code int, reason string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	c := h.conn
	h.mu.Unlock()
	if c != nil {
		_ = c.WriteClose(code, reason)
		_ = c.Close()
	}
}

type heldKey struct{}

func heldFrom(ctx context.Context) *heldConn {
	h, _ := ctx.Value(heldKey{}).(*heldConn)
	return h
}

// withLiveStream prepares long-lived requests: a websocket upgrade gets a holder for its connection;
// an SSE stream of a signed-in actor is registered with the session watch, which ends it (and its
// subscription) when its session ends, its role changes or its token expires.
func withLiveStream(sessions *SessionWatch, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case isWebsocket(r):
			r = r.WithContext(context.WithValue(r.Context(), heldKey{}, &heldConn{}))
		case isEventStream(r) && sessions != nil:
			a, signedIn := auth.ActorFrom(r.Context())
			claims, _ := auth.ClaimsFrom(r.Context())
			if !signedIn {
				break
			}
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			release, err := sessions.Open(a, claims.ExpiresAt, func(string) { cancel() })
			if err != nil {
				writeError(w, http.StatusTooManyRequests, apperr.RateLimited, err.(*apperr.Error).Message)
				return
			}
			defer release()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

type liveKey struct{}

// withLive marks ctx as a long-lived connection's: every operation on it re-authenticates.
func withLive(ctx context.Context) context.Context { return context.WithValue(ctx, liveKey{}, true) }

// liveAuth re-authenticates every operation of a long-lived connection (a websocket) with the
// claims it was opened with, so that a revoked session, an expired token or a changed role refuses
// the next operation, whatever the session watch has done yet (a connection whose user's role
// changed must reconnect: what it was allowed was decided for the old role). Other operations were
// authenticated by their own request.
type liveAuth struct {
	authenticate auth.Authenticator
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = liveAuth{}

func (liveAuth) ExtensionName() string                   { return "LiveAuth" }
func (liveAuth) Validate(graphql.ExecutableSchema) error { return nil }

func (l liveAuth) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if live, _ := ctx.Value(liveKey{}).(bool); !live {
		return next(ctx)
	}
	claims, _ := auth.ClaimsFrom(ctx)
	opened := auth.Actor(ctx)
	a, err := l.authenticate(ctx, claims)
	switch {
	case err == nil && a.Role != opened.Role:
		return refuseOperation(apperr.Unauthenticated, reasonRoleChanged)
	case errors.Is(err, auth.ErrSessionInactive):
		return refuseOperation(apperr.Unauthenticated, "access token is invalid or expired: reconnect with a fresh one")
	case err != nil:
		code := apperr.Internal
		if db.IsUnavailable(err) {
			code = apperr.Unavailable
		}
		return refuseOperation(code, "temporarily unable to verify the access token")
	}
	return next(auth.WithActor(ctx, a))
}

func refuseOperation(code apperr.Code, msg string) graphql.ResponseHandler {
	return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{Message: msg, Extensions: map[string]any{"code": string(code)}}}})
}

func refuseInit(ctx context.Context, msg string) (context.Context, *transport.InitPayload, error) {
	return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, closeForbidden), "Forbidden"), nil, errors.New(msg)
}

// initToken finds the token in a connection_init payload: {"Authorization": "Bearer …"} (any case
// of the key, also under "headers") or {"authToken": "…"}.
func initToken(p transport.InitPayload) string {
	find := func(m map[string]any) string {
		for k, v := range m {
			s, ok := v.(string)
			if !ok {
				continue
			}
			switch strings.ToLower(k) {
			case "authorization":
				scheme, tok, ok := strings.Cut(s, " ")
				if ok && strings.EqualFold(scheme, "Bearer") {
					return strings.TrimSpace(tok)
				}
			case "authtoken", "token":
				return strings.TrimSpace(strings.TrimPrefix(s, "Bearer "))
			}
		}
		return ""
	}
	if t := find(p); t != "" {
		return t
	}
	if h, ok := p["headers"].(map[string]any); ok {
		return find(h)
	}
	return ""
}

// withStreaming serves streaming requests (websocket upgrades, SSE) through streaming, without the
// per-request deadline and server write/read timeouts, and ending when shutdown is done; every
// other request goes to regular. The body of a streaming request is read whole (up to maxBody+1
// bytes, guardGraphQL refuses more) while the server's read deadline still runs: only the answer
// may outlive HTTP_READ_TIMEOUT, never a client trickling its request.
func withStreaming(shutdown context.Context, maxBody int64, streaming, regular http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isStreaming(r) {
			regular.ServeHTTP(w, r)
			return
		}
		// A body refused from its length alone is left to guardGraphQL (which never asks for it).
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength <= maxBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err != nil {
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusRequestTimeout, apperr.BadUserInput, "request body could not be read in time")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		if shutdown != nil {
			stop := context.AfterFunc(shutdown, cancel)
			defer stop()
		}
		streaming.ServeHTTP(w, r.WithContext(ctx))
	})
}

// withFlusher hands SSE requests a writer with Flush (innermost, right before gqlgen).
func withFlusher(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isEventStream(r) {
			if _, ok := w.(http.Flusher); !ok {
				w = streamWriter{w}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// streamWriter gives gqlgen's SSE transport the http.Flusher it asserts, through the wrappers of the
// middleware chain (which expose Unwrap).
type streamWriter struct{ http.ResponseWriter }

func (s streamWriter) Flush()                      { _ = http.NewResponseController(s.ResponseWriter).Flush() }
func (s streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
