package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	coderws "github.com/coder/websocket"

	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/events"
	"github.com/taskgraph/taskgraph/internal/policy"
)

// Live subscriptions: graphql-transport-ws (and legacy graphql-ws) over a websocket, and SSE.
const (
	// wsKeepAlive is how often the server pings an idle websocket.
	wsKeepAlive = 25 * time.Second
	// wsInitTimeout is how long a client has to send connection_init.
	wsInitTimeout = 10 * time.Second
	// wsReadLimit is the largest message a client may send over the websocket.
	wsReadLimit int64 = 64 << 10
	// closeUnauthorized is graphql-transport-ws's close code for a refused connection_init.
	closeUnauthorized = 4403
)

// isWebsocket reports whether r asks for a websocket upgrade.
func isWebsocket(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// isEventStream reports whether r asks for an SSE answer.
func isEventStream(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// isStreaming: the request lives as long as its subscriptions.
func isStreaming(r *http.Request) bool { return isWebsocket(r) || isEventStream(r) }

// websocketTransport authenticates in connection_init with the same token check as the HTTP
// middleware; the connection's context carries the viewer and the per-connection subscription limit.
func websocketTransport(d Deps) transport.Websocket {
	lookup := sessionLookup(d.DB, d.Cache)
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
		Implementation:        transport.CoderWebsocketImplementation{AcceptOptions: accept},
		KeepAlivePingInterval: wsKeepAlive,
		InitTimeout:           wsInitTimeout,
		PayloadReadLimit:      &readLimit,
		InitFunc: func(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx = events.WithConnLimit(ctx, perConn)
			raw := initToken(payload)
			if raw == "" {
				if _, ok := auth.ActorFrom(ctx); ok {
					return ctx, nil, nil // authenticated by the upgrade request's Authorization header
				}
				return refuseInit(ctx, "connection_init must carry an access token")
			}
			claims, err := d.Tokens.Verify(raw)
			if err != nil {
				return refuseInit(ctx, "access token is invalid or expired")
			}
			userID, role, err := lookup(ctx, claims.SessionID)
			switch {
			case errors.Is(err, auth.ErrSessionInactive) || (err == nil && userID != claims.UserID):
				return refuseInit(ctx, "access token is invalid or expired")
			case err != nil:
				d.Logger.ErrorContext(ctx, "websocket init: session lookup failed", "error", err.Error())
				return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, 4500), "unavailable"), nil,
					errors.New("temporarily unable to verify the access token")
			}
			return auth.WithActor(ctx, policy.Actor{UserID: userID, Role: role, SessionID: claims.SessionID}), nil, nil
		},
	}
}

func refuseInit(ctx context.Context, msg string) (context.Context, *transport.InitPayload, error) {
	return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, closeUnauthorized), "Forbidden"), nil, errors.New(msg)
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
// other request goes to regular.
func withStreaming(shutdown context.Context, streaming, regular http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isStreaming(r) {
			regular.ServeHTTP(w, r)
			return
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
