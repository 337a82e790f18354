package deploy_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/taskgraph/taskgraph/internal/config"
)

// loadCompose returns docker-compose.yml loaded with JWT_SECRET set, once per test binary; the tests
// only read it.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	p, err := composeOnce()
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

var composeOnce = sync.OnceValues(func() (*types.Project, error) {
	return loadComposeProject(map[string]string{"JWT_SECRET": testJWTSecret})
})

// loadComposeProject loads docker-compose.yml with compose-go, the loader of `docker compose` itself: the
// file is validated against the Compose schema, merged (<<) and interpolated with vars (and nothing
// from this process's environment), with every profile enabled.
func loadComposeProject(vars map[string]string) (*types.Project, error) {
	var env []string
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(env), cli.WithProfiles([]string{"*"}))
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

// composeTaskgraphServices are the services that run the taskgraph image, sorted.
func composeTaskgraphServices(p *types.Project) []string {
	var out []string
	for name, s := range p.Services {
		if s.Build != nil {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// composeAPIServices are the services that run `taskgraph serve`, sorted.
func composeAPIServices(p *types.Project) []string {
	var out []string
	for _, name := range composeTaskgraphServices(p) {
		if slices.Equal(p.Services[name].Command, []string{"serve"}) {
			out = append(out, name)
		}
	}
	return out
}

func composeSettings(t *testing.T, p *types.Project, service string) config.Config {
	t.Helper()
	env := map[string]string{}
	for k, v := range p.Services[service].Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return mustLoadSettings(t, "docker-compose.yml service "+service, env)
}

// TestComposeRefusesToStartWithoutJWTSecret: JWT_SECRET comes from the caller's environment, and
// compose stops with the file's message when it is not set.
func TestComposeRefusesToStartWithoutJWTSecret(t *testing.T) {
	t.Parallel()
	_, err := loadComposeProject(nil)
	if err == nil || !strings.Contains(err.Error(), "set JWT_SECRET") {
		t.Errorf("docker-compose.yml without JWT_SECRET: err = %v, want the file's `set JWT_SECRET` message", err)
	}
}

// TestComposeMatchesTheServer: the taskgraph services' settings load as the server loads them, reach
// the postgres and redis services, trust X-Forwarded-For from nginx's fixed address only, drain
// before Docker kills them, and run health checks and subcommands of the binary.
func TestComposeMatchesTheServer(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	apis := composeAPIServices(p)
	if len(apis) < 2 {
		t.Fatalf("want several services running `taskgraph serve`, got %v", apis)
	}
	nginx, ok := p.Services["nginx"]
	if !ok {
		t.Fatal("docker-compose.yml has no nginx service")
	}
	var nginxIP netip.Addr
	for netName, n := range nginx.Networks {
		if n == nil || n.Ipv4Address == "" {
			continue
		}
		nginxIP = netip.MustParseAddr(n.Ipv4Address)
		if !slices.ContainsFunc(p.Networks[netName].Ipam.Config, func(pool *types.IPAMPool) bool {
			pfx, err := netip.ParsePrefix(pool.Subnet)
			return err == nil && pfx.Contains(nginxIP)
		}) {
			t.Errorf("nginx's address %s is outside the subnet of network %s", nginxIP, netName)
		}
	}
	if !nginxIP.IsValid() {
		t.Fatal("nginx needs a fixed ipv4_address, so TRUSTED_PROXIES can name it")
	}

	image := ""
	for _, name := range composeTaskgraphServices(p) {
		s := p.Services[name]
		cfg := composeSettings(t, p, name)
		if image == "" {
			image = s.Image
		}
		if s.Image != image {
			t.Errorf("%s: image %s, the other taskgraph services run %s", name, s.Image, image)
		}
		if len(s.Command) == 0 || !slices.Contains(knownSubcommands, s.Command[0]) {
			t.Errorf("%s: command %v does not start with a taskgraph subcommand %v", name, s.Command, knownSubcommands)
			continue
		}
		if !cfg.Production() || cfg.RedisURL == "" || cfg.JobsInProcess {
			t.Errorf("%s: want APP_ENV=production, REDIS_URL set and JOBS_IN_PROCESS=false (the worker service runs the jobs)", name)
		}
		if !strings.Contains(cfg.DatabaseURL, "@postgres:5432/") || !strings.Contains(cfg.RedisURL, "//redis:6379") {
			t.Errorf("%s: DATABASE_URL and REDIS_URL must name the postgres and redis services", name)
		}
		if !slices.ContainsFunc(cfg.TrustedProxies, func(s string) bool {
			pfx, err := netip.ParsePrefix(s)
			return err == nil && pfx.Contains(nginxIP) && pfx.Bits() == nginxIP.BitLen()
		}) {
			t.Errorf("%s: TRUSTED_PROXIES %v must name nginx's address %s alone", name, cfg.TrustedProxies, nginxIP)
		}
		if s.Command[0] == "migrate" {
			continue
		}
		if g := s.StopGracePeriod; g == nil || time.Duration(*g) <= cfg.ShutdownTimeout {
			t.Errorf("%s: stop_grace_period %v must exceed SHUTDOWN_TIMEOUT %s", name, g, cfg.ShutdownTimeout)
		}
		wantCheck := []string{"CMD", "/taskgraph", "healthcheck"}
		if s.Command[0] == "worker" {
			wantCheck = append(wantCheck, "worker")
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || !slices.Equal(s.HealthCheck.Test, wantCheck) {
			t.Errorf("%s: health check %v, want %v", name, s.HealthCheck, wantCheck)
		}
		if s.DependsOn["migrate"].Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s: must start after migrate completed successfully", name)
		}
	}
	for _, api := range apis {
		if nginx.DependsOn[api].Condition != types.ServiceConditionHealthy {
			t.Errorf("nginx must wait for %s to be healthy", api)
		}
	}
	// Bind-mounted files exist.
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: bind mount %s: %v", name, v.Source, err)
				}
			}
		}
	}
}
