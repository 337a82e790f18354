package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"

	"github.com/taskgraph/taskgraph/internal/observe"
	"github.com/taskgraph/taskgraph/internal/server"
)

// TestPrometheusConfig: `promtool check config` accepts deploy/prometheus.yml, and it scrapes each API
// service of docker-compose.yml directly, on the port it listens on and the server's metrics path.
func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", "prometheus")
	run(t, promtool, "check", "config", repoPath(t, "deploy/prometheus.yml"))

	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			MetricsPath   string `json:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	metricsPath := routePaths(server.Operator)[0]
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != metricsPath {
			t.Errorf("job %s: metrics_path %q, the server serves %s", sc.JobName, sc.MetricsPath, metricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	slices.Sort(targets)
	p := loadCompose(t)
	var want []string
	for _, name := range composeAPIServices(p) {
		want = append(want, name+":"+strconv.Itoa(port(t, composeSettings(t, p, name).HTTPAddr)))
	}
	if !slices.Equal(targets, want) {
		t.Errorf("scrape targets %v, want each compose API service directly: %v", targets, want)
	}
}

// describingRegistry records the names of the metrics registered on it.
type describingRegistry struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *describingRegistry) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *describingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *describingRegistry) Unregister(prometheus.Collector) bool { return false }

// serverMetricNames are the metrics the server registers (observe.New), with the series names of
// histograms.
func serverMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := &describingRegistry{names: map[string]bool{}}
	if _, err := observe.New(reg); err != nil {
		t.Fatal(err)
	}
	if !reg.names["taskgraph_http_requests_total"] {
		t.Fatalf("could not read the metric names from their descriptions: %v", reg.names)
	}
	for name := range reg.names {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			reg.names[name+suffix] = true
		}
	}
	return reg.names
}

var (
	grafanaVar  = regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range)\}?|\$\{?[A-Za-z_]\w*\}?`)
	taskgraphID = regexp.MustCompile(`\btaskgraph_\w+`)
)

// TestGrafanaDashboard: every query of the dashboard is PromQL that `promtool check rules` accepts
// (as a recording rule, with Grafana's variables filled in), it reads only metrics the server
// registers, and every panel reads the dashboard's data source variable.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", "prometheus")
	var dash struct {
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, "deploy/grafana/taskgraph-dashboard.json"), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	known := serverMetricNames(t)
	checkNames := func(where, text string) {
		for _, name := range taskgraphID.FindAllString(text, -1) {
			if !known[name] {
				t.Errorf("%s reads %s, which the server does not export", where, name)
			}
		}
	}
	dsVar := false
	for _, v := range dash.Templating.List {
		dsVar = dsVar || (v.Name == "DS_PROMETHEUS" && v.Type == "datasource" && v.Query == "prometheus")
		checkNames("variable "+v.Name, fmt.Sprint(v.Query))
	}
	if !dsVar {
		t.Error("want a datasource variable DS_PROMETHEUS of type prometheus")
	}

	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	var walk func([]grafanaPanel)
	walk = func(panels []grafanaPanel) {
		for _, p := range panels {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource.UID != "${DS_PROMETHEUS}" || len(p.Targets) == 0 {
				t.Errorf("panel %q: want queries on data source ${DS_PROMETHEUS}", p.Title)
			}
			for i, q := range p.Targets {
				checkNames(fmt.Sprintf("panel %q", p.Title), q.Expr)
				expr := grafanaVar.ReplaceAllStringFunc(q.Expr, func(v string) string {
					if strings.Contains(v, "__") {
						return "5m"
					}
					return ".*"
				})
				b, _ := json.Marshal(expr)
				fmt.Fprintf(&rules, "      - record: panel_%d_%d\n        expr: %s\n", p.ID, i, b)
			}
		}
	}
	walk(dash.Panels)
	file := filepath.Join(t.TempDir(), "dashboard.rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, promtool, "check", "rules", file)
}

type grafanaPanel struct {
	ID         int            `json:"id"`
	Title      string         `json:"title"`
	Type       string         `json:"type"`
	Panels     []grafanaPanel `json:"panels"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// backupMetric is a series name of deploy/pgbackrest/pgbackrest-metrics.
var backupMetric = regexp.MustCompile(`\b(?:pgbackrest|pg_archiver)_[a-z_]+`)

// TestAlertRules: `promtool check rules` accepts deploy/prometheus-rules.yml, its unit tests
// (`promtool test rules`) pass, and every backup series the rules read is one that
// deploy/pgbackrest/pgbackrest-metrics prints (internal/opstest runs that script for real).
func TestAlertRules(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", "prometheus")
	run(t, promtool, "check", "rules", repoPath(t, "deploy/prometheus-rules.yml"))
	run(t, promtool, "test", "rules", repoPath(t, "deploy/prometheus-rules.test.yml"))

	script := string(readFile(t, "deploy/pgbackrest/pgbackrest-metrics"))
	names := backupMetric.FindAllString(string(readFile(t, "deploy/prometheus-rules.yml")), -1)
	if len(names) == 0 {
		t.Fatal("the rules read no backup series")
	}
	for _, name := range names {
		if !strings.Contains(script, "'"+name+"{") && !strings.Contains(script, "'"+name+" ") {
			t.Errorf("deploy/prometheus-rules.yml reads %s, which pgbackrest-metrics does not print", name)
		}
	}
	var cfg struct {
		RuleFiles []string `json:"rule_files"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus.yml"), &cfg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.RuleFiles, "prometheus-rules.yml") {
		t.Errorf("deploy/prometheus.yml loads rule files %v, want prometheus-rules.yml", cfg.RuleFiles)
	}
}
