package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/mod/modfile"
)

// dockerStages parses the Dockerfile with BuildKit's own parser, failing t on every warning of the
// parser and of BuildKit's linter (the build checks `docker build --check` reports at parse time).
func dockerStages(t *testing.T) []instructions.Stage {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(readFile(t, "Dockerfile")))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, url, msg string, loc []parser.Range) {
		t.Errorf("Dockerfile:%v: %s: %s (%s)", loc, rule, msg, url)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a runtime stage, got %d stage(s)", len(stages))
	}
	return stages
}

// finalCommand returns the last instruction of type C in the runtime stage.
func finalCommand[C any](t *testing.T, stages []instructions.Stage) C {
	t.Helper()
	var found C
	ok := false
	for _, c := range stages[len(stages)-1].Commands {
		if v, is := c.(C); is {
			found, ok = v, true
		}
	}
	if !ok {
		t.Fatalf("Dockerfile: the runtime stage has no %T", found)
	}
	return found
}

// TestDockerfileMatchesTheServer: the image runs the binary's own subcommands in exec form (no shell in
// distroless), as the numeric user the Kubernetes pods declare, exposes the port its HTTP_ADDR names,
// sets only real settings, and builds with the Go release go.mod asks for.
func TestDockerfileMatchesTheServer(t *testing.T) {
	t.Parallel()
	stages := dockerStages(t)

	mod, err := modfile.ParseLax("go.mod", readFile(t, "go.mod"), nil)
	if err != nil {
		t.Fatal(err)
	}
	goMinor := strings.Join(strings.SplitN(mod.Go.Version, ".", 3)[:2], ".")
	if base := stages[0].BaseName; !strings.HasPrefix(base, "golang:"+goMinor+"-") && base != "golang:"+goMinor {
		t.Errorf("build stage FROM %s, want golang:%s (go.mod says go %s)", base, goMinor, mod.Go.Version)
	}

	env := map[string]string{}
	for _, c := range stages[len(stages)-1].Commands {
		if e, ok := c.(*instructions.EnvCommand); ok {
			for _, kv := range e.Env {
				env[kv.Key] = kv.Value
			}
		}
	}
	loadSettings(t, "Dockerfile ENV", env)
	if expose := finalCommand[*instructions.ExposeCommand](t, stages); !slices.Equal(expose.Ports, []string{strconv.Itoa(port(t, env["HTTP_ADDR"]))}) {
		t.Errorf("EXPOSE %v, want the port of the image's HTTP_ADDR %s", expose.Ports, env["HTTP_ADDR"])
	}

	user := finalCommand[*instructions.UserCommand](t, stages).User
	uid, gid, _ := strings.Cut(user, ":")
	if n, err := strconv.ParseInt(uid, 10, 64); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root UID (Kubernetes runAsNonRoot cannot check a name)", user)
	}
	for name, pod := range loadManifests(t).pods() {
		sc := pod.Spec.SecurityContext
		if sc == nil || sc.RunAsUser == nil || strconv.FormatInt(*sc.RunAsUser, 10) != uid ||
			(gid != "" && (sc.RunAsGroup == nil || strconv.FormatInt(*sc.RunAsGroup, 10) != gid)) {
			t.Errorf("%s: runAsUser/runAsGroup must be the image's USER %s", name, user)
		}
	}

	if ep := finalCommand[*instructions.EntrypointCommand](t, stages); ep.PrependShell || !slices.Equal(ep.CmdLine, []string{"/taskgraph"}) {
		t.Errorf("ENTRYPOINT %v (shell form %v), want [\"/taskgraph\"]", ep.CmdLine, ep.PrependShell)
	}
	if cmd := finalCommand[*instructions.CmdCommand](t, stages); cmd.PrependShell || len(cmd.CmdLine) != 1 || !slices.Contains(knownSubcommands, cmd.CmdLine[0]) {
		t.Errorf("CMD %v, want one subcommand in exec form", cmd.CmdLine)
	}
	if hc := finalCommand[*instructions.HealthCheckCommand](t, stages); !slices.Equal(hc.Health.Test, []string{"CMD", "/taskgraph", "healthcheck"}) {
		t.Errorf("HEALTHCHECK %v, want CMD [\"/taskgraph\", \"healthcheck\"]", hc.Health.Test)
	}
}

// TestDockerignoreKeepsTheBuildInputs reads .dockerignore as `docker build` does: secrets stay out of
// the build context, and every file `go build ./cmd/taskgraph` reads (as `go list` names them, for
// the image's CGO_ENABLED=0 linux build) stays in.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	t.Parallel()
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readFile(t, ".dockerignore")))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			t.Fatalf(".dockerignore: %v", err)
		}
		return ok
	}
	for _, secret := range []string{".git/config", ".env", ".env.production", "deploy/k8s/secret.yaml", "tls.key"} {
		if !excluded(secret) {
			t.Errorf(".dockerignore must exclude %s", secret)
		}
	}

	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if and .Module .Module.Main}}{{range .GoFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$.Dir}}/{{.}}{{"\n"}}{{end}}{{end}}`,
		"./cmd/taskgraph")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	inputs := []string{"go.mod", "go.sum"}
	for _, f := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(repoRoot(t), f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, filepath.ToSlash(rel))
	}
	if len(inputs) < 20 || !slices.ContainsFunc(inputs, regexp.MustCompile(`\.sql$`).MatchString) {
		t.Fatalf("go list found only %d build inputs, none of them the embedded migrations: %v", len(inputs), inputs)
	}
	var dropped []string
	for _, f := range inputs {
		if excluded(f) {
			dropped = append(dropped, f)
		}
	}
	if len(dropped) > 0 {
		t.Errorf(".dockerignore excludes files the build reads: %s", fmt.Sprint(dropped))
	}
}
