package server_test

// One authorization matrix, run through every transport: seven actors (owner, assignee, stranger,
// admin, anonymous, a revoked session, a demoted admin) × the objects (task, job, notification,
// webhook, user, export URL) × the actions on them (see, change, list, and hearing of changes).
// Every transport — HTTP POST, HTTP GET, a websocket operation, SSE, and subscription events over
// websocket and SSE — must give the same answer, the one internal/policy decides.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// The actors, in the order they run: the owner last, so that what the owner changes (a deleted
// webhook, a notification marked read) was still there for everyone else.
var matrixActors = []string{"assignee", "stranger", "admin", "anonymous", "revoked", "demoted", "owner"}

const (
	unauth    = "UNAUTHENTICATED"
	notFound  = "NOT_FOUND"
	forbidden = "FORBIDDEN"
	conflict  = "CONFLICT"
)

// matrixAction is one thing an actor tries. read turns a successful answer's data into a label;
// an error answer is labelled with its code.
type matrixAction struct {
	name     string
	query    string
	mutation bool
	vars     func(f *matrixFixture, transport int) map[string]any
	read     func(f *matrixFixture, data json.RawMessage) string
	before   func(t *testing.T, f *matrixFixture) // runs before each attempt (restores what one may change)
	want     map[string]string                    // by actor; anonymous and revoked default to UNAUTHENTICATED
}

// matrixFixture is the world the actors act on, all of it the owner's.
type matrixFixture struct {
	env                                *testsupport.Env
	users                              map[string]*testsupport.User
	task, job, notification, exportURL string
	webhooks                           []string // one per transport that may delete it
	ownerID                            string
}

func listed(field string, id func(f *matrixFixture) string) func(*matrixFixture, json.RawMessage) string {
	return func(f *matrixFixture, data json.RawMessage) string {
		if strings.Contains(string(data), `"`+id(f)+`"`) {
			return "LISTED"
		}
		return "NOT_LISTED"
	}
}

func ok(*matrixFixture, json.RawMessage) string { return "OK" }

func byID(id func(f *matrixFixture) string) func(*matrixFixture, int) map[string]any {
	return func(f *matrixFixture, _ int) map[string]any { return map[string]any{"id": id(f)} }
}

var (
	theTask         = func(f *matrixFixture) string { return f.task }
	theJob          = func(f *matrixFixture) string { return f.job }
	theNotification = func(f *matrixFixture) string { return f.notification }
	theOwner        = func(f *matrixFixture) string { return f.ownerID }
	firstWebhook    = func(f *matrixFixture) string { return f.webhooks[0] }
)

// everyoneElse fills the expectation of the signed-in actors not named in m with v.
func everyoneElse(m map[string]string, v string) map[string]string {
	for _, a := range []string{"owner", "assignee", "stranger", "admin", "demoted"} {
		if _, set := m[a]; !set {
			m[a] = v
		}
	}
	return m
}

