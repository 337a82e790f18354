package server_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// TestHostileWebhookAddresses: IPv6 spellings of internal IPv4 addresses are refused at registration
// like the addresses they carry (the delivery dialer runs the same check).
func TestHostileWebhookAddresses(t *testing.T) {
	t.Parallel()
	env := testsupport.NewEnv(t, map[string]string{"WEBHOOK_ALLOW_PRIVATE": "false"})
	u := env.Register(t, "Mallory")
	const register = `mutation($url: String!) { registerWebhook(input: {url: $url}) { webhook { id } } }`
	for _, host := range []string{
		"[::7f00:1]", "[::ffff:0:7f00:1]", "[2002:7f00:1::1]", "[2002:a9fe:a9fe::1]", "[64:ff9b::7f00:1]",
		"[64:ff9b:1::7f00:1]", "[2001:0:7f00:1::1]", "[2001:0:4136:e378:8000:63bf:80ff:fffe]", "[::a9fe:a9fe]",
	} {
		t.Run(host, func(t *testing.T) {
			r := gqlPost(t, env, u.Token, register, map[string]any{"url": fmt.Sprintf("https://%s/hook", host)})
			wantErr(t, r, http.StatusOK, "BAD_USER_INPUT")
		})
	}
	if n := env.CountRows(t, "webhooks"); n != 0 {
		t.Errorf("%d webhooks registered, want none", n)
	}
}
