package server_test

// Sessions on long-lived connections: every way a session stops being usable — logout, password
// change, deleteMe, refresh-token reuse, a role change, access-token expiry — refuses the next
// operation on an open websocket and ends its live subscriptions (and SSE streams) within 1 s, on
// another instance than the one that made the change.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/auth"
	"github.com/taskgraph/taskgraph/internal/policy"
	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// endWithin is how soon after a change committed the connections it concerns must end.
const endWithin = time.Second

// liveSetup is two instances on one database, A holding the connections, B taking the changes.
func liveSetup(t *testing.T, overrides map[string]string) (a, b *testsupport.Env) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: two whole servers")
	}
	a = testsupport.NewEnv(t, overrides)
	b = testsupport.NewEnvOn(t, a.DB, overrides)
	a.WaitEventsReady(t)
	b.WaitEventsReady(t)
	return a, b
}

// openLive opens, as u on instance a, a websocket with a taskChanged subscription and an SSE stream
// with another, and waits until both subscriptions are registered.
func openLive(t *testing.T, a *testsupport.Env, token string) (*testsupport.WS, *testsupport.SSE) {
	t.Helper()
	before := a.App.Feed.Watchers()
	ws := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + token})
	ws.MustAck()
	ws.Subscribe("live", `subscription { taskChanged { kind } }`, nil)
	sse := testsupport.OpenSSE(t, a, token, `subscription { taskChanged { kind } }`, nil)
	testenv.WaitFor(t, 5*time.Second, "both subscriptions to be registered", func() bool {
		return a.App.Feed.Watchers() == before+2
	})
	return ws, sse
}

// wantEnded checks that the websocket closed with 4403 and reason, and the SSE stream ended, each
// within endWithin of changed.
func wantEnded(t *testing.T, ws *testsupport.WS, sse *testsupport.SSE, changed time.Time, reason string) {
	t.Helper()
	code, got := ws.WaitClosed(5 * time.Second)
	wsAfter := time.Since(changed)
	sse.WaitEnded(5 * time.Second)
	sseAfter := time.Since(changed)
	if code != 4403 || !strings.Contains(got, reason) {
		t.Errorf("websocket closed with %d %q, want 4403 %q", code, got, reason)
	}
	if wsAfter > endWithin || sseAfter > endWithin {
		t.Errorf("connections ended %s (websocket) and %s (SSE) after the change, want within %s", wsAfter, sseAfter, endWithin)
	}
	t.Logf("ended after %s (websocket), %s (SSE)", wsAfter.Round(time.Millisecond), sseAfter.Round(time.Millisecond))
}

func TestLiveConnectionsEndWithTheirSession(t *testing.T) {
	a, b := liveSetup(t, nil)
	for _, tc := range []struct {
		name   string
		reason string
		end    func(t *testing.T, u *testsupport.User)
	}{
		{"logout", "session ended", func(t *testing.T, u *testsupport.User) {
			u.Do(t, `mutation { logout { ok } }`, nil).Decode(t, &struct{}{})
		}},
		{"password change from another session", "session ended", func(t *testing.T, u *testsupport.User) {
			other := signIn(t, b, u)
			other.Do(t, `mutation($c: String!, $n: String!) { changePassword(input: {currentPassword: $c, newPassword: $n}) { user { id } } }`,
				map[string]any{"c": u.Password, "n": u.Password + "-new"}).Decode(t, &struct{}{})
		}},
		{"deleteMe", "session ended", func(t *testing.T, u *testsupport.User) {
			u.Do(t, `mutation($p: String!) { deleteMe(input: {password: $p}) { deletedUserId } }`,
				map[string]any{"p": u.Password}).Decode(t, &struct{}{})
		}},
		{"refresh-token reuse", "session ended", func(t *testing.T, u *testsupport.User) {
			const refresh = `mutation($r: String!) { refreshToken(input: {refreshToken: $r}) { accessToken } }`
			b.Anonymous().Do(t, refresh, map[string]any{"r": u.RefreshToken}).Decode(t, &struct{}{})
			if res := b.Anonymous().Do(t, refresh, map[string]any{"r": u.RefreshToken}); len(res.Errors) == 0 {
				t.Fatal("a reused refresh token was honoured")
			}
		}},
		{"role change", "role changed", func(t *testing.T, u *testsupport.User) {
			if _, err := b.App.Services.Accounts.SetRole(context.Background(), u.Email, policy.RoleAdmin); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := a.Register(t, "Ada")
			u.Client = &testsupport.Client{Env: b, Token: u.Token} // changes go through instance B
			ws, sse := openLive(t, a, u.Token)
			tc.end(t, u)
			changed := time.Now()
			// The next operation on the socket is refused (or finds the socket closed already).
			res := ws.Do("after", `mutation { createTask(input: {title: "after"}) { task { id } } }`, nil)
			if !res.Closed && (len(res.Errors) == 0 || res.Errors[0].Code() != "UNAUTHENTICATED") {
				t.Fatalf("createTask on the socket after the change: %+v", res)
			}
			wantEnded(t, ws, sse, changed, tc.reason)
			if n := a.CountRows(t, "tasks"); n != 0 {
				t.Fatalf("%d tasks written after the change", n)
			}
		})
	}
}

