package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tufanbarisyildirim/gonginx/config"
	"github.com/tufanbarisyildirim/gonginx/parser"
)

// parseNginxConf parses deploy/nginx.conf.
func parseNginxConf(t *testing.T) *config.Config {
	t.Helper()
	p, err := parser.NewParser(repoPath(t, "deploy/nginx.conf"), parser.WithSkipComments())
	if err != nil {
		t.Fatal(err)
	}
	conf, err := p.Parse()
	if err != nil {
		t.Fatalf("deploy/nginx.conf: %v", err)
	}
	return conf
}

func params(d config.IDirective) []string {
	var out []string
	for _, p := range d.GetParameters() {
		out = append(out, p.Value)
	}
	return out
}

// directive returns the parameters of the first directive called name directly in b (nil: none).
func directive(b config.IBlock, name string) []string {
	for _, d := range b.GetDirectives() {
		if d.GetName() == name {
			return params(d)
		}
	}
	return nil
}

// nginxServer is the one server block of deploy/nginx.conf.
func nginxServer(t *testing.T, conf *config.Config) config.IBlock {
	t.Helper()
	var servers []config.IBlock
	for _, d := range conf.FindDirectives("server") {
		if s, ok := d.(*config.Server); ok {
			servers = append(servers, s.GetBlock())
		}
	}
	if len(servers) != 1 {
		t.Fatalf("deploy/nginx.conf: want one server block, got %d", len(servers))
	}
	return servers[0]
}

// taskgraphUpstream is the upstream block the server block proxies to.
func taskgraphUpstream(t *testing.T, conf *config.Config) *config.Upstream {
	t.Helper()
	for _, u := range conf.FindUpstreams() {
		if u.UpstreamName == "taskgraph" {
			return u
		}
	}
	t.Fatal("deploy/nginx.conf has no upstream taskgraph")
	return nil
}

// localNginxConf is deploy/nginx.conf made to run on this machine: listening on listen, proxying to
// upstreams (the compose service names resolve only inside compose) without `resolve` and a
// resolver (IP addresses need none, and nginx before 1.27.3 has neither), two workers, and its pid,
// logs and temp files relative to the -p prefix, so it runs as any user without touching /var. The
// parser finds the directives; their lines are rewritten in the file's own text, so everything else
// is exactly what is shipped.
func localNginxConf(t *testing.T, listen string, upstreams []string) string {
	t.Helper()
	conf := parseNginxConf(t)
	lines := strings.Split(string(readFile(t, "deploy/nginx.conf")), "\n")
	rewrite := func(d config.IDirective, with ...string) {
		i := d.GetLine() - 1
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, d.GetName()+" ") || !strings.HasSuffix(line, ";") {
			t.Fatalf("deploy/nginx.conf:%d: %s is not a one-line directive, cannot rewrite it", i+1, d.GetName())
		}
		indent := lines[i][:strings.Index(lines[i], d.GetName())]
		if len(with) == 0 {
			lines[i] = ""
			return
		}
		lines[i] = indent + strings.Join(with, " ") + ";"
	}
	set := func(name, old, new string) {
		found := false
		for _, d := range conf.FindDirectives(name) {
			if p := params(d); len(p) > 0 && (old == "" || p[0] == old) {
				rewrite(d, append([]string{name, new}, p[1:]...)...)
				found = true
			}
		}
		if !found {
			t.Fatalf("deploy/nginx.conf: no %s %s to replace", name, old)
		}
	}

	up := taskgraphUpstream(t, conf)
	if len(up.UpstreamServers) != len(upstreams) {
		t.Fatalf("deploy/nginx.conf: upstream taskgraph has %d servers, the test runs %d", len(up.UpstreamServers), len(upstreams))
	}
	for i, s := range up.UpstreamServers {
		with := []string{"server", upstreams[i]}
		for _, f := range s.Flags {
			if f != "resolve" {
				with = append(with, f)
			}
		}
		for _, k := range sortedKeys(s.Parameters) {
			with = append(with, k+"="+s.Parameters[k])
		}
		rewrite(s, with...)
	}
	for _, d := range up.Directives {
		if strings.HasPrefix(d.GetName(), "resolver") {
			rewrite(d)
		}
	}
	set("listen", "", listen)
	set("worker_processes", "", "2")
	set("pid", "", "nginx.pid")
	set("error_log", "", "error.log")
	set("access_log", "/dev/stdout", "access.log")
	// Temp files under the prefix: appended to the line of the http block's first directive.
	first := conf.FindDirectives("http")[0].(*config.HTTP).Directives[0]
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		lines[first.GetLine()-1] += " " + kind + "_temp_path " + kind + "_temp;"
	}
	return strings.Join(lines, "\n")
}

