package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/taskgraph/taskgraph/db"
	"github.com/taskgraph/taskgraph/internal/globalid"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// wsMsg is one graphql-transport-ws message.
type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	msgs chan wsMsg
	err  error // set before msgs closes
}

// dialWS opens a graphql-transport-ws connection to env and sends connection_init with payload.
func dialWS(t *testing.T, env *testsupport.Env, payload map[string]any) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(env.Server.URL, "http") + "/graphql"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	c := &wsClient{t: t, conn: conn, msgs: make(chan wsMsg, 100)}
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			var m wsMsg
			if err := json.Unmarshal(b, &m); err != nil {
				c.err = err
				return
			}
			if m.Type == "ping" {
				c.send(wsMsg{Type: "pong"})
				continue
			}
			if m.Type == "pong" || m.Type == "ka" {
				continue
			}
			c.msgs <- m
		}
	}()
	raw, _ := json.Marshal(payload)
	c.send(wsMsg{Type: "connection_init", Payload: raw})
	return c
}

func (c *wsClient) send(m wsMsg) {
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.conn.Write(ctx, websocket.MessageText, b)
}

// next returns the next message within d; ok is false on timeout or when the socket closed.
func (c *wsClient) next(d time.Duration) (wsMsg, bool) {
	select {
	case m, ok := <-c.msgs:
		return m, ok
	case <-time.After(d):
		return wsMsg{}, false
	}
}

func (c *wsClient) closed() bool {
	select {
	case _, ok := <-c.msgs:
		return !ok
	default:
		return false
	}
}

func (c *wsClient) mustAck() {
	c.t.Helper()
	m, ok := c.next(5 * time.Second)
	if !ok || m.Type != "connection_ack" {
		c.t.Fatalf("want connection_ack, got %+v (ok=%v, err=%v)", m, ok, c.err)
	}
}

func (c *wsClient) subscribe(id, query string, vars map[string]any) {
	b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	c.send(wsMsg{ID: id, Type: "subscribe", Payload: b})
}

type taskEvent struct {
	TaskChanged struct {
		Kind string
		Task *struct {
			ID, Title string
		}
		DeletedTaskID *string
	}
}

const taskChangedSub = `subscription($id: ID) { taskChanged(id: $id) { kind deletedTaskId task { id title } } }`

// waitForReady waits until every env's event listener listens.
func waitForReady(t *testing.T, envs ...*testsupport.Env) {
	t.Helper()
	for _, e := range envs {
		e.WaitEventsReady(t)
	}
}

// untilEvent repeats act (a write through another instance) until c receives a "next" for subID whose
// data satisfies ok, or fails after 5 s. Repeating covers the moment between sending subscribe and
// the server registering it.
func untilEvent(t *testing.T, c *wsClient, subID string, act func(n int), ok func(taskEvent) bool) taskEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		act(n)
		wait := time.Now().Add(400 * time.Millisecond)
		for time.Now().Before(wait) {
			m, got := c.next(time.Until(wait))
			if !got {
				break
			}
			if m.Type != "next" || m.ID != subID {
				t.Fatalf("unexpected message %s %s", m.Type, m.Payload)
			}
			var p struct {
				Data   taskEvent
				Errors []any
			}
			if err := json.Unmarshal(m.Payload, &p); err != nil || len(p.Errors) > 0 {
				t.Fatalf("bad next payload %s", m.Payload)
			}
			if ok(p.Data) {
				return p.Data
			}
		}
	}
	t.Fatal("no matching event within 5s")
	return taskEvent{}
}

func renameThrough(t *testing.T, env *testsupport.Env, token, taskGID string) func(int) {
	return func(n int) {
		c := &testsupport.Client{Env: env, Token: token}
		res := c.Do(t, `mutation($id: ID!, $t: String!) { updateTask(id: $id, input: {title: $t}) { task { id } } }`,
			map[string]any{"id": taskGID, "t": "renamed " + string(rune('a'+n%26))})
		if len(res.Errors) > 0 {
			t.Fatalf("update: %+v", res.Errors)
		}
	}
}

func TestSubscriptionBadTokenClosesSocket(t *testing.T) {
	env := testsupport.NewEnv(t, nil)
	for name, payload := range map[string]map[string]any{
		"garbage": {"Authorization": "Bearer not-a-token"},
		"none":    {},
	} {
		t.Run(name, func(t *testing.T) {
			c := dialWS(t, env, payload)
			for {
				m, ok := c.next(5 * time.Second)
				if !ok {
					break
				}
				if m.Type == "connection_ack" {
					t.Fatal("a bad token was acknowledged")
				}
			}
			if !c.closed() {
				t.Fatal("socket still open after a bad connection_init")
			}
			if code := websocket.CloseStatus(c.err); code != 4403 {
				t.Fatalf("close code %d (%v), want 4403", code, c.err)
			}
		})
	}
}

func TestSubscriptionAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	a := testsupport.NewEnv(t, nil)
	b := testsupport.NewEnvOn(t, a.DB, nil)
	waitForReady(t, a, b)
	u := a.Register(t, "Ada")
	task := a.CreateTask(t, u.ID, db.NewTask{Title: "first"})
	gid := globalid.Encode(globalid.KindTask, task.ID)

	c := dialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token})
	c.mustAck()
	c.subscribe("1", taskChangedSub, map[string]any{"id": gid})
	ev := untilEvent(t, c, "1", renameThrough(t, b, u.Token, gid), func(e taskEvent) bool {
		return e.TaskChanged.Task != nil && strings.HasPrefix(e.TaskChanged.Task.Title, "renamed")
	})
	if ev.TaskChanged.Kind != "UPDATED" || ev.TaskChanged.Task.ID != gid {
		t.Fatalf("event %+v", ev)
	}

	// Deleted through B: A's subscriber hears DELETED with the id.
	res := (&testsupport.Client{Env: b, Token: u.Token}).Do(t, `mutation($id: ID!) { deleteTask(id: $id) { deletedTaskId } }`, map[string]any{"id": gid})
	if len(res.Errors) > 0 {
		t.Fatalf("delete: %+v", res.Errors)
	}
	untilEvent(t, c, "1", func(int) {}, func(e taskEvent) bool {
		return e.TaskChanged.Kind == "DELETED" && e.TaskChanged.DeletedTaskID != nil && *e.TaskChanged.DeletedTaskID == gid
	})
}

func TestSubscriptionOnlyVisibleTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	a := testsupport.NewEnv(t, nil)
	b := testsupport.NewEnvOn(t, a.DB, nil)
	waitForReady(t, a, b)
	owner, assignee, stranger := a.Register(t, "Owner"), a.Register(t, "Assignee"), a.Register(t, "Stranger")
	task := a.CreateTask(t, owner.ID, db.NewTask{Title: "shared", AssigneeID: &assignee.ID})
	gid := globalid.Encode(globalid.KindTask, task.ID)

	// A stranger cannot subscribe to the task by id.
	sc := dialWS(t, a, map[string]any{"authToken": stranger.Token})
	sc.mustAck()
	sc.subscribe("x", taskChangedSub, map[string]any{"id": gid})
	// A resolver error arrives as a "next" carrying errors, then "complete".
	m, ok := sc.next(5 * time.Second)
	if !ok || m.ID != "x" || !strings.Contains(string(m.Payload), "NOT_FOUND") {
		t.Fatalf("stranger subscribing by id: %s %s", m.Type, m.Payload)
	}
	if m, ok := sc.next(5 * time.Second); !ok || m.Type != "complete" || m.ID != "x" {
		t.Fatalf("want complete, got %s %s", m.Type, m.Payload)
	}
	sc.subscribe("all", taskChangedSub, nil)

	ac := dialWS(t, a, map[string]any{"Authorization": "Bearer " + assignee.Token})
	ac.mustAck()
	ac.subscribe("1", taskChangedSub, nil)
	untilEvent(t, ac, "1", renameThrough(t, b, owner.Token, gid), func(e taskEvent) bool {
		return e.TaskChanged.Task != nil && e.TaskChanged.Task.ID == gid
	})
	// One more change after the assignee has seen one: the stranger's subscription must stay silent.
	renameThrough(t, b, owner.Token, gid)(99)
	untilEvent(t, ac, "1", func(int) {}, func(e taskEvent) bool { return e.TaskChanged.Task != nil })
	// A change of the stranger's own, made after: the first thing their subscription hears, since
	// anything about the owner's task would have arrived before it.
	own := a.CreateTask(t, stranger.ID, db.NewTask{Title: "mine"})
	m, ok = sc.next(5 * time.Second)
	if !ok || !strings.Contains(string(m.Payload), globalid.Encode(globalid.KindTask, own.ID)) {
		t.Fatalf("stranger's first event: %s %s, want their own task's", m.Type, m.Payload)
	}
}

