// Package deploy_test checks the deployment files with the tools and libraries that read them for
// real, and then only what no tool knows: that the files agree with each other and with the server.
//
// Tools (each test skips, saying how to install it, when the tool is missing; .ci/run installs them):
// `nginx -t` (Debian nginx-light), `promtool check config|rules` (Debian prometheus), `kubectl
// kustomize`. Libraries: the Kubernetes API types with strict decoding and the Pod Security
// admission evaluator, compose-go (the loader of `docker compose`), BuildKit's Dockerfile parser and
// linter, moby/patternmatcher (.dockerignore as `docker build` reads it) and gonginx.
//
// The invariants: every setting named anywhere is one the server reads and loads with its own
// configuration code; ports, probe paths, shutdown timings, body limits, image users and upstreams
// agree across files; every public route of server.Routes is routed by deploy/nginx.conf and by the
// Ingress, and /metrics is kept off the public side; the subcommands the files run exist.
//
// The file checks and tool runs form the fast tier (well under a second together). Tests that build
// the binary or run nginx in front of instances (nginx_test.go) are skipped with -short.
package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
)

// A valid production secret for loading the files' settings (the files hold placeholders).
const testJWTSecret = "0123456789abcdef0123456789abcdef0123456789abcdef"

// Subcommands of the binary that the deployment files may run.
var knownSubcommands = []string{"serve", "migrate", "set-role", "healthcheck", "worker"}

// repoRoot is the module root: tests run in deploy/.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadSettings runs the server's configuration code on env, as the binary does at start. It also
// fails t for every name in env that the configuration code never reads (a misspelt setting).
func loadSettings(t *testing.T, where string, env map[string]string) (config.Config, error) {
	t.Helper()
	read := map[string]bool{}
	cfg, err := config.Load(func(k string) string { read[k] = true; return env[k] })
	for _, name := range sortedKeys(env) {
		if !read[name] {
			t.Errorf("%s: %s is not a taskgraph setting (see `taskgraph --help`)", where, name)
		}
	}
	return cfg, err
}

// mustLoadSettings is loadSettings for files that must load.
func mustLoadSettings(t *testing.T, where string, env map[string]string) config.Config {
	t.Helper()
	cfg, err := loadSettings(t, where, env)
	if err != nil {
		t.Fatalf("%s: the server refuses these settings: %v", where, err)
	}
	return cfg
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return n
}

// routes returns server.Routes with the given exposure.
func routes(exposure server.Exposure) []server.Route {
	var out []server.Route
	for _, r := range server.Routes() {
		if r.Exposure == exposure {
			out = append(out, r)
		}
	}
	return out
}

// routePaths are the paths of the routes with the given exposure.
func routePaths(exposure server.Exposure) []string {
	var out []string
	for _, r := range routes(exposure) {
		out = append(out, r.Path())
	}
	return out
}

// tool finds a command-line tool or skips t, naming the Debian package that has it.
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("%s is not installed (apt-get install %s; .ci/run does): skipping", name, debianPackage)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// run runs a tool for at most 30 seconds and fails t with its output when it fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// binDir holds the binary buildBinary builds; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "taskgraph-deploy-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "taskgraph")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/taskgraph")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/taskgraph: %v\n%s", err, out)
	}
	return bin, nil
})

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
