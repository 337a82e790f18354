package server_test

import (
	"net/http"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestHostileEmailNormalisation: the same email spelled in NFC and in NFD (or with other case and
// spaces around it) is one email: it cannot make a second account, and it signs the first one in.
func TestHostileEmailNormalisation(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, nil)
	const (
		nfc = "zo\u00eb-hostile@example.com"  // ë as one code point
		nfd = "zoe\u0308-hostile@example.com" // e + combining diaeresis
	)
	const register = `mutation($input: RegisterInput!) { register(input: $input) { user { id email } } }`
	first := gqlPost(t, env, "", register, map[string]any{"input": map[string]any{"name": "Zoë", "email": nfc, "password": "first-password-1"}})
	if first.Status != http.StatusOK || len(first.Errors) != 0 {
		t.Fatalf("register NFC: %d %s", first.Status, first.Body)
	}
	for name, email := range map[string]string{"NFD": nfd, "NFD in upper case with spaces": "  ZOE\u0308-HOSTILE@EXAMPLE.COM "} {
		r := gqlPost(t, env, "", register, map[string]any{"input": map[string]any{"name": "Twin", "email": email, "password": "second-password-2"}})
		wantErr(t, r, http.StatusOK, "CONFLICT")
		_ = name
	}
	if n := env.CountRows(t, "users"); n != 1 {
		t.Errorf("users = %d, want 1", n)
	}
	// The NFD spelling signs the NFC account in.
	if r := login(t, env, nfd, "first-password-1"); r.Status != http.StatusOK || len(r.Errors) != 0 {
		t.Errorf("login with the NFD spelling: %d %s", r.Status, r.Body)
	}
	// Moving another account to the NFD spelling is a conflict too.
	other := env.Register(t, "Other")
	r := gqlPost(t, env, other.Token, `mutation($e: String!) { updateMe(input: {email: $e}) { user { email } } }`, map[string]any{"e": nfd})
	wantErr(t, r, http.StatusOK, "CONFLICT")
	// Stored emails are NFC.
	if n := env.CountRows(t, "users WHERE email IS NOT NFC NORMALIZED"); n != 0 {
		t.Errorf("%d emails stored outside NFC", n)
	}
}