func TestSubscriptionEndsAtLogout(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	a := testsupport.NewEnv(t, map[string]string{"SUBSCRIPTION_SESSION_CHECK": "1s"})
	b := testsupport.NewEnvOn(t, a.DB, nil)
	waitForReady(t, a, b)
	u := a.Register(t, "Ada")
	task := a.CreateTask(t, u.ID, db.NewTask{Title: "first"})
	gid := globalid.Encode(globalid.KindTask, task.ID)

	c := dialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token})
	c.mustAck()
	c.subscribe("1", taskChangedSub, nil)
	untilEvent(t, c, "1", renameThrough(t, b, u.Token, gid), func(e taskEvent) bool { return e.TaskChanged.Task != nil })

	res := (&testsupport.Client{Env: b, Token: u.Token}).Do(t, `mutation { logout { ok } }`, nil)
	if len(res.Errors) > 0 {
		t.Fatalf("logout: %+v", res.Errors)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		m, ok := c.next(time.Until(deadline))
		if !ok && c.closed() {
			return // the socket closed
		}
		if ok && m.Type == "complete" && m.ID == "1" {
			return
		}
		if ok && m.Type == "next" {
			continue // an event from before the logout
		}
		if ok {
			t.Fatalf("unexpected %s %s", m.Type, m.Payload)
		}
	}
	t.Fatal("subscription still running 5s after logout")
}

func TestSubscriptionsPerConnectionLimit(t *testing.T) {
	a := testsupport.NewEnv(t, map[string]string{"SUBSCRIPTIONS_PER_CONNECTION": "2"})
	u := a.Register(t, "Ada")
	c := dialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token})
	c.mustAck()
	for _, id := range []string{"1", "2", "3"} {
		c.subscribe(id, taskChangedSub, nil)
	}
	// Exactly one of the three (they start concurrently) is refused; the other two keep running.
	m, ok := c.next(5 * time.Second)
	if !ok || !strings.Contains(string(m.Payload), "at most 2 subscriptions") {
		t.Fatalf("third subscription: %s %s", m.Type, m.Payload)
	}
	if m, ok := c.next(5 * time.Second); !ok || m.Type != "complete" {
		t.Fatalf("want complete, got %s %s", m.Type, m.Payload)
	}
	testenv.WaitFor(t, 5*time.Second, "the two admitted subscriptions", func() bool { return a.App.Feed.Watchers() == 2 })
}

func TestSubscriptionOverSSE(t *testing.T) {
	a := testsupport.NewEnv(t, nil)
	waitForReady(t, a)
	u := a.Register(t, "Ada")
	task := a.CreateTask(t, u.ID, db.NewTask{Title: "first"})
	gid := globalid.Encode(globalid.KindTask, task.ID)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"query": taskChangedSub, "variables": map[string]any{"id": gid}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.Server.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	res, err := a.Server.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		rename := renameThrough(t, a, u.Token, gid)
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case <-time.After(300 * time.Millisecond):
				rename(n)
			}
		}
	})
	defer wg.Wait()
	defer close(done)
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(data, "renamed") {
			var p struct{ Data taskEvent }
			if err := json.Unmarshal([]byte(data), &p); err != nil || p.Data.TaskChanged.Kind != "UPDATED" {
				t.Fatalf("bad event %s", data)
			}
			return
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stream: %v", err)
	}
	t.Fatal("stream ended without an event")
}

func TestNotificationReceivedAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: two instances")
	}
	a := testsupport.NewEnv(t, nil)
	b := testsupport.NewEnvOn(t, a.DB, nil)
	waitForReady(t, a, b)
	owner, assignee := a.Register(t, "Owner"), a.Register(t, "Assignee")
	task := a.CreateTask(t, owner.ID, db.NewTask{Title: "for you"})
	gid := globalid.Encode(globalid.KindTask, task.ID)

	c := dialWS(t, a, map[string]any{"Authorization": "Bearer " + assignee.Token})
	c.mustAck()
	c.subscribe("n", `subscription { notificationReceived { id kind message task { id } } }`, nil)
	ob := &testsupport.Client{Env: b, Token: owner.Token}
	assign := func(to any) {
		res := ob.Do(t, `mutation($id: ID!, $a: ID) { updateTask(id: $id, input: {assigneeId: $a}) { task { id } } }`,
			map[string]any{"id": gid, "a": to})
		if len(res.Errors) > 0 {
			t.Fatalf("assign: %+v", res.Errors)
		}
	}
	// Each assignment (at a new version) is a new notification; repeat until the subscription is live.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		assign(nil)
		assign(assignee.GlobalID)
		m, ok := c.next(time.Second)
		if !ok {
			continue
		}
		if m.Type != "next" || !strings.Contains(string(m.Payload), "TASK_ASSIGNED") || !strings.Contains(string(m.Payload), gid) {
			t.Fatalf("unexpected %s %s", m.Type, m.Payload)
		}
		return
	}
	t.Fatal("no notification within 10s")
}
