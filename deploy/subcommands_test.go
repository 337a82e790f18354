package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// usedSubcommands lists the subcommands the Dockerfile, compose and the manifests run, with where.
func usedSubcommands(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(args []string, where string) {
		if len(args) > 0 {
			used[args[0]] = append(used[args[0]], where)
		}
	}
	stages := dockerStages(t)
	add(finalCommand[*instructions.CmdCommand](t, stages).CmdLine, "Dockerfile CMD")
	if test := finalCommand[*instructions.HealthCheckCommand](t, stages).Health.Test; len(test) > 2 {
		add(test[2:], "Dockerfile HEALTHCHECK")
	}
	p := loadCompose(t)
	for _, name := range composeTaskgraphServices(p) {
		s := p.Services[name]
		add(s.Command, "compose "+name)
		if s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 2 {
			add(s.HealthCheck.Test[2:], "compose "+name+" healthcheck")
		}
	}
	for name, pod := range loadManifests(t).pods() {
		for _, c := range pod.Spec.Containers {
			add(c.Args, name)
		}
	}
	return used
}

// runBinary runs the built binary with only env, for at most 10 seconds.
func runBinary(t *testing.T, bin string, env map[string]string, args ...string) (code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, errBuf.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), errBuf.String()
	}
	t.Fatalf("%s %v: %v", bin, args, err)
	return -1, ""
}

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestImageSubcommands builds the binary and runs every subcommand the deployment files use: each
// exists, and `healthcheck` (the containers' health check) exits 1 when nothing answers and 0 when
// /healthz answers 200, on HTTP_ADDR or, with `worker`, on WORKER_HTTP_ADDR.
func TestImageSubcommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	t.Parallel()
	used := usedSubcommands(t)
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	noDB := "postgres://taskgraph@" + closedAddr(t) + "/taskgraph?sslmode=disable&connect_timeout=2"
	for _, sub := range sortedKeys(used) {
		t.Run(sub, func(t *testing.T) {
			if !slices.Contains(knownSubcommands, sub) {
				t.Fatalf("%v run %q, which is not a known subcommand", used[sub], sub)
			}
			code, stderr := runBinary(t, bin, map[string]string{"APP_ENV": "development", "DATABASE_URL": noDB, "HTTP_ADDR": closedAddr(t), "WORKER_HTTP_ADDR": closedAddr(t)}, sub)
			if code == 2 && strings.Contains(stderr, "unknown command") {
				t.Fatalf("`taskgraph %s`, used by %v, is not a command of the binary:\n%s", sub, used[sub], stderr)
			}
			if sub == "healthcheck" && code != 1 {
				t.Errorf("healthcheck with nothing listening: exit %d, want 1 (Docker reserves 2)\n%s", code, stderr)
			}
		})
	}

	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		hits.Add(1)
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, c := range []struct {
		env  map[string]string
		args []string
		want int
	}{
		{map[string]string{"HTTP_ADDR": "127.0.0.1:" + port}, []string{"healthcheck"}, 0},
		{map[string]string{"HTTP_ADDR": ":" + port}, []string{"healthcheck"}, 0},
		{map[string]string{"WORKER_HTTP_ADDR": ":" + port, "HTTP_ADDR": closedAddr(t)}, []string{"healthcheck", "worker"}, 0},
		{map[string]string{"WORKER_HTTP_ADDR": closedAddr(t), "HTTP_ADDR": ":" + port}, []string{"healthcheck", "worker"}, 1},
	} {
		c.env["APP_ENV"] = "development"
		if code, stderr := runBinary(t, bin, c.env, c.args...); code != c.want {
			t.Errorf("%v with %v: exit %d, want %d\n%s", c.args, c.env, code, c.want, stderr)
		}
	}
	if hits.Load() == 0 {
		t.Error("healthcheck never requested /healthz")
	}
}
