package main_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/testenv"
	"github.com/taskgraph/taskgraph/internal/testsupport"
)

// `taskgraph set-role`, run as its own process next to a server without Redis, reaches the server's
// in-process cache at once: the user's new role shows on the next request, not after the cache's
// 5-minute TTL.
func TestSetRoleReachesARunningServersCacheWithoutRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the taskgraph binary as processes")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	env := testsupport.NewEnv(t, nil)
	env.WaitEventsReady(t)
	u := env.Register(t, "Op")
	c := &testsupport.Client{Env: env, Token: u.Token}
	role := func() string {
		var out struct{ Me struct{ Role string } }
		c.Do(t, `{ me { role } }`, nil).Decode(t, &out)
		return out.Me.Role
	}
	if got := role(); got != "USER" { // now cached by the server
		t.Fatalf("role before = %q", got)
	}

	cmd := exec.Command(bin, "set-role", u.Email, "admin")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+env.DB.URL, "REDIS_URL=", "LOG_LEVEL=warn")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "is now ADMIN") {
		t.Fatalf("set-role: %v\n%s", err, out)
	}
	testenv.WaitFor(t, 5*time.Second, "the server to serve the new role after set-role", func() bool { return role() == "ADMIN" })
}
