package server_test

import (
	"strings"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestHostileWebsocketRefusals: refusals made before an operation runs (trusted documents, document
// validation, limits) read the same over a websocket as over HTTP: presented, with extensions.code,
// and without production's hidden details.
func TestHostileWebsocketRefusals(t *testing.T) {
	t.Parallel()
	const meDoc = `query Me { me { id } }`
	env := testsupport.NewEnv(t, map[string]string{
		"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40),
		"TRUSTED_DOCUMENTS": writeManifest(t, map[string]string{sha256Hex(meDoc): meDoc}),
	})
	// Registering is not a trusted document: sign up through another instance of the same deployment.
	u := testsupport.NewEnvOn(t, env.DB, map[string]string{"JWT_SECRET": strings.Repeat("p", 40)}).Register(t, "Ada")
	ws := testsupport.DialWS(t, env, map[string]any{"Authorization": "Bearer " + u.Token})
	ws.MustAck()
	// Control: the trusted document runs.
	if r := ws.Do("1", meDoc, nil); len(r.Errors) != 0 {
		t.Fatalf("trusted document over websocket: %+v", r.Errors)
	}
	tests := []struct{ name, doc, code string }{
		{"untrusted document", `query Other { me { id name } }`, "FORBIDDEN"},
	}
	for i, tc := range tests {
		r := ws.Do(string(rune('a'+i)), tc.doc, nil)
		if len(r.Errors) == 0 {
			t.Errorf("%s: no errors (closed %v %d %s)", tc.name, r.Closed, r.CloseCode, r.CloseReason)
			continue
		}
		for _, e := range r.Errors {
			if e.Code() != tc.code {
				t.Errorf("%s: error %+v, want extensions.code %s", tc.name, e, tc.code)
			}
		}
	}

	// Without trusted documents, production's document errors over a websocket carry the code and
	// no suggestions, as over HTTP.
	open := testsupport.NewEnv(t, map[string]string{"APP_ENV": "production", "JWT_SECRET": strings.Repeat("p", 40)})
	v := open.Register(t, "Bo")
	ws2 := testsupport.DialWS(t, open, map[string]any{"Authorization": "Bearer " + v.Token})
	ws2.MustAck()
	r := ws2.Do("1", `{ tasks(firts: 1) { totalCount } }`, nil)
	if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" || strings.Contains(r.Errors[0].Message, "Did you mean") {
		t.Errorf("a typo over websocket in production: %+v, want BAD_USER_INPUT without suggestions", r.Errors)
	}
}