func TestLiveConnectionsEndWhenTheTokenExpires(t *testing.T) {
	a, _ := liveSetup(t, nil)
	u := a.Register(t, "Ada")
	issuer, err := auth.NewTokenIssuer([]byte(a.Config.JWTSecret), a.Config.AccessTokenTTL)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := issuer.Verify(u.Token)
	if err != nil {
		t.Fatal(err)
	}
	// A token of the same session that expires in 4 s (issued as if TTL - 4 s ago): long enough to
	// open both connections and run one operation on a loaded machine (2 s was not, once).
	const left = 2 * time.Second
	short, exp, err := issuer.WithClock(func() time.Time { return time.Now().Add(left - a.Config.AccessTokenTTL) }).
		Issue(u.ID, claims.Role, claims.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	ws, sse := openLive(t, a, short)
	if res := ws.Do("before", `{ me { id } }`, nil); len(res.Errors) > 0 || res.Closed {
		t.Fatalf("me before expiry: %+v", res)
	}
	wantEnded(t, ws, sse, exp, "access token expired")
}

func TestDemotedAdminLosesAdminFieldsOnOpenSockets(t *testing.T) {
	a, b := liveSetup(t, nil)
	admin := a.Register(t, "Root")
	a.MakeAdmin(t, admin)
	ws := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + admin.Token})
	ws.MustAck()
	if res := ws.Do("1", `{ users(first: 5) { edges { node { email } } } }`, nil); len(res.Errors) > 0 || res.Closed {
		t.Fatalf("users as admin: %+v", res)
	}
	if _, err := b.App.Services.Accounts.SetRole(context.Background(), admin.Email, policy.RoleUser); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	if code, reason := ws.WaitClosed(5 * time.Second); code != 4403 || !strings.Contains(reason, "role changed") || time.Since(changed) > endWithin {
		t.Fatalf("socket closed with %d %q after %s, want 4403 role changed within %s", code, reason, time.Since(changed), endWithin)
	}
	// Reconnecting with the same (still valid) token works, with the role the user has now.
	again := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + admin.Token})
	again.MustAck()
	res := again.Do("2", `{ users(first: 5) { edges { node { email } } } }`, nil)
	if len(res.Errors) == 0 || res.Errors[0].Code() != "FORBIDDEN" {
		t.Fatalf("users after the demotion: %+v, want FORBIDDEN", res)
	}
}

func TestLiveConnectionsPerUserCap(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: whole server")
	}
	a := testsupport.NewEnv(t, map[string]string{"LIVE_CONNECTIONS_PER_USER": "2"})
	u, other := a.Register(t, "Ada"), a.Register(t, "Bob")
	for range 2 {
		testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token}).MustAck()
	}
	third := testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + u.Token})
	code, reason := third.WaitClosed(5 * time.Second)
	if code != 1008 || !strings.Contains(reason, "too many connections") {
		t.Fatalf("third socket closed with %d %q, want 1008 too many connections", code, reason)
	}
	sse := testsupport.OpenSSE(t, a, u.Token, `subscription { taskChanged { kind } }`, nil)
	if ev, _ := sse.Next(5 * time.Second); sse.Status != 429 && !strings.Contains(ev, "RATE_LIMITED") {
		t.Fatalf("SSE beyond the cap: status %d, first event %q; want a RATE_LIMITED refusal", sse.Status, ev)
	}
	// Another user is not affected.
	testsupport.DialWS(t, a, map[string]any{"Authorization": "Bearer " + other.Token}).MustAck()
}

// signIn logs u in again on env: a second session of the same user.
func signIn(t *testing.T, env *testsupport.Env, u *testsupport.User) *testsupport.Client {
	t.Helper()
	var data struct{ Login struct{ AccessToken string } }
	env.Anonymous().Do(t, `mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { accessToken } }`,
		map[string]any{"e": u.Email, "p": u.Password}).Decode(t, &data)
	return &testsupport.Client{Env: env, Token: data.Login.AccessToken}
}