var nginxVersionRe = regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`)

// nginxAtLeast says whether the nginx binary is at least major.minor.patch.
func nginxAtLeast(t *testing.T, bin string, want ...int) (bool, string) {
	t.Helper()
	v, err := exec.Command(bin, "-v").CombinedOutput()
	m := nginxVersionRe.FindStringSubmatch(string(v))
	if err != nil || m == nil {
		t.Fatalf("nginx -v: %v %s", err, v)
	}
	for i, w := range want {
		n, _ := strconv.Atoi(m[i+1])
		if n != w {
			return n > w, m[0]
		}
	}
	return true, m[0]
}

// TestNginxConfPassesNginxT runs `nginx -t` on deploy/nginx.conf. Before nginx 1.27.3 (Debian
// bookworm has 1.22) upstream servers cannot `resolve`, so the file is checked as localNginxConf
// makes it: the same configuration with 127.0.0.1 upstreams, which is also what nginx_test.go runs.
func TestNginxConfPassesNginxT(t *testing.T) {
	t.Parallel()
	bin := tool(t, "nginx", "nginx-light")
	prefix := t.TempDir()
	conf := repoPath(t, "deploy/nginx.conf")
	if ok, version := nginxAtLeast(t, bin, 1, 27, 3); !ok {
		t.Logf("%s predates `resolve` in upstream blocks (1.27.3; compose runs nginx:1.27): checking deploy/nginx.conf with 127.0.0.1 upstreams and no resolver", version)
		conf = filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(conf, []byte(localNginxConf(t, "127.0.0.1:18080", []string{"127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"})), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, bin, "-t", "-q", "-p", prefix+"/", "-c", conf, "-e", filepath.Join(prefix, "error.log"))
}

// nginxSize parses an nginx size ("1m", "64k", "512").
func nginxSize(t *testing.T, s string) int64 {
	t.Helper()
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult, s = 1<<10, s[:len(s)-1]
	case "m":
		mult, s = 1<<20, s[:len(s)-1]
	case "g":
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("nginx size %q: %v", s, err)
	}
	return n * mult
}

// TestNginxConfMatchesTheServer: nginx refuses exactly the bodies the server refuses, waits longer
// than the server's write timeout (so the server, not nginx, ends slow requests), and proxies to
// the API services of docker-compose.yml on the port they listen on.
func TestNginxConfMatchesTheServer(t *testing.T) {
	t.Parallel()
	conf := parseNginxConf(t)
	srv := nginxServer(t, conf)
	p := loadCompose(t)
	var want []string
	for _, name := range composeAPIServices(p) {
		cfg := composeSettings(t, p, name)
		want = append(want, name+":"+strconv.Itoa(port(t, cfg.HTTPAddr)))
		if got := nginxSize(t, directive(srv, "client_max_body_size")[0]); got != cfg.MaxBodyBytes {
			t.Errorf("client_max_body_size is %d bytes, %s's MAX_BODY_BYTES %d", got, name, cfg.MaxBodyBytes)
		}
		read, err := time.ParseDuration(directive(srv, "proxy_read_timeout")[0])
		if err != nil || read <= cfg.WriteTimeout {
			t.Errorf("proxy_read_timeout %v must exceed %s's HTTP_WRITE_TIMEOUT %s", directive(srv, "proxy_read_timeout"), name, cfg.WriteTimeout)
		}
	}
	var got []string
	for _, s := range taskgraphUpstream(t, conf).UpstreamServers {
		got = append(got, s.Address)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("upstream taskgraph servers %v, want the compose API services %v", got, want)
	}
}
