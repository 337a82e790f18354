package testsupport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// WSMessage is one graphql-transport-ws message.
type WSMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// WS is a graphql-transport-ws client (what graphql-ws speaks) on one connection.
type WS struct {
	t    testing.TB
	conn *websocket.Conn
	msgs chan WSMessage
	err  error // why the connection ended; set before msgs closes
}

// DialWS opens a graphql-transport-ws connection to env and sends connection_init with payload.
func DialWS(t testing.TB, env *Env, payload map[string]any) *WS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(env.Server.URL, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	conn.SetReadLimit(16 << 20)
	t.Cleanup(func() { _ = conn.CloseNow() })
	c := &WS{t: t, conn: conn, msgs: make(chan WSMessage, 1024)}
	go c.read()
	raw, _ := json.Marshal(payload)
	c.Send(WSMessage{Type: "connection_init", Payload: raw})
	return c
}

func (c *WS) read() {
	defer close(c.msgs)
	for {
		_, b, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		var m WSMessage
		if err := json.Unmarshal(b, &m); err != nil {
			c.err = err
			return
		}
		switch m.Type {
		case "ping":
			c.Send(WSMessage{Type: "pong"})
		case "pong", "ka":
		default:
			c.msgs <- m
		}
	}
}

// Send writes one message.
func (c *WS) Send(m WSMessage) {
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.conn.Write(ctx, websocket.MessageText, b)
}

// Next returns the next message within d; ok is false on timeout or when the connection closed.
func (c *WS) Next(d time.Duration) (WSMessage, bool) {
	select {
	case m, ok := <-c.msgs:
		return m, ok
	case <-time.After(d):
		return WSMessage{}, false
	}
}

// MustAck fails the test unless the next message is connection_ack.
func (c *WS) MustAck() {
	c.t.Helper()
	m, ok := c.Next(5 * time.Second)
	if !ok || m.Type != "connection_ack" {
		c.t.Fatalf("want connection_ack, got %+v (ok=%v, err=%v)", m, ok, c.err)
	}
}

// Subscribe starts operation id (any operation: graphql-transport-ws runs queries and mutations too).
func (c *WS) Subscribe(id, query string, vars map[string]any) {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	c.Send(WSMessage{ID: id, Type: "subscribe", Payload: b})
}

// Result is the answer to a one-shot operation on the socket.
type Result struct {
	Response
	// Closed: the server closed the connection instead of answering (CloseCode, CloseReason).
	Closed      bool
	CloseCode   int
	CloseReason string
}

// Do runs a query or mutation as operation id and returns its answer (its "next", then "complete",
// or an "error"), or how the connection closed.
func (c *WS) Do(id, query string, vars map[string]any) Result {
	c.t.Helper()
	c.Subscribe(id, query, vars)
	var out Result
	for {
		m, ok := c.Next(10 * time.Second)
		if !ok {
			if code, reason, closed := c.Closed(); closed {
				return Result{Closed: true, CloseCode: code, CloseReason: reason}
			}
			c.t.Fatalf("operation %s: no answer within 10s", id)
		}
		if m.ID != id {
			continue // another operation's message
		}
		switch m.Type {
		case "next":
			if err := json.Unmarshal(m.Payload, &out.Response); err != nil {
				c.t.Fatalf("operation %s: bad payload %s", id, m.Payload)
			}
		case "error":
			if err := json.Unmarshal(m.Payload, &out.Errors); err != nil {
				c.t.Fatalf("operation %s: bad error payload %s", id, m.Payload)
			}
			return out
		case "complete":
			return out
		}
	}
}

// Closed reports whether the server closed the connection, with its close code and reason.
func (c *WS) Closed() (code int, reason string, closed bool) {
	select {
	case _, ok := <-c.msgs:
		if ok {
			return 0, "", false
		}
	default:
		return 0, "", false
	}
	var ce websocket.CloseError
	if c.err != nil && errors.As(c.err, &ce) {
		return int(ce.Code), ce.Reason, true
	}
	return int(websocket.CloseStatus(c.err)), "", true
}

// WaitClosed waits up to d for the server to close the connection, discarding what arrives first,
// and returns the close code and reason.
func (c *WS) WaitClosed(d time.Duration) (code int, reason string) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-c.msgs:
			if !ok {
				code, reason, _ := c.Closed()
				return code, reason
			}
		case <-deadline:
			c.t.Fatalf("the connection was still open after %s", d)
		}
	}
}

// Err is why the connection ended (nil while it is open).
func (c *WS) Err() error { return c.err }

// SSE is one graphql-sse stream ("distinct connections" mode: one POST per operation).
type SSE struct {
	t      testing.TB
	cancel context.CancelFunc
	Status int
	events chan string // the data of each "next" event
	done   chan struct{}
}

// OpenSSE POSTs query with Accept: text/event-stream as token (anonymous when empty).
func OpenSSE(t testing.TB, env *Env, token, query string, vars map[string]any) *SSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, env.Server.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := env.Server.Client().Do(req)
	if err != nil {
		t.Fatalf("open SSE: %v", err)
	}
	s := &SSE{t: t, cancel: cancel, Status: res.StatusCode, events: make(chan string, 1024), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.events)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && data != "" {
				s.events <- data
			}
		}
	}()
	return s
}

// Next returns the next event's data within d; ok is false on timeout or when the stream ended.
func (s *SSE) Next(d time.Duration) (string, bool) {
	select {
	case e, ok := <-s.events:
		return e, ok
	case <-time.After(d):
		return "", false
	}
}

// WaitEnded waits up to d for the server to end the stream, discarding events.
func (s *SSE) WaitEnded(d time.Duration) {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return
			}
		case <-deadline:
			s.t.Fatalf("the SSE stream was still open after %s", d)
		}
	}
}

// Close ends the stream from the client's side.
func (s *SSE) Close() { s.cancel(); <-s.done }

// String describes the stream for failure messages.
func (s *SSE) String() string { return fmt.Sprintf("SSE stream (status %d)", s.Status) }