var matrixActions = []matrixAction{
	{name: "see the task", query: `query($id: ID!) { node(id: $id) { id } }`, vars: byID(theTask), read: ok,
		want: everyoneElse(map[string]string{"owner": "OK", "assignee": "OK"}, notFound)},
	{name: "change the task's title", mutation: true, vars: byID(theTask), read: ok,
		query: `mutation($id: ID!) { updateTask(id: $id, input: {title: "x", expectedVersion: 999999}) { task { id } } }`,
		// Allowed shows as CONFLICT: the policy let it through to the version check, so nothing changed.
		want: everyoneElse(map[string]string{"owner": conflict, "assignee": forbidden}, notFound)},
	{name: "change the task's status", mutation: true, vars: byID(theTask), read: ok,
		query: `mutation($id: ID!) { updateTask(id: $id, input: {status: IN_PROGRESS, expectedVersion: 999999}) { task { id } } }`,
		want:  everyoneElse(map[string]string{"owner": conflict, "assignee": conflict}, notFound)},
	{name: "delete the task", mutation: true, vars: byID(theTask), read: ok,
		query: `mutation($id: ID!) { deleteTask(id: $id, input: {expectedVersion: 999999}) { deletedTaskId } }`,
		want:  everyoneElse(map[string]string{"owner": conflict, "assignee": forbidden}, notFound)},
	{name: "list the task", read: listed("tasks", theTask), vars: func(*matrixFixture, int) map[string]any { return nil },
		query: `{ own: tasks(first: 100) { edges { node { id } } } assigned: tasks(first: 100, filter: {assignedToMe: true}) { edges { node { id } } } }`,
		want:  everyoneElse(map[string]string{"owner": "LISTED", "assignee": "LISTED"}, "NOT_LISTED")},

	{name: "see the job and its export URL", vars: byID(theJob),
		query: `query($id: ID!) { node(id: $id) { ... on Job { id result { ... on TaskExport { downloadUrl } } } } }`,
		read: func(f *matrixFixture, data json.RawMessage) string {
			if strings.Contains(string(data), "/exports/") {
				return "URL"
			}
			return "NO_URL"
		},
		want: everyoneElse(map[string]string{"owner": "URL"}, notFound)},
	{name: "cancel the job", mutation: true, vars: byID(theJob), read: ok,
		query: `mutation($id: ID!) { cancelJob(id: $id) { status } }`,
		want:  everyoneElse(map[string]string{"owner": "OK"}, notFound)},
	{name: "list the job", read: listed("jobs", theJob), vars: func(*matrixFixture, int) map[string]any { return nil },
		query: `{ jobs(first: 100) { edges { node { id } } } }`,
		want:  everyoneElse(map[string]string{"owner": "LISTED"}, "NOT_LISTED")},

	{name: "see the notification", query: `query($id: ID!) { node(id: $id) { id } }`, vars: byID(theNotification), read: ok,
		want: everyoneElse(map[string]string{"owner": "OK"}, notFound)},
	{name: "mark the notification read", mutation: true,
		query: `mutation($id: ID!) { markNotificationsRead(input: {ids: [$id]}) { markedCount } }`,
		vars:  byID(theNotification),
		before: func(t *testing.T, f *matrixFixture) {
			f.env.Exec(t, `UPDATE notifications SET read_at = NULL`)
		},
		read: func(f *matrixFixture, data json.RawMessage) string {
			if strings.Contains(string(data), `"markedCount":1`) {
				return "MARKED"
			}
			return "NONE"
		},
		want: everyoneElse(map[string]string{"owner": "MARKED"}, "NONE")},
	{name: "list the notification", read: listed("notifications", theNotification), vars: func(*matrixFixture, int) map[string]any { return nil },
		query: `{ notifications(first: 100) { edges { node { id } } } }`,
		want:  everyoneElse(map[string]string{"owner": "LISTED"}, "NOT_LISTED")},

	{name: "list the webhook", read: listed("webhooks", firstWebhook), vars: func(*matrixFixture, int) map[string]any { return nil },
		query: `{ webhooks { id } }`,
		want:  everyoneElse(map[string]string{"owner": "LISTED"}, "NOT_LISTED")},
	{name: "delete the webhook", mutation: true, read: ok,
		query: `mutation($id: ID!) { deleteWebhook(id: $id) { deletedWebhookId } }`,
		vars: func(f *matrixFixture, transport int) map[string]any {
			return map[string]any{"id": f.webhooks[transport]}
		},
		want: everyoneElse(map[string]string{"owner": "OK"}, notFound)},

	{name: "see the user's email", vars: byID(theOwner),
		query: `query($id: ID!) { node(id: $id) { ... on User { id email } } }`,
		read: func(f *matrixFixture, data json.RawMessage) string {
			if strings.Contains(string(data), `"email":null`) {
				return "NO_EMAIL"
			}
			return "EMAIL"
		},
		want: everyoneElse(map[string]string{"owner": "EMAIL", "admin": "EMAIL"}, "NO_EMAIL")},
	{name: "see the user's task counts", vars: byID(theOwner), read: ok,
		query: `query($id: ID!) { node(id: $id) { ... on User { taskCounts { total } } } }`,
		want:  everyoneElse(map[string]string{"owner": "OK", "admin": "OK"}, forbidden)},
	{name: "list the user's tasks", vars: byID(theOwner), read: ok,
		query: `query($id: ID!) { node(id: $id) { ... on User { tasks(first: 1) { edges { node { id } } } } } }`,
		want:  everyoneElse(map[string]string{"owner": "OK"}, forbidden)},
	{name: "see the user's unread count", vars: byID(theOwner), read: ok,
		query: `query($id: ID!) { node(id: $id) { ... on User { unreadNotificationCount } } }`,
		want:  everyoneElse(map[string]string{"owner": "OK"}, forbidden)},
	{name: "list every user", read: ok, vars: func(*matrixFixture, int) map[string]any { return nil },
		query: `{ users(first: 5) { edges { node { id } } } }`,
		want:  everyoneElse(map[string]string{"admin": "OK"}, forbidden)},
}

// The transports an operation can take; GET runs queries only.
var matrixTransports = []string{"POST", "GET", "websocket", "SSE"}

func TestAuthorizationMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: a whole server with its workers")
	}
	f := newMatrixFixture(t)
	sockets := map[string]*testsupport.WS{}
	for _, actor := range matrixActors {
		sockets[actor] = testsupport.DialWS(t, f.env, map[string]any{"Authorization": "Bearer " + f.token(actor)})
	}
	for _, act := range matrixActions {
		for _, actor := range matrixActors {
			want := act.want[actor]
			if want == "" {
				want = unauth
			}
			for ti, transport := range matrixTransports {
				if transport == "GET" && act.mutation {
					continue
				}
				if act.before != nil {
					act.before(t, f)
				}
				got := f.run(t, sockets[actor], actor, transport, act.query, act.vars(f, ti), act.read)
				if got != want {
					t.Errorf("%s, %s over %s: %s, want %s", actor, act.name, transport, got, want)
				}
			}
		}
	}
	t.Run("download the export", func(t *testing.T) { f.checkDownload(t) })
	t.Run("hear of changes", func(t *testing.T) { f.checkEvents(t) })
}

func newMatrixFixture(t *testing.T) *matrixFixture {
	t.Helper()
	env := testsupport.NewEnv(t, nil)
	env.WaitEventsReady(t)
	f := &matrixFixture{env: env, users: map[string]*testsupport.User{}}
	for _, name := range []string{"owner", "assignee", "stranger", "admin", "revoked", "demoted"} {
		f.users[name] = env.Register(t, name)
	}
	env.MakeAdmin(t, f.users["admin"])
	env.MakeAdmin(t, f.users["demoted"])
	if _, err := env.App.Services.Accounts.SetRole(context.Background(), f.users["demoted"].Email, policy.RoleUser); err != nil {
		t.Fatal(err)
	}
	f.users["revoked"].Do(t, `mutation { logout { ok } }`, nil).Decode(t, &struct{}{})
	owner, assignee := f.users["owner"], f.users["assignee"]
	f.ownerID = owner.GlobalID

	var created struct {
		CreateTask struct{ Task struct{ ID string } }
	}
	owner.Do(t, `mutation($a: ID) { createTask(input: {title: "shared", assigneeId: $a}) { task { id } } }`,
		map[string]any{"a": assignee.GlobalID}).Decode(t, &created)
	f.task = created.CreateTask.Task.ID
	// The assignee moves it along: the owner is notified.
	assignee.Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {status: IN_PROGRESS}) { task { id } } }`,
		map[string]any{"id": f.task}).Decode(t, &struct{}{})
	var export struct{ RequestTaskExport struct{ ID string } }
	owner.Do(t, `mutation { requestTaskExport(format: CSV) { id } }`, nil).Decode(t, &export)
	f.job = export.RequestTaskExport.ID
	for i := range len(matrixTransports) {
		var hook struct {
			RegisterWebhook struct{ Webhook struct{ ID string } }
		}
		owner.Do(t, `mutation($u: String!) { registerWebhook(input: {url: $u}) { webhook { id } } }`,
			map[string]any{"u": fmt.Sprintf("https://hooks.invalid/%d", i)}).Decode(t, &hook)
		f.webhooks = append(f.webhooks, hook.RegisterWebhook.Webhook.ID)
	}
	testenv.WaitFor(t, 30*time.Second, "the export to finish and the owner's notification", func() bool {
		var data struct {
			Node struct {
				Status string
				Result *struct{ DownloadURL *string }
			}
			Notifications struct {
				Edges []struct{ Node struct{ ID string } }
			}
		}
		owner.Do(t, `query($j: ID!) { node(id: $j) { ... on Job { status result { ... on TaskExport { downloadUrl } } } }
			notifications(first: 1) { edges { node { id } } } }`, map[string]any{"j": f.job}).Decode(t, &data)
		if data.Node.Result != nil && data.Node.Result.DownloadURL != nil {
			f.exportURL = *data.Node.Result.DownloadURL
		}
		if len(data.Notifications.Edges) > 0 {
			f.notification = data.Notifications.Edges[0].Node.ID
		}
		return data.Node.Status == "SUCCEEDED" && f.exportURL != "" && f.notification != ""
	})
	return f
}

func (f *matrixFixture) token(actor string) string {
	if u := f.users[actor]; u != nil {
		return u.Token
	}
	return ""
}

// run sends one operation as actor over transport and labels the answer.
func (f *matrixFixture) run(t *testing.T, ws *testsupport.WS, actor, transport, query string, vars map[string]any,
	read func(*matrixFixture, json.RawMessage) string) string {
	t.Helper()
	client := &testsupport.Client{Env: f.env, Token: f.token(actor)}
	var res testsupport.Response
	switch transport {
	case "POST":
		res = client.Do(t, query, vars)
	case "GET":
		v := url.Values{"query": {query}}
		if vars != nil {
			b, _ := json.Marshal(vars)
			v.Set("variables", string(b))
		}
		res = client.Raw(t, http.MethodGet, "/graphql?"+v.Encode(), "", nil)
	case "websocket":
		r := ws.Do(fmt.Sprintf("op-%d", time.Now().UnixNano()), query, vars)
		if r.Closed {
			// connection_init refused: no valid session.
			if r.CloseCode == 4403 {
				return unauth
			}
			return fmt.Sprintf("closed %d %s", r.CloseCode, r.CloseReason)
		}
		res = r.Response
	case "SSE":
		s := testsupport.OpenSSE(t, f.env, f.token(actor), query, vars)
		if s.Status == http.StatusUnauthorized {
			return unauth
		}
		data, got := s.Next(10 * time.Second)
		s.Close()
		if !got {
			return fmt.Sprintf("no SSE answer (status %d)", s.Status)
		}
		if err := json.Unmarshal([]byte(data), &res); err != nil {
			t.Fatalf("SSE answer %s: %v", data, err)
		}
	}
	if res.Status == http.StatusUnauthorized {
		return unauth
	}
	if len(res.Errors) > 0 {
		return res.Errors[0].Code()
	}
	return read(f, res.Data)
}

// checkDownload: the signed URL is the credential, whoever holds it; a tampered one is refused.
func (f *matrixFixture) checkDownload(t *testing.T) {
	get := func(u string) int {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		res, err := f.env.Server.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	// The URL names the public base; send it to the test server.
	u, err := url.Parse(f.exportURL)
	if err != nil {
		t.Fatal(err)
	}
	local := f.env.Server.URL + u.RequestURI()
	if s := get(local); s != http.StatusOK {
		t.Errorf("download with the signed URL: %d, want 200", s)
	}
	q := u.Query()
	q.Set("expires", fmt.Sprint(time.Now().Add(48*time.Hour).Unix()))
	if s := get(f.env.Server.URL + u.Path + "?" + q.Encode()); s != http.StatusForbidden {
		t.Errorf("download with a tampered URL: %d, want 403", s)
	}
}

// checkEvents: who hears of a change to the task, a new job of the owner's and a new notification
// for the owner, over websocket and SSE. Nobody else may: each listener then hears of a change of
// its own, which arrives after anything about the owner's objects would have.
func (f *matrixFixture) checkEvents(t *testing.T) {
	subs := []struct {
		name, query string
		hears       []string // who hears of the owner's change
		mark        func(t *testing.T, actor string) string
		ownerChange func(t *testing.T) string
	}{
		{
			name: "taskChanged", query: `subscription { taskChanged { kind task { id title } } }`,
			hears: []string{"owner", "assignee"},
			ownerChange: func(t *testing.T) string {
				f.users["owner"].Do(t, `mutation($id: ID!) { updateTask(id: $id, input: {title: "changed"}) { task { id } } }`,
					map[string]any{"id": f.task}).Decode(t, &struct{}{})
				return f.task
			},
			mark: func(t *testing.T, actor string) string {
				var c struct {
					CreateTask struct{ Task struct{ ID string } }
				}
				f.users[actor].Do(t, `mutation { createTask(input: {title: "marker"}) { task { id } } }`, nil).Decode(t, &c)
				return c.CreateTask.Task.ID
			},
		},
		{
			name: "jobUpdated", query: `subscription { jobUpdated { id } }`, hears: []string{"owner"},
			ownerChange: func(t *testing.T) string {
				var j struct{ RequestTaskReport struct{ ID string } }
				f.users["owner"].Do(t, `mutation { requestTaskReport { id } }`, nil).Decode(t, &j)
				return j.RequestTaskReport.ID
			},
			mark: func(t *testing.T, actor string) string {
				var j struct{ RequestTaskReport struct{ ID string } }
				f.users[actor].Do(t, `mutation { requestTaskReport { id } }`, nil).Decode(t, &j)
				return j.RequestTaskReport.ID
			},
		},
		{
			name: "notificationReceived", query: `subscription { notificationReceived { id task { id } } }`, hears: []string{"owner"},
			ownerChange: func(t *testing.T) string {
				// The assignee moves the task again: the owner is notified.
				f.users["assignee"].Do(t, `mutation($id: ID!, $s: TaskStatus!) { updateTask(id: $id, input: {status: $s}) { task { id } } }`,
					map[string]any{"id": f.task, "s": "DONE"}).Decode(t, &struct{}{})
				// A worker writes it: the markers below must come after it committed.
				testenv.WaitFor(t, 10*time.Second, "the owner's second notification", func() bool {
					return f.env.CountRows(t, "notifications WHERE kind = 'TASK_STATUS_CHANGED'") == 2
				})
				return f.task
			},
			mark: func(t *testing.T, actor string) string {
				// Each listener is given a task by someone else: a notification of their own.
				by := "owner"
				if actor == "owner" {
					by = "assignee"
				}
				var c struct {
					CreateTask struct{ Task struct{ ID string } }
				}
				f.users[by].Do(t, `mutation($a: ID) { createTask(input: {title: "for you", assigneeId: $a}) { task { id } } }`,
					map[string]any{"a": f.users[actor].GlobalID}).Decode(t, &c)
				return c.CreateTask.Task.ID
			},
		},
	}
	listeners := []string{"owner", "assignee", "stranger", "admin", "demoted"}
	idle := f.env.App.Events.Subscribers() // the instance's own: the task feed, the session watch
	for _, sub := range subs {
		t.Run(sub.name, func(t *testing.T) {
			// The previous subtest's subscriptions end when its connections close.
			testenv.WaitFor(t, 10*time.Second, "the previous subscriptions to end", func() bool {
				return f.env.App.Events.Subscribers() == idle && f.env.App.Feed.Watchers() == 0
			})
			type stream struct {
				next func() (string, bool)
			}
			streams := map[string][]stream{}
			for _, actor := range listeners {
				ws := testsupport.DialWS(t, f.env, map[string]any{"Authorization": "Bearer " + f.token(actor)})
				ws.MustAck()
				ws.Subscribe("s", sub.query, nil)
				sse := testsupport.OpenSSE(t, f.env, f.token(actor), sub.query, nil)
				streams[actor] = []stream{
					{func() (string, bool) {
						m, ok := ws.Next(10 * time.Second)
						return string(m.Payload), ok
					}},
					{func() (string, bool) { return sse.Next(10 * time.Second) }},
				}
			}
			// Anonymous and revoked listeners are refused at once.
			for _, actor := range []string{"anonymous", "revoked"} {
				ws := testsupport.DialWS(t, f.env, map[string]any{"Authorization": "Bearer " + f.token(actor)})
				if code, _ := ws.WaitClosed(5 * time.Second); code != 4403 {
					t.Errorf("%s subscribing over websocket: closed %d, want 4403", actor, code)
				}
				if s := testsupport.OpenSSE(t, f.env, f.token(actor), sub.query, nil); s.Status == http.StatusOK {
					if ev, _ := s.Next(5 * time.Second); !strings.Contains(ev, unauth) {
						t.Errorf("%s subscribing over SSE: %q, want UNAUTHENTICATED", actor, ev)
					}
				}
			}
			if sub.name == "taskChanged" {
				testenv.WaitFor(t, 10*time.Second, "the task subscriptions", func() bool {
					return f.env.App.Feed.Watchers() == 2*len(listeners)
				})
			} else {
				testenv.WaitFor(t, 10*time.Second, "the "+sub.name+" subscriptions", func() bool {
					return f.env.App.Events.Subscribers() == idle+2*len(listeners)
				})
			}
			ownerObject := sub.ownerChange(t)
			marks := map[string]string{}
			for _, actor := range listeners {
				marks[actor] = sub.mark(t, actor)
			}
			for _, actor := range listeners {
				for i, s := range streams[actor] {
					want := slices.Contains(sub.hears, actor)
					heard, marked := false, false
					// Until the listener's own change, and the owner's when they must hear it (the
					// owner's arrives first, except where workers write both, in either order).
					for !marked || (want && !heard) {
						payload, got := s.next()
						if !got {
							t.Fatalf("%s over %s: heard their own change %v, the owner's %v, then nothing", actor,
								[]string{"websocket", "SSE"}[i], marked, heard)
						}
						if strings.Contains(payload, marks[actor]) {
							marked = true
						} else if strings.Contains(payload, ownerObject) {
							heard = true
						}
					}
					if heard != want {
						t.Errorf("%s over %s heard of the owner's %s change: %v, want %v", actor,
							[]string{"websocket", "SSE"}[i], sub.name, heard, want)
					}
				}
			}
		})
	}
}
