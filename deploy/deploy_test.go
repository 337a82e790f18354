// Package deploy_test checks the deployment files statically: the Dockerfile, .dockerignore,
// docker-compose.yml, the nginx configurations, the Kubernetes manifests in k8s/ and the Grafana
// dashboard. Docker is not needed; nginx -t and kubectl kustomize run when those tools are installed.
//
// Settings named anywhere are compared with the application's own list (the one `taskgraph --help`
// prints) and loaded through its configuration code, so a misspelt variable or an out-of-range value
// fails here rather than at a pod's start. TestImageSubcommands builds the binary and runs each
// subcommand the files use.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/taskgraph/taskgraph/internal/config"
)

// ---------------------------------------------------------------------------------------------------
// Expectations shared by several tests
// ---------------------------------------------------------------------------------------------------

const (
	namespace     = "taskgraph"
	apiDeployment = "taskgraph-api"
	configMapName = "taskgraph-config"
	secretName    = "taskgraph-secrets"
	// A valid production secret for loading the manifests' settings (the files hold placeholders).
	testJWTSecret = "0123456789abcdef0123456789abcdef0123456789abcdef"
)

// Subcommands the deployment files run. Those in pendingSubcommands are not in the binary yet: the
// subcommand test skips them (saying so) until they exist, then checks them like the others.
var (
	knownSubcommands   = []string{"serve", "migrate", "set-role", "healthcheck", "worker"}
	pendingSubcommands = map[string]string{}
)

// dashboardMetrics are the only metric names the dashboard may use, with their labels.
var dashboardMetrics = map[string][]string{
	"taskgraph_http_requests_total":                       {"route", "method", "status"},
	"taskgraph_http_request_duration_seconds_bucket":      {"route", "le"},
	"taskgraph_http_in_flight_requests":                   {},
	"taskgraph_graphql_operation_duration_seconds_bucket": {"operation", "type", "le"},
	"taskgraph_graphql_errors_total":                      {"code"},
	"taskgraph_graphql_deprecated_field_usage_total":      {"field", "client_name", "client_version"},
	"taskgraph_db_statement_duration_seconds_bucket":      {"statement", "le"},
	"taskgraph_db_pool_connections":                       {"pool", "state"},
	"taskgraph_cache_requests_total":                      {"result"},
	"taskgraph_cache_faults_total":                        {},
	"taskgraph_rate_limit_refusals_total":                 {"limit"},
	"taskgraph_active_users":                              {},
}

// Labels Prometheus adds to every scraped series.
var targetLabels = []string{"instance", "job"}

// ---------------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------------

var moduleRoot = sync.OnceValues(func() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
})

func root(t *testing.T) string {
	t.Helper()
	dir, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------------

// knownSettings is the first column of the settings table `taskgraph --help` prints.
func knownSettings(t *testing.T) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	config.Usage(&buf)
	names := parseSettingsTable(buf.String())
	if len(names) < 10 || !names["DATABASE_URL"] || !names["SHUTDOWN_TIMEOUT"] {
		t.Fatalf("could not read the settings table:\n%s", buf.String())
	}
	return names
}

func parseSettingsTable(help string) map[string]bool {
	names := make(map[string]bool)
	inTable := false
	for _, line := range strings.Split(help, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "VARIABLE" {
			inTable = true
			continue
		}
		if inTable && regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(fields[0]) {
			names[fields[0]] = true
		}
	}
	return names
}

func checkSettingNames(t *testing.T, where string, env map[string]string, known map[string]bool) {
	t.Helper()
	for _, name := range sortedKeys(env) {
		if !known[name] {
			t.Errorf("%s: %s is not a taskgraph setting (see `taskgraph --help`)", where, name)
		}
	}
}

// loadConfig runs the application's configuration code on env, as the binary would at start.
func loadConfig(env map[string]string) (config.Config, error) {
	return config.Load(func(k string) string { return env[k] })
}

// ---------------------------------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------------------------------

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ObjectHead struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	TimeoutSeconds   int `yaml:"timeoutSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type nameRef struct {
	Name string `yaml:"name"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *nameRef `yaml:"configMapRef"`
		SecretRef    *nameRef `yaml:"secretRef"`
	} `yaml:"envFrom"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]any `yaml:"requests"`
		Limits   map[string]any `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Privileged               *bool `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
		AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
		RestartPolicy                 string `yaml:"restartPolicy"`
		SecurityContext               *struct {
			RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
			RunAsUser      *int64 `yaml:"runAsUser"`
			SeccompProfile *struct {
				Type string `yaml:"type"`
			} `yaml:"seccompProfile"`
		} `yaml:"securityContext"`
		TopologySpreadConstraints []struct {
			LabelSelector labelSelector `yaml:"labelSelector"`
		} `yaml:"topologySpreadConstraints"`
		Containers []container `yaml:"containers"`
	} `yaml:"spec"`
}

type deployment struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
				MaxSurge       any `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template podTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type job struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		BackoffLimit *int        `yaml:"backoffLimit"`
		Template     podTemplate `yaml:"template"`
	} `yaml:"spec"`
}

type service struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type hpa struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas *int `yaml:"minReplicas"`
		MaxReplicas int  `yaml:"maxReplicas"`
		Metrics     []struct {
			Type     string `yaml:"type"`
			Resource *struct {
				Name   string `yaml:"name"`
				Target struct {
					Type               string `yaml:"type"`
					AverageUtilization *int   `yaml:"averageUtilization"`
				} `yaml:"target"`
			} `yaml:"resource"`
		} `yaml:"metrics"`
	} `yaml:"spec"`
}

type pdb struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		MinAvailable   any           `yaml:"minAvailable"`
		MaxUnavailable any           `yaml:"maxUnavailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

type configMap struct {
	ObjectHead `yaml:",inline"`
	Data       map[string]string `yaml:"data"`
}

type secret struct {
	ObjectHead `yaml:",inline"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

type ingress struct {
	ObjectHead `yaml:",inline"`
	Spec       struct {
		Rules []struct {
			HTTP struct {
				Paths []struct {
					Path    string `yaml:"path"`
					Backend struct {
						Service struct {
							Name string `yaml:"name"`
							Port struct {
								Name   string `yaml:"name"`
								Number int    `yaml:"number"`
							} `yaml:"port"`
						} `yaml:"service"`
					} `yaml:"backend"`
				} `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

type kustomization struct {
	ObjectHead `yaml:",inline"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
}

// k8sDoc is one YAML document of a file in deploy/k8s.
type k8sDoc struct {
	file string
	raw  map[string]any
	head ObjectHead
}

func (d k8sDoc) String() string {
	return fmt.Sprintf("%s: %s %q", d.file, d.head.Kind, d.head.Metadata.Name)
}

// decode re-reads the document into a typed view.
func (d k8sDoc) decode(t *testing.T, into any) {
	t.Helper()
	b, err := yaml.Marshal(d.raw)
	if err == nil {
		err = yaml.Unmarshal(b, into)
	}
	if err != nil {
		t.Fatalf("%s: %v", d, err)
	}
}

type manifests struct {
	docs        []k8sDoc
	deployments map[string]deployment
	jobs        map[string]job
	services    map[string]service
	hpas        map[string]hpa
	pdbs        map[string]pdb
	configMaps  map[string]configMap
	secrets     map[string]secret
	ingresses   map[string]ingress
	kustomize   *kustomization
}

// pods are the pod templates of the Deployments and Jobs, by "Kind/name".
func (m *manifests) pods() map[string]podTemplate {
	out := make(map[string]podTemplate)
	for name, d := range m.deployments {
		out["Deployment/"+name] = d.Spec.Template
	}
	for name, j := range m.jobs {
		out["Job/"+name] = j.Spec.Template
	}
	return out
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	dir := filepath.Join(root(t), "deploy", "k8s")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	yml, _ := filepath.Glob(filepath.Join(dir, "*.yml"))
	files = append(files, yml...)
	if len(files) == 0 {
		t.Fatalf("no manifests in %s", dir)
	}
	sort.Strings(files)
	m := &manifests{
		deployments: map[string]deployment{}, jobs: map[string]job{}, services: map[string]service{},
		hpas: map[string]hpa{}, pdbs: map[string]pdb{}, configMaps: map[string]configMap{},
		secrets: map[string]secret{}, ingresses: map[string]ingress{},
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var raw map[string]any
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", filepath.Base(path), i+1, err)
			}
			if raw == nil {
				continue // an empty document, e.g. after a trailing ---
			}
			doc := k8sDoc{file: filepath.Base(path), raw: raw}
			doc.decode(t, &doc.head)
			m.docs = append(m.docs, doc)
			name := doc.head.Metadata.Name
			switch doc.head.Kind {
			case "Deployment":
				var v deployment
				doc.decode(t, &v)
				m.deployments[name] = v
			case "Job":
				var v job
				doc.decode(t, &v)
				m.jobs[name] = v
			case "Service":
				var v service
				doc.decode(t, &v)
				m.services[name] = v
			case "HorizontalPodAutoscaler":
				var v hpa
				doc.decode(t, &v)
				m.hpas[name] = v
			case "PodDisruptionBudget":
				var v pdb
				doc.decode(t, &v)
				m.pdbs[name] = v
			case "ConfigMap":
				var v configMap
				doc.decode(t, &v)
				m.configMaps[name] = v
			case "Secret":
				var v secret
				doc.decode(t, &v)
				m.secrets[name] = v
			case "Ingress":
				var v ingress
				doc.decode(t, &v)
				m.ingresses[name] = v
			case "Kustomization":
				var v kustomization
				doc.decode(t, &v)
				m.kustomize = &v
			}
		}
	}
	return m
}

func (m *manifests) apiDeployment(t *testing.T) deployment {
	t.Helper()
	d, ok := m.deployments[apiDeployment]
	if !ok {
		t.Fatalf("no Deployment %q in deploy/k8s", apiDeployment)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment %s: want exactly one container, got %d", apiDeployment, len(d.Spec.Template.Spec.Containers))
	}
	return d
}

// settingsEnv is the environment the manifests give the taskgraph containers: the ConfigMap and the
// Secret (with a usable JWT_SECRET in place of the placeholder when withTestSecret).
func (m *manifests) settingsEnv(t *testing.T, withTestSecret bool) map[string]string {
	t.Helper()
	cm, ok := m.configMaps[configMapName]
	if !ok {
		t.Fatalf("no ConfigMap %q", configMapName)
	}
	sec, ok := m.secrets[secretName]
	if !ok {
		t.Fatalf("no Secret %q", secretName)
	}
	env := make(map[string]string)
	for k, v := range cm.Data {
		env[k] = v
	}
	for k, v := range sec.StringData {
		env[k] = v
	}
	if withTestSecret {
		env["JWT_SECRET"] = testJWTSecret
	}
	return env
}

func (m *manifests) shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	cfg, err := loadConfig(m.settingsEnv(t, true))
	if err != nil {
		t.Fatalf("settings of %s/%s do not load: %v", configMapName, secretName, err)
	}
	return cfg.ShutdownTimeout
}

func TestKubernetesObjectsAreWellFormed(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	seen := make(map[string]string)
	for _, d := range m.docs {
		h := d.head
		if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
			t.Errorf("%s: apiVersion, kind and metadata.name are required (got %q, %q, %q)", d.file, h.APIVersion, h.Kind, h.Metadata.Name)
			continue
		}
		key := h.Kind + "/" + h.Metadata.Name
		if prev, dup := seen[key]; dup {
			t.Errorf("%s: %s is also defined in %s", d.file, key, prev)
		}
		seen[key] = d.file
		switch h.Kind {
		case "Namespace":
			if h.Metadata.Name != namespace {
				t.Errorf("%s: namespace is %q, want %q", d, h.Metadata.Name, namespace)
			}
		case "Kustomization":
		default:
			if h.Metadata.Namespace != namespace {
				t.Errorf("%s: metadata.namespace = %q, want %q", d, h.Metadata.Namespace, namespace)
			}
		}
	}
	for _, kind := range []string{"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} {
		found := false
		for _, d := range m.docs {
			found = found || d.head.Kind == kind
		}
		if !found {
			t.Errorf("deploy/k8s has no %s", kind)
		}
	}
	if _, ok := m.deployments["taskgraph-worker"]; !ok {
		t.Error("deploy/k8s has no taskgraph-worker Deployment")
	}
	if j, ok := m.jobs["taskgraph-migrate"]; !ok {
		t.Error("deploy/k8s has no taskgraph-migrate Job")
	} else {
		if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 3 {
			t.Errorf("Job taskgraph-migrate: backoffLimit = %v, want 3", j.Spec.BackoffLimit)
		}
		if rp := j.Spec.Template.Spec.RestartPolicy; rp != "Never" && rp != "OnFailure" {
			t.Errorf("Job taskgraph-migrate: restartPolicy = %q, want Never or OnFailure", rp)
		}
		if c := j.Spec.Template.Spec.Containers; len(c) != 1 || !slices.Equal(c[0].Args, []string{"migrate"}) {
			t.Errorf("Job taskgraph-migrate must run `taskgraph migrate`")
		}
	}
	if w, ok := m.deployments["taskgraph-worker"]; ok {
		if c := w.Spec.Template.Spec.Containers; len(c) != 1 || !slices.Equal(c[0].Args, []string{"worker"}) {
			t.Errorf("Deployment taskgraph-worker must run `taskgraph worker`")
		}
	}
}

func TestKustomization(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	if m.kustomize == nil {
		t.Fatal("deploy/k8s/kustomization.yaml is missing")
	}
	if m.kustomize.Namespace != namespace {
		t.Errorf("kustomization namespace = %q, want %q", m.kustomize.Namespace, namespace)
	}
	listed := make(map[string]bool)
	for _, r := range m.kustomize.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join(root(t), "deploy", "k8s", r)); err != nil {
			t.Errorf("kustomization lists %s: %v", r, err)
		}
	}
	// Every manifest is applied, except the worker until its subcommand exists.
	files := make(map[string]bool)
	for _, d := range m.docs {
		files[d.file] = true
	}
	for f := range files {
		if f == "kustomization.yaml" || listed[f] {
			continue
		}
		if f == "deployment-worker.yaml" {
			if _, pending := pendingSubcommands["worker"]; pending {
				continue
			}
			t.Errorf("the worker subcommand exists now: add %s to kustomization.yaml's resources", f)
			continue
		}
		t.Errorf("%s is not listed in kustomization.yaml's resources", f)
	}

	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Log("kubectl not installed: skipping `kubectl kustomize deploy/k8s`")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(root(t), "deploy", "k8s"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", err, stderr.String())
	}
	if !bytes.Contains(out, []byte("name: "+apiDeployment)) {
		t.Errorf("kubectl kustomize output lacks %s", apiDeployment)
	}
}

// containerPort resolves a probe's or a Service's port (a number or a port name) on c.
func containerPort(c container, port any) (int, bool) {
	s := fmt.Sprint(port)
	if n, err := strconv.Atoi(s); err == nil {
		for _, p := range c.Ports {
			if p.ContainerPort == n {
				return n, true
			}
		}
		return n, false
	}
	for _, p := range c.Ports {
		if p.Name == s {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func TestAPIDeployment(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	d := m.apiDeployment(t)
	c := d.Spec.Template.Spec.Containers[0]

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
	}
	if d.Spec.Strategy.Type != "RollingUpdate" || d.Spec.Strategy.RollingUpdate == nil ||
		fmt.Sprint(d.Spec.Strategy.RollingUpdate.MaxUnavailable) != "0" {
		t.Errorf("strategy must be RollingUpdate with maxUnavailable 0, got %+v", d.Spec.Strategy)
	}
	if !slices.Equal(c.Args, []string{"serve"}) || len(c.Command) != 0 {
		t.Errorf("the api container must run the image's entrypoint with args [serve], got command %v args %v", c.Command, c.Args)
	}

	// The container port is the one the server listens on.
	cfg, err := loadConfig(m.settingsEnv(t, true))
	if err != nil {
		t.Fatalf("settings do not load: %v", err)
	}
	_, portText, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		t.Fatalf("HTTP_ADDR %q: %v", cfg.HTTPAddr, err)
	}
	listenPort, _ := strconv.Atoi(portText)
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != listenPort {
		t.Errorf("container ports = %+v, want one port %d (HTTP_ADDR %s)", c.Ports, listenPort, cfg.HTTPAddr)
	}

	probes := []struct {
		name string
		p    *probe
		path string
	}{
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	}
	for _, pr := range probes {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", pr.name, pr.path)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s: path = %q, want %q", pr.name, pr.p.HTTPGet.Path, pr.path)
		}
		if port, ok := containerPort(c, pr.p.HTTPGet.Port); !ok || port != listenPort {
			t.Errorf("%s: port %v is not the container port %d", pr.name, pr.p.HTTPGet.Port, listenPort)
		}
		if pr.p.TimeoutSeconds < 1 || pr.p.PeriodSeconds < 1 {
			t.Errorf("%s: set periodSeconds and timeoutSeconds explicitly", pr.name)
		}
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.TimeoutSeconds > 0 && c.ReadinessProbe.TimeoutSeconds < 3 {
		t.Errorf("readinessProbe timeoutSeconds %d: /readyz pings the database for up to 2s, allow at least 3", c.ReadinessProbe.TimeoutSeconds)
	}

	// Prometheus annotations on the pod template point at the same port.
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(listenPort) {
		t.Errorf("pod template annotations %v: want prometheus.io/scrape \"true\", path /metrics, port %d", ann, listenPort)
	}

	// Shutdown: the grace period covers the preStop delay and SHUTDOWN_TIMEOUT.
	shutdown := cfg.ShutdownTimeout
	preStop := 0
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = c.Lifecycle.PreStop.Sleep.Seconds
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Errorf("terminationGracePeriodSeconds not set (default 30s); it must exceed preStop + SHUTDOWN_TIMEOUT (%ds + %s)", preStop, shutdown)
	} else if time.Duration(*grace)*time.Second <= time.Duration(preStop)*time.Second+shutdown {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop %ds + SHUTDOWN_TIMEOUT %s", *grace, preStop, shutdown)
	}
}

func TestPodSpecsAreHardened(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	pods := m.pods()
	if len(pods) < 3 {
		t.Fatalf("want the api and worker Deployments and the migrate Job, got %v", sortedKeys(pods))
	}
	for name, pod := range pods {
		t.Run(name, func(t *testing.T) {
			spec := pod.Spec
			sc := spec.SecurityContext
			if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Error("pod securityContext.runAsNonRoot must be true")
			}
			if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Error("pod securityContext.runAsUser must be a non-zero UID (the image's USER 65532)")
			}
			if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != "RuntimeDefault" {
				t.Error("pod securityContext.seccompProfile.type must be RuntimeDefault (restricted Pod Security)")
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("automountServiceAccountToken must be false: the app never calls the Kubernetes API")
			}
			if spec.TerminationGracePeriodSeconds != nil && pod.Metadata.Labels["app.kubernetes.io/component"] != "migrate" {
				if time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second <= m.shutdownTimeout(t) {
					t.Errorf("terminationGracePeriodSeconds %d must exceed SHUTDOWN_TIMEOUT %s", *spec.TerminationGracePeriodSeconds, m.shutdownTimeout(t))
				}
			}
			for _, c := range spec.Containers {
				checkContainer(t, m, c)
			}
		})
	}
}

func checkContainer(t *testing.T, m *manifests, c container) {
	t.Helper()
	for _, kind := range []string{"cpu", "memory"} {
		req, okReq := quantity(c.Resources.Requests[kind])
		lim, okLim := quantity(c.Resources.Limits[kind])
		if !okReq || !okLim {
			t.Errorf("container %s: resources.requests.%s and resources.limits.%s must be set (got %v, %v)",
				c.Name, kind, kind, c.Resources.Requests[kind], c.Resources.Limits[kind])
			continue
		}
		if req > lim {
			t.Errorf("container %s: %s request %v exceeds limit %v", c.Name, kind, c.Resources.Requests[kind], c.Resources.Limits[kind])
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("container %s: no securityContext", c.Name)
	default:
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s: securityContext.runAsNonRoot must be true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: must not be privileged", c.Name)
		}
		if !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities must drop [ALL] and add none, got %+v", c.Name, sc.Capabilities)
		}
	}
	if !strings.HasPrefix(c.Image, "taskgraph:") && !strings.Contains(c.Image, "/taskgraph:") {
		t.Errorf("container %s: image %q is not the taskgraph image", c.Name, c.Image)
	}
	if len(c.Args) == 0 || !slices.Contains(knownSubcommands, c.Args[0]) {
		t.Errorf("container %s: args %v must start with a taskgraph subcommand %v", c.Name, c.Args, knownSubcommands)
	}
	// Settings come from the shared ConfigMap and Secret, which must exist.
	var fromConfigMap, fromSecret bool
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if _, ok := m.configMaps[ef.ConfigMapRef.Name]; !ok {
				t.Errorf("container %s: envFrom ConfigMap %q does not exist", c.Name, ef.ConfigMapRef.Name)
			}
			fromConfigMap = true
		}
		if ef.SecretRef != nil {
			if _, ok := m.secrets[ef.SecretRef.Name]; !ok {
				t.Errorf("container %s: envFrom Secret %q does not exist", c.Name, ef.SecretRef.Name)
			}
			fromSecret = true
		}
	}
	if !fromConfigMap || !fromSecret {
		t.Errorf("container %s: want envFrom both %s and %s", c.Name, configMapName, secretName)
	}
}

// quantity parses the Kubernetes quantities these manifests use (cores, millicores, binary and
// decimal byte suffixes) into a comparable number.
func quantity(v any) (float64, bool) {
	if v == nil {
		return 0, false
	}
	s := strings.TrimSpace(fmt.Sprint(v))
	suffixes := []struct {
		suffix string
		mult   float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"m", 1e-3},
	}
	mult := 1.0
	for _, sf := range suffixes {
		if strings.HasSuffix(s, sf.suffix) {
			s, mult = strings.TrimSuffix(s, sf.suffix), sf.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, false
	}
	return f * mult, true
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestSelectorsAndReferences(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	api := m.apiDeployment(t)
	apiLabels := api.Spec.Template.Metadata.Labels

	for name, d := range m.deployments {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Errorf("Deployment %s: selector %v does not match its pod labels %v", name, d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
		}
		for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
			if !selects(tsc.LabelSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
				t.Errorf("Deployment %s: topology spread selector %v does not match its pods", name, tsc.LabelSelector.MatchLabels)
			}
		}
	}

	// The Service sends traffic to the API pods and to nothing else (not the worker, not the Job).
	svc, ok := m.services[apiDeployment]
	if !ok {
		t.Fatalf("no Service %q", apiDeployment)
	}
	if svc.Spec.Type != "" && svc.Spec.Type != "ClusterIP" {
		t.Errorf("Service %s: type %q, want ClusterIP", svc.Metadata.Name, svc.Spec.Type)
	}
	if !selects(svc.Spec.Selector, apiLabels) {
		t.Errorf("Service %s: selector %v does not match the api pod labels %v", svc.Metadata.Name, svc.Spec.Selector, apiLabels)
	}
	for name, pod := range m.pods() {
		if name != "Deployment/"+apiDeployment && selects(svc.Spec.Selector, pod.Metadata.Labels) {
			t.Errorf("Service %s also selects the pods of %s", svc.Metadata.Name, name)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("Service %s: want one port 80, got %+v", svc.Metadata.Name, svc.Spec.Ports)
	} else if port, ok := containerPort(api.Spec.Template.Spec.Containers[0], svc.Spec.Ports[0].TargetPort); !ok || port != 8080 {
		t.Errorf("Service %s: targetPort %v must be the api container port 8080", svc.Metadata.Name, svc.Spec.Ports[0].TargetPort)
	}

	// The HPA scales the API Deployment on CPU.
	h, ok := m.hpas[apiDeployment]
	if !ok {
		t.Fatalf("no HorizontalPodAutoscaler %q", apiDeployment)
	}
	if h.APIVersion != "autoscaling/v2" {
		t.Errorf("HPA apiVersion %q, want autoscaling/v2", h.APIVersion)
	}
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != apiDeployment || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA scaleTargetRef %+v, want apps/v1 Deployment %s", ref, apiDeployment)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 || h.Spec.MaxReplicas != 20 {
		t.Errorf("HPA min/max = %v/%d, want 3/20", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	cpu70 := false
	for _, mt := range h.Spec.Metrics {
		if mt.Type == "Resource" && mt.Resource != nil && mt.Resource.Name == "cpu" &&
			mt.Resource.Target.Type == "Utilization" && mt.Resource.Target.AverageUtilization != nil &&
			*mt.Resource.Target.AverageUtilization == 70 {
			cpu70 = true
		}
	}
	if !cpu70 {
		t.Error("HPA must target 70% CPU utilization")
	}
	if api.Spec.Replicas != nil && h.Spec.MinReplicas != nil && *api.Spec.Replicas != *h.Spec.MinReplicas {
		t.Errorf("Deployment replicas %d differ from the HPA's minReplicas %d", *api.Spec.Replicas, *h.Spec.MinReplicas)
	}

	// The PDB protects the API pods and leaves room for voluntary evictions.
	p, ok := m.pdbs[apiDeployment]
	if !ok {
		t.Fatalf("no PodDisruptionBudget %q", apiDeployment)
	}
	if !selects(p.Spec.Selector.MatchLabels, apiLabels) {
		t.Errorf("PDB selector %v does not match the api pod labels %v", p.Spec.Selector.MatchLabels, apiLabels)
	}
	if !maps.Equal(p.Spec.Selector.MatchLabels, api.Spec.Selector.MatchLabels) {
		t.Errorf("PDB selector %v differs from the Deployment's selector %v", p.Spec.Selector.MatchLabels, api.Spec.Selector.MatchLabels)
	}
	if fmt.Sprint(p.Spec.MinAvailable) != "2" {
		t.Errorf("PDB minAvailable = %v, want 2", p.Spec.MinAvailable)
	}
	if h.Spec.MinReplicas != nil && *h.Spec.MinReplicas <= 2 {
		t.Errorf("HPA minReplicas %d leaves no pod evictable under the PDB's minAvailable 2", *h.Spec.MinReplicas)
	}

	// Ingress backends name the Service and its port.
	for name, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, path := range rule.HTTP.Paths {
				b := path.Backend.Service
				s, ok := m.services[b.Name]
				if !ok {
					t.Errorf("Ingress %s: %s goes to unknown Service %q", name, path.Path, b.Name)
					continue
				}
				found := false
				for _, sp := range s.Spec.Ports {
					found = found || (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}
				if !found {
					t.Errorf("Ingress %s: %s uses a port Service %s does not have", name, path.Path, b.Name)
				}
				if strings.HasPrefix(path.Path, "/metrics") {
					t.Errorf("Ingress %s exposes %s publicly", name, path.Path)
				}
			}
		}
	}
}

func TestKubernetesSettings(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	known := knownSettings(t)
	checkSettingNames(t, "ConfigMap "+configMapName, m.configMaps[configMapName].Data, known)
	sec := m.secrets[secretName]
	checkSettingNames(t, "Secret "+secretName, sec.StringData, known)
	checkSettingNames(t, "Secret "+secretName, sec.Data, known)
	for _, k := range []string{"JWT_SECRET", "DATABASE_URL", "REDIS_URL"} {
		if _, ok := sec.StringData[k]; !ok {
			t.Errorf("Secret %s: stringData lacks %s", secretName, k)
		}
		if _, ok := m.configMaps[configMapName].Data[k]; ok {
			t.Errorf("ConfigMap %s holds the secret setting %s: keep it in the Secret", configMapName, k)
		}
	}
	for name, pod := range m.pods() {
		for _, c := range pod.Spec.Containers {
			env := make(map[string]string)
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			checkSettingNames(t, name+" container "+c.Name+" env", env, known)
		}
	}

	// The values load as the server would load them...
	cfg, err := loadConfig(m.settingsEnv(t, true))
	if err != nil {
		t.Fatalf("ConfigMap and Secret settings are rejected by the application: %v", err)
	}
	if !cfg.Production() {
		t.Error("APP_ENV must be production")
	}
	if cfg.RedisURL == "" {
		t.Error("REDIS_URL must be set: several API pods need the shared cache and rate limits")
	}
	// ...and the placeholder secret cannot be deployed by accident: production refuses it.
	if _, err := loadConfig(m.settingsEnv(t, false)); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("the placeholder JWT_SECRET in secret.yaml must be rejected in production (too short), got %v", err)
	}
}

// ---------------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore
// ---------------------------------------------------------------------------------------------------

type dockerInstruction struct {
	cmd  string // upper case
	args string
	line int
}

type dockerStage struct {
	from         string
	name         string
	instructions []dockerInstruction
}

func parseDockerfile(t *testing.T) []dockerStage {
	t.Helper()
	var stages []dockerStage
	lines := strings.Split(string(readFile(t, "Dockerfile")), "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := dockerInstruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " "), line: start}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			st := dockerStage{}
			for j := 0; j < len(f); j++ {
				switch {
				case strings.HasPrefix(f[j], "--"):
				case strings.EqualFold(f[j], "AS") && j+1 < len(f):
					st.name = f[j+1]
					j++
				case st.from == "":
					st.from = f[j]
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("Dockerfile:%d: %s before the first FROM", start, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instructions = append(stages[len(stages)-1].instructions, in)
	}
	return stages
}

func (s dockerStage) find(cmd string) []dockerInstruction {
	var out []dockerInstruction
	for _, in := range s.instructions {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// execForm parses a JSON exec-form argument list, e.g. ["/taskgraph", "serve"].
func execForm(s string) ([]string, bool) {
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, false
	}
	return out, true
}

// dockerEnv reads ENV instructions (KEY=VALUE forms) into a map.
func dockerEnv(s dockerStage) map[string]string {
	env := make(map[string]string)
	for _, in := range s.find("ENV") {
		for _, kv := range strings.Fields(in.args) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	return env
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	if !strings.HasPrefix(build.from, "golang:1.26") || !strings.Contains(build.from, "bookworm") {
		t.Errorf("build stage FROM %q, want golang:1.26-bookworm", build.from)
	}
	var buildRuns []string
	for _, in := range build.find("RUN") {
		buildRuns = append(buildRuns, in.args)
	}
	buildText := strings.Join(buildRuns, "\n") + "\n" + fmt.Sprint(build.find("ENV"))
	for _, want := range []string{"--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build",
		"CGO_ENABLED=0", "-trimpath", `-ldflags="-s -w"`, "./cmd/taskgraph"} {
		if !strings.Contains(buildText, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}

	if final.from != "gcr.io/distroless/static-debian12:nonroot" && final.from != "scratch" {
		t.Errorf("final stage FROM %q, want gcr.io/distroless/static-debian12:nonroot", final.from)
	}
	copied := false
	for _, in := range final.find("COPY") {
		copied = copied || (strings.Contains(in.args, "--from="+build.name) && strings.HasSuffix(in.args, " /taskgraph"))
	}
	if build.name == "" || !copied {
		t.Error("final stage must COPY --from=<build stage> the binary to /taskgraph")
	}

	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("final stage has no USER: the container would run as root")
	}
	user := strings.Fields(users[len(users)-1].args)[0]
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root UID (Kubernetes runAsNonRoot cannot check names)", user)
	}

	if ex := final.find("EXPOSE"); len(ex) != 1 || strings.Fields(ex[0].args)[0] != "8080" {
		t.Errorf("want EXPOSE 8080, got %v", ex)
	}
	hc := final.find("HEALTHCHECK")
	if len(hc) != 1 {
		t.Fatalf("want one HEALTHCHECK in the final stage, got %d", len(hc))
	}
	_, cmdPart, ok := strings.Cut(hc[0].args, "CMD ")
	if args, isExec := execForm(strings.TrimSpace(cmdPart)); !ok || !isExec || !slices.Equal(args, []string{"/taskgraph", "healthcheck"}) {
		t.Errorf("HEALTHCHECK %q: want CMD [\"/taskgraph\", \"healthcheck\"] (no shell in distroless)", hc[0].args)
	}
	if ep := final.find("ENTRYPOINT"); len(ep) != 1 || !execEquals(ep[0].args, "/taskgraph") {
		t.Errorf("want ENTRYPOINT [\"/taskgraph\"], got %v", ep)
	}
	if cmd := final.find("CMD"); len(cmd) != 1 || !execEquals(cmd[0].args, "serve") {
		t.Errorf("want CMD [\"serve\"], got %v", cmd)
	}

	env := dockerEnv(final)
	checkSettingNames(t, "Dockerfile ENV", env, knownSettings(t))
}

func execEquals(s string, want ...string) bool {
	args, ok := execForm(s)
	return ok && slices.Equal(args, want)
}

// dockerignore is a .dockerignore matcher: patterns relative to the context root, * and ? within a
// path element, ** across elements, ! to re-include, a match on a directory covering its contents.
type dockerignore struct {
	patterns []*regexp.Regexp
	negate   []bool
}

func parseDockerignore(text string) dockerignore {
	var d dockerignore
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		d.patterns = append(d.patterns, regexp.MustCompile(re.String()))
		d.negate = append(d.negate, neg)
	}
	return d
}

func (d dockerignore) excludes(rel string) bool {
	excluded := false
	for i, re := range d.patterns {
		for p := rel; p != "." && p != "/" && p != ""; p = filepath.ToSlash(filepath.Dir(p)) {
			if re.MatchString(p) {
				excluded = !d.negate[i]
				break
			}
		}
	}
	return excluded
}

func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	t.Parallel()
	ign := parseDockerignore(string(readFile(t, ".dockerignore")))
	for _, must := range []string{".git", ".env", "deploy/k8s/secret.yaml"} {
		if !ign.excludes(must) {
			t.Errorf(".dockerignore should exclude %s", must)
		}
	}

	// Everything `go build ./cmd/taskgraph` reads: go.mod, go.sum, non-test Go files and embedded files.
	rootDir := root(t)
	needed := []string{"go.mod", "go.sum"}
	embedRe := regexp.MustCompile(`(?m)^//go:embed\s+(.+)$`)
	err := filepath.WalkDir(rootDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rootDir, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules", "bin", "tmp":
				return filepath.SkipDir
			}
			if rel == "deploy" {
				return filepath.SkipDir // test-only package
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		needed = append(needed, rel)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range embedRe.FindAllStringSubmatch(string(src), -1) {
			for _, pat := range strings.Fields(m[1]) {
				matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), pat))
				for _, f := range matches {
					r, _ := filepath.Rel(rootDir, f)
					needed = append(needed, filepath.ToSlash(r))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(needed) < 10 {
		t.Fatalf("found only %d build inputs: %v", len(needed), needed)
	}
	for _, f := range needed {
		if ign.excludes(f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
}

// ---------------------------------------------------------------------------------------------------
// docker-compose.yml
// ---------------------------------------------------------------------------------------------------

type composeService struct {
	Image       string `yaml:"image"`
	Build       any    `yaml:"build"`
	Command     any    `yaml:"command"`
	Environment any    `yaml:"environment"`
	Healthcheck *struct {
		Test    any  `yaml:"test"`
		Disable bool `yaml:"disable"`
	} `yaml:"healthcheck"`
	DependsOn       any      `yaml:"depends_on"`
	Ports           []string `yaml:"ports"`
	Volumes         []string `yaml:"volumes"`
	Profiles        []string `yaml:"profiles"`
	Restart         string   `yaml:"restart"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	ReadOnly        bool     `yaml:"read_only"`
	CapDrop         []string `yaml:"cap_drop"`
	Networks        any      `yaml:"networks"`
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Volumes map[string]any `yaml:"volumes"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			out[i] = fmt.Sprint(x)
		}
		return out
	}
	return nil
}

func (s composeService) environment() map[string]string {
	env := make(map[string]string)
	switch v := s.Environment.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				env[k] = ""
			} else {
				env[k] = fmt.Sprint(x)
			}
		}
	case []any:
		for _, x := range v {
			k, val, _ := strings.Cut(fmt.Sprint(x), "=")
			env[k] = val
		}
	}
	return env
}

func (s composeService) dependsOn() map[string]string {
	out := make(map[string]string)
	switch v := s.DependsOn.(type) {
	case []any:
		for _, x := range v {
			out[fmt.Sprint(x)] = "service_started"
		}
	case map[string]any:
		for k, x := range v {
			cond := "service_started"
			if m, ok := x.(map[string]any); ok && m["condition"] != nil {
				cond = fmt.Sprint(m["condition"])
			}
			out[k] = cond
		}
	}
	return out
}

func (s composeService) usesTaskgraphImage() bool {
	return s.Build != nil || strings.Contains(s.Image, "taskgraph")
}

var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate expands compose variables: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?error}, ${VAR?error} and $$.
func interpolate(s string, vars map[string]string) (string, error) {
	var firstErr error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := interpolation.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		if name == "" {
			name = sub[4]
		}
		val, set := vars[name]
		switch op {
		case ":-":
			if val == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if !set || (op == ":?" && val == "") {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %s", name, arg)
				}
			}
		}
		return val
	})
	return out, firstErr
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	for _, name := range []string{"postgres", "redis", "migrate", "api1", "api2", "api3", "worker", "nginx"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("docker-compose.yml: no service %q", name)
		}
	}

	pg := c.Services["postgres"]
	if pg.Image != "postgres:15" || pg.Healthcheck == nil || !strings.Contains(fmt.Sprint(pg.Healthcheck.Test), "pg_isready") {
		t.Errorf("postgres: want image postgres:15 with a pg_isready health check")
	}
	if !slices.ContainsFunc(pg.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/var/lib/postgresql/data") }) {
		t.Error("postgres: data must live in a volume at /var/lib/postgresql/data")
	}
	rd := c.Services["redis"]
	if rd.Image != "redis:7" || rd.Healthcheck == nil || !strings.Contains(fmt.Sprint(rd.Healthcheck.Test), "ping") {
		t.Error("redis: want image redis:7 with a redis-cli ping health check")
	}

	mig := c.Services["migrate"]
	if !slices.Equal(stringList(mig.Command), []string{"migrate"}) || mig.Restart != "no" {
		t.Errorf("migrate: want command [migrate] and restart \"no\", got %v / %q", mig.Command, mig.Restart)
	}
	if mig.dependsOn()["postgres"] != "service_healthy" {
		t.Error("migrate must wait for postgres to be healthy")
	}

	shutdown := composeShutdownTimeout(t, c)
	var apis []string
	for name, s := range c.Services {
		if s.usesTaskgraphImage() && slices.Equal(stringList(s.Command), []string{"serve"}) {
			apis = append(apis, name)
		}
	}
	sort.Strings(apis)
	if !slices.Equal(apis, []string{"api1", "api2", "api3"}) {
		t.Errorf("services running `taskgraph serve` = %v, want api1, api2, api3", apis)
	}
	for _, name := range apis {
		s := c.Services[name]
		if s.Healthcheck == nil || s.Healthcheck.Disable || !slices.Equal(stringList(s.Healthcheck.Test), []string{"CMD", "/taskgraph", "healthcheck"}) {
			t.Errorf("%s: want healthcheck test [CMD, /taskgraph, healthcheck]", name)
		}
		deps := s.dependsOn()
		if deps["migrate"] != "service_completed_successfully" || deps["postgres"] != "service_healthy" || deps["redis"] != "service_healthy" {
			t.Errorf("%s: depends_on %v: want migrate completed, postgres and redis healthy", name, deps)
		}
		if grace, err := time.ParseDuration(s.StopGracePeriod); err != nil || grace <= shutdown {
			t.Errorf("%s: stop_grace_period %q must exceed SHUTDOWN_TIMEOUT %s", name, s.StopGracePeriod, shutdown)
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: want read_only and cap_drop [ALL]", name)
		}
	}

	w := c.Services["worker"]
	if !slices.Equal(stringList(w.Command), []string{"worker"}) || !w.usesTaskgraphImage() {
		t.Errorf("worker: want the taskgraph image with command [worker], got %v", w.Command)
	}
	if w.Healthcheck == nil || w.Healthcheck.Disable || !slices.Equal(stringList(w.Healthcheck.Test), []string{"CMD", "/taskgraph", "healthcheck", "worker"}) {
		t.Errorf("worker: want healthcheck test [CMD, /taskgraph, healthcheck, worker]")
	}
	if _, pending := pendingSubcommands["worker"]; !pending && len(w.Profiles) > 0 {
		t.Error("worker: the worker subcommand exists now: drop its `profiles` so it starts by default")
	}

	ngx := c.Services["nginx"]
	if ngx.Image != "nginx:1.27" {
		t.Errorf("nginx: image %q, want nginx:1.27", ngx.Image)
	}
	if !slices.Contains(ngx.Ports, "8080:80") {
		t.Errorf("nginx: ports %v, want 8080:80", ngx.Ports)
	}
	if !slices.Contains(ngx.Volumes, "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro") {
		t.Errorf("nginx: volumes %v, want ./deploy/nginx.conf mounted read-only at /etc/nginx/nginx.conf", ngx.Volumes)
	}
	deps := ngx.dependsOn()
	for _, api := range apis {
		if deps[api] != "service_healthy" {
			t.Errorf("nginx must depend on %s being healthy", api)
		}
	}

	// Bind-mounted files exist.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root(t), src)); err != nil {
					t.Errorf("%s: volume source %s: %v", name, src, err)
				}
			}
		}
	}
	for _, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("named volume %s is not declared under volumes:", src)
				}
			}
		}
	}
}

func composeShutdownTimeout(t *testing.T, c composeFile) time.Duration {
	t.Helper()
	env := c.Services["api1"].environment()
	cfg, err := loadConfig(interpolatedEnv(t, env, map[string]string{"JWT_SECRET": testJWTSecret}))
	if err != nil {
		t.Fatalf("api1 settings do not load: %v", err)
	}
	return cfg.ShutdownTimeout
}

func interpolatedEnv(t *testing.T, env, vars map[string]string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for k, v := range env {
		s, err := interpolate(v, vars)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		out[k] = s
	}
	return out
}

func TestComposeSettings(t *testing.T) {
	t.Parallel()
	c := loadCompose(t)
	known := knownSettings(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !s.usesTaskgraphImage() {
			continue
		}
		env := s.environment()
		checkSettingNames(t, "docker-compose.yml service "+name, env, known)

		// JWT_SECRET is required from the caller's environment.
		if !strings.HasPrefix(env["JWT_SECRET"], "${JWT_SECRET:?") {
			t.Errorf("%s: JWT_SECRET must be ${JWT_SECRET:?...} so compose refuses to start without it", name)
		}
		if _, err := interpolate(env["JWT_SECRET"], nil); err == nil {
			t.Errorf("%s: JWT_SECRET interpolates without a JWT_SECRET variable", name)
		}
		cfg, err := loadConfig(interpolatedEnv(t, env, map[string]string{"JWT_SECRET": testJWTSecret}))
		if err != nil {
			t.Errorf("%s: settings rejected by the application: %v", name, err)
			continue
		}
		if !cfg.Production() || cfg.RedisURL == "" {
			t.Errorf("%s: want APP_ENV=production and REDIS_URL set", name)
		}
		if u := cfg.DatabaseURL; !strings.Contains(u, "@postgres:5432/") {
			t.Errorf("%s: DATABASE_URL %q does not point at the postgres service", name, u)
		}
		if !strings.Contains(cfg.RedisURL, "//redis:6379") {
			t.Errorf("%s: REDIS_URL %q does not point at the redis service", name, cfg.RedisURL)
		}
		// X-Forwarded-For is trusted from nginx's address only, which lies in the compose network.
		ngxIP := composeIPv4(c.Services["nginx"])
		if !ngxIP.IsValid() {
			t.Fatal("nginx needs a fixed ipv4_address so TRUSTED_PROXIES can name it")
		}
		covered := false
		for _, p := range cfg.TrustedProxies {
			pfx, err := netip.ParsePrefix(p)
			covered = covered || (err == nil && pfx.Contains(ngxIP))
		}
		if !covered {
			t.Errorf("%s: TRUSTED_PROXIES %v does not include nginx's address %s", name, cfg.TrustedProxies, ngxIP)
		}
		inSubnet := false
		for _, n := range c.Networks {
			for _, cfg := range n.IPAM.Config {
				pfx, err := netip.ParsePrefix(cfg.Subnet)
				inSubnet = inSubnet || (err == nil && pfx.Contains(ngxIP))
			}
		}
		if !inSubnet {
			t.Errorf("nginx's address %s is outside every compose network subnet", ngxIP)
		}
	}
}

func composeIPv4(s composeService) netip.Addr {
	nets, ok := s.Networks.(map[string]any)
	if !ok {
		return netip.Addr{}
	}
	for _, n := range nets {
		if m, ok := n.(map[string]any); ok && m["ipv4_address"] != nil {
			a, err := netip.ParseAddr(fmt.Sprint(m["ipv4_address"]))
			if err == nil {
				return a
			}
		}
	}
	return netip.Addr{}
}

// ---------------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------------

// nginxDirectives returns the configuration's lines without comments and blank lines, trimmed.
func nginxDirectives(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		inQuote := byte(0)
		cut := len(line)
		for i := 0; i < len(line); i++ {
			c := line[i]
			switch {
			case inQuote != 0 && c == '\\':
				i++
			case inQuote != 0 && c == inQuote:
				inQuote = 0
			case inQuote == 0 && (c == '"' || c == '\''):
				inQuote = c
			case inQuote == 0 && c == '#':
				cut = i
				i = len(line)
			}
		}
		if l := strings.Join(strings.Fields(line[:cut]), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// block returns the directives between `header {` and its closing brace.
func block(directives []string, header string) []string {
	for i, d := range directives {
		if d != header+" {" {
			continue
		}
		depth := 0
		for j := i; j < len(directives); j++ {
			depth += strings.Count(directives[j], "{") - strings.Count(directives[j], "}")
			if depth == 0 {
				return directives[i+1 : j]
			}
		}
	}
	return nil
}

func upstreamServers(directives []string) []string {
	var out []string
	for _, d := range block(directives, "upstream taskgraph") {
		if f := strings.Fields(strings.TrimSuffix(d, ";")); len(f) >= 2 && f[0] == "server" {
			out = append(out, f[1])
		}
	}
	return out
}

func TestNginxConf(t *testing.T) {
	t.Parallel()
	text := string(readFile(t, "deploy/nginx.conf"))
	dirs := nginxDirectives(text)
	joined := strings.Join(dirs, "\n")
	for _, want := range []string{
		"least_conn;",
		"keepalive 64;",
		"proxy_http_version 1.1;",
		"proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
		"proxy_set_header X-Request-ID $taskgraph_request_id;",
		"map $http_x_request_id $taskgraph_request_id {",
		"default $request_id;",
		"map $http_upgrade $connection_upgrade {",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"client_max_body_size 1m;",
		"gzip off;",
		"proxy_connect_timeout",
		"proxy_read_timeout",
		"proxy_send_timeout",
		"location = /graphql {",
		"location = /api/v1/graphql {",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("deploy/nginx.conf lacks %q", want)
		}
	}
	// Connection is empty unless the client asks for a WebSocket: upstream keep-alive keeps working.
	conn := block(dirs, "map $http_upgrade $connection_upgrade")
	if !slices.Contains(conn, `default "";`) {
		t.Errorf("map $http_upgrade must default to an empty Connection header, got %v", conn)
	}
	// client_max_body_size matches MAX_BODY_BYTES.
	cfg, err := loadConfig(loadManifests(t).settingsEnv(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxBodyBytes != 1<<20 {
		t.Errorf("MAX_BODY_BYTES is %d but nginx allows 1m", cfg.MaxBodyBytes)
	}
	// /metrics is refused unless the client is internal.
	metrics := block(dirs, "location ^~ /metrics")
	denyAt := slices.Index(metrics, "deny all;")
	if denyAt < 1 || !strings.HasPrefix(metrics[denyAt-1], "allow ") || !slices.ContainsFunc(metrics, func(d string) bool { return strings.HasPrefix(d, "proxy_pass ") }) {
		t.Errorf("location ^~ /metrics must allow internal networks, then deny all, then proxy_pass; got %v", metrics)
	}
	for _, d := range metrics {
		if strings.HasPrefix(d, "allow ") {
			pfx, err := netip.ParsePrefix(strings.TrimSuffix(strings.TrimPrefix(d, "allow "), ";"))
			if err != nil {
				if a, err2 := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(d, "allow "), ";")); err2 == nil {
					pfx = netip.PrefixFrom(a, a.BitLen())
				} else {
					t.Errorf("/metrics: %q is not an address or CIDR", d)
					continue
				}
			}
			if !pfx.Addr().IsPrivate() && !pfx.Addr().IsLoopback() {
				t.Errorf("/metrics: %q allows a public network", d)
			}
		}
	}

	// The upstream lists exactly the compose API services on the port they listen on.
	c := loadCompose(t)
	var want []string
	for name, s := range c.Services {
		if s.usesTaskgraphImage() && slices.Equal(stringList(s.Command), []string{"serve"}) {
			env := interpolatedEnv(t, s.environment(), map[string]string{"JWT_SECRET": testJWTSecret})
			_, port, _ := net.SplitHostPort(env["HTTP_ADDR"])
			want = append(want, name+":"+port)
		}
	}
	sort.Strings(want)
	got := upstreamServers(dirs)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("upstream taskgraph servers = %v, want the compose api services %v", got, want)
	}
}

// nginxMayDiffer matches the directives in which nginx.local.conf may differ from nginx.conf.
var nginxMayDiffer = regexp.MustCompile(`^(pid|error_log|access_log|worker_processes|listen|zone|resolver|resolver_timeout|[a-z_]+_temp_path) |^server [^{]`)

func TestNginxLocalConfMatchesNginxConf(t *testing.T) {
	t.Parallel()
	prod := nginxDirectives(string(readFile(t, "deploy/nginx.conf")))
	local := nginxDirectives(string(readFile(t, "deploy/nginx.local.conf")))
	keep := func(ds []string) []string {
		var out []string
		for _, d := range ds {
			if !nginxMayDiffer.MatchString(d) {
				out = append(out, d)
			}
		}
		return out
	}
	p, l := keep(prod), keep(local)
	for i := 0; i < len(p) || i < len(l); i++ {
		var a, b string
		if i < len(p) {
			a = p[i]
		}
		if i < len(l) {
			b = l[i]
		}
		if a != b {
			t.Fatalf("deploy/nginx.local.conf drifted from deploy/nginx.conf at directive %d:\n  nginx.conf:       %q\n  nginx.local.conf: %q", i+1, a, b)
		}
	}

	servers := upstreamServers(local)
	if !slices.Equal(servers, []string{"127.0.0.1:18081", "127.0.0.1:18082", "127.0.0.1:18083"}) {
		t.Errorf("nginx.local.conf upstream servers = %v, want 127.0.0.1:18081..18083", servers)
	}
	if !slices.Contains(local, "listen 127.0.0.1:18080 default_server;") {
		t.Error("nginx.local.conf must listen on 127.0.0.1:18080")
	}
	// Nothing outside the -p prefix: every file path is relative.
	for _, d := range local {
		f := strings.Fields(strings.TrimSuffix(d, ";"))
		switch {
		case f[0] == "pid" || f[0] == "error_log" || f[0] == "access_log" || strings.HasSuffix(f[0], "_temp_path"):
			if len(f) < 2 || filepath.IsAbs(f[1]) {
				t.Errorf("nginx.local.conf: %q must use a path relative to the -p prefix", d)
			}
		case f[0] == "include" || f[0] == "user":
			t.Errorf("nginx.local.conf: %q would read outside the prefix or need a system user", d)
		}
	}
	for _, tp := range []string{"client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"} {
		if !slices.ContainsFunc(local, func(d string) bool { return strings.HasPrefix(d, tp+" ") }) {
			t.Errorf("nginx.local.conf must set %s under the prefix (nginx creates it even for -t)", tp)
		}
	}
}

func findNginx() (string, error) {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("nginx is not installed (apt-get install nginx-light)")
}

func TestNginxLocalConfPassesNginxT(t *testing.T) {
	t.Parallel()
	bin, err := findNginx()
	if err != nil {
		t.Skipf("skipping `nginx -t -c deploy/nginx.local.conf`: %v", err)
	}
	conf := filepath.Join(root(t), "deploy", "nginx.local.conf")
	prefix := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := []string{"-p", prefix + "/", "-c", conf, "-t", "-q"}
	// -e (nginx >= 1.19.5) keeps the log opened before the configuration is read inside the prefix.
	if v, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput(); err == nil && nginxAtLeast(string(v), 1, 19, 5) {
		args = append(args, "-e", filepath.Join(prefix, "error.log"))
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out)
	}
}

func nginxAtLeast(versionOutput string, major, minor, patch int) bool {
	m := regexp.MustCompile(`nginx/(\d+)\.(\d+)\.(\d+)`).FindStringSubmatch(versionOutput)
	if m == nil {
		return false
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	want := [3]int{major, minor, patch}
	for i := range v {
		if v[i] != want[i] {
			return v[i] > want[i]
		}
	}
	return true
}

// ---------------------------------------------------------------------------------------------------
// Prometheus and Grafana
// ---------------------------------------------------------------------------------------------------

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/prometheus.yml"), &cfg); err != nil {
		t.Fatalf("deploy/prometheus.yml: %v", err)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "/metrics" {
			t.Errorf("job %s: metrics_path %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	sort.Strings(targets)
	if !slices.Equal(targets, []string{"api1:8080", "api2:8080", "api3:8080"}) {
		t.Errorf("prometheus targets %v, want each compose api instance directly", targets)
	}
}

var (
	metricRef   = regexp.MustCompile(`\btaskgraph_[a-zA-Z0-9_:]+`)
	selectorRef = regexp.MustCompile(`\b(taskgraph_[a-zA-Z0-9_:]+)\{([^}]*)\}`)
	matcherRef  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRef = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	labelValues = regexp.MustCompile(`label_values\(\s*(taskgraph_[a-zA-Z0-9_:]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
)

// checkPromQL checks that expr uses only the dashboard metrics, with their labels.
func checkPromQL(t *testing.T, where, expr string, used map[string]bool) {
	t.Helper()
	allowed := map[string]bool{}
	for _, l := range targetLabels {
		allowed[l] = true
	}
	for _, name := range metricRef.FindAllString(expr, -1) {
		labels, ok := dashboardMetrics[name]
		if !ok {
			t.Errorf("%s: unknown metric %s", where, name)
			continue
		}
		used[name] = true
		for _, l := range labels {
			allowed[l] = true
		}
	}
	for _, m := range selectorRef.FindAllStringSubmatch(expr, -1) {
		own := map[string]bool{}
		for _, l := range append(slices.Clone(dashboardMetrics[m[1]]), targetLabels...) {
			own[l] = true
		}
		for _, lm := range matcherRef.FindAllStringSubmatch(m[2], -1) {
			if !own[lm[1]] {
				t.Errorf("%s: %s has no label %q", where, m[1], lm[1])
			}
		}
	}
	for _, g := range groupingRef.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !allowed[l] {
				t.Errorf("%s: groups by %q, which none of its metrics has", where, l)
			}
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	var dash map[string]any
	if err := json.Unmarshal(readFile(t, "deploy/grafana/taskgraph-dashboard.json"), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v, want >= 36", dash["schemaVersion"])
	}
	if uid, _ := dash["uid"].(string); uid == "" {
		t.Error("the dashboard needs a fixed uid so links to it survive re-imports")
	}
	used := map[string]bool{}

	// Template variables: the data source variable, and label_values queries on known metrics.
	dsVar := false
	templating, _ := dash["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		tv, _ := v.(map[string]any)
		if tv["name"] == "DS_PROMETHEUS" && tv["type"] == "datasource" && tv["query"] == "prometheus" {
			dsVar = true
		}
		if tv["type"] == "query" {
			q := fmt.Sprint(tv["definition"])
			if qm, ok := tv["query"].(map[string]any); ok {
				q += " " + fmt.Sprint(qm["query"])
			}
			for _, lv := range labelValues.FindAllStringSubmatch(q, -1) {
				labels, ok := dashboardMetrics[lv[1]]
				if !ok {
					t.Errorf("variable %v: unknown metric %s", tv["name"], lv[1])
				} else if !slices.Contains(labels, lv[2]) && !slices.Contains(targetLabels, lv[2]) {
					t.Errorf("variable %v: %s has no label %s", tv["name"], lv[1], lv[2])
				}
			}
		}
	}
	if !dsVar {
		t.Error("want a datasource template variable DS_PROMETHEUS of type prometheus")
	}

	// Panels, including those nested in rows.
	var panels []map[string]any
	var collect func(list []any)
	collect = func(list []any) {
		for _, p := range list {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			panels = append(panels, pm)
			if sub, ok := pm["panels"].([]any); ok {
				collect(sub)
			}
		}
	}
	top, _ := dash["panels"].([]any)
	collect(top)
	ids := map[float64]bool{}
	var exprs []string
	for _, p := range panels {
		title := fmt.Sprint(p["title"])
		id, _ := p["id"].(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: id %v missing or duplicated", title, p["id"])
		}
		ids[id] = true
		gp, _ := p["gridPos"].(map[string]any)
		x, _ := gp["x"].(float64)
		w, _ := gp["w"].(float64)
		h, _ := gp["h"].(float64)
		if w <= 0 || h <= 0 || x+w > 24 {
			t.Errorf("panel %q: bad gridPos %v", title, gp)
		}
		if p["type"] == "row" {
			continue
		}
		if !isDSVar(p["datasource"]) {
			t.Errorf("panel %q: datasource %v, want uid ${DS_PROMETHEUS}", title, p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no queries", title)
		}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if ds, ok := tm["datasource"]; ok && !isDSVar(ds) {
				t.Errorf("panel %q: query datasource %v, want uid ${DS_PROMETHEUS}", title, ds)
			}
			expr, _ := tm["expr"].(string)
			if strings.TrimSpace(expr) == "" {
				t.Errorf("panel %q: empty query", title)
				continue
			}
			exprs = append(exprs, expr)
			checkPromQL(t, fmt.Sprintf("panel %q", title), expr, used)
		}
	}
	for _, name := range sortedKeys(dashboardMetrics) {
		if !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
	// p50, p95 and p99 of GraphQL operations, by operation.
	for _, q := range []string{"0.5", "0.95", "0.99"} {
		found := slices.ContainsFunc(exprs, func(e string) bool {
			return regexp.MustCompile(`histogram_quantile\(`+regexp.QuoteMeta(q)+`0*,`).MatchString(e) &&
				strings.Contains(e, "taskgraph_graphql_operation_duration_seconds_bucket") &&
				regexp.MustCompile(`by \(le, operation\)`).MatchString(e)
		})
		if !found {
			t.Errorf("no panel shows the p%s GraphQL latency by operation", strings.TrimPrefix(q, "0."))
		}
	}
}

func isDSVar(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["uid"] == "${DS_PROMETHEUS}"
}

// ---------------------------------------------------------------------------------------------------
// The binary's subcommands
// ---------------------------------------------------------------------------------------------------

// binDir holds the binary TestImageSubcommands builds; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var buildBinary = sync.OnceValues(func() (string, error) {
	rootDir, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "taskgraph-deploy-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "taskgraph")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/taskgraph")
	cmd.Dir = rootDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/taskgraph: %v\n%s", err, out)
	}
	return bin, nil
})

// usedSubcommands lists the subcommands the Dockerfile, compose and the manifests run.
func usedSubcommands(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(cmd, where string) { used[cmd] = append(used[cmd], where) }
	final := parseDockerfile(t)
	last := final[len(final)-1]
	for _, in := range last.find("CMD") {
		if args, ok := execForm(in.args); ok && len(args) > 0 {
			add(args[0], "Dockerfile CMD")
		}
	}
	add("healthcheck", "Dockerfile HEALTHCHECK")
	c := loadCompose(t)
	for name, s := range c.Services {
		if !s.usesTaskgraphImage() {
			continue
		}
		if args := stringList(s.Command); len(args) > 0 {
			add(args[0], "compose "+name)
		}
		if s.Healthcheck != nil && !s.Healthcheck.Disable {
			if test := stringList(s.Healthcheck.Test); len(test) > 2 && test[1] == "/taskgraph" {
				add(test[2], "compose "+name+" healthcheck")
			}
		}
	}
	for name, pod := range loadManifests(t).pods() {
		for _, ctr := range pod.Spec.Containers {
			if len(ctr.Args) > 0 {
				add(ctr.Args[0], name)
			}
		}
	}
	for _, where := range used {
		sort.Strings(where)
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
	default:
		t.Fatalf("%s %v: %v", bin, args, err)
		return -1, ""
	}
}

func isUnknownCommand(code int, stderr string) bool {
	return code == 2 && strings.Contains(stderr, "unknown command")
}

// A closed port: nothing is listening there once the listener is closed.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

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

	t.Run("help lists the same settings", func(t *testing.T) {
		var out bytes.Buffer
		cmd := exec.Command(bin, "--help")
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("taskgraph --help: %v", err)
		}
		got, want := parseSettingsTable(out.String()), knownSettings(t)
		if !maps.Equal(got, want) {
			t.Errorf("`taskgraph --help` settings %v differ from config.Usage %v", sortedKeys(got), sortedKeys(want))
		}
	})

	noDB := "postgres://taskgraph@" + closedAddr(t) + "/taskgraph?sslmode=disable&connect_timeout=2"
	for _, sub := range sortedKeys(used) {
		t.Run(sub, func(t *testing.T) {
			if !slices.Contains(knownSubcommands, sub) {
				t.Fatalf("%v run unknown subcommand %q", used[sub], sub)
			}
			var code int
			var stderr string
			if sub == "healthcheck" {
				code, stderr = runBinary(t, bin, map[string]string{"APP_ENV": "development", "HTTP_ADDR": closedAddr(t)}, sub)
			} else {
				code, stderr = runBinary(t, bin, map[string]string{"APP_ENV": "development", "DATABASE_URL": noDB, "HTTP_ADDR": "127.0.0.1:0"}, sub)
			}
			if isUnknownCommand(code, stderr) {
				if why, pending := pendingSubcommands[sub]; pending {
					t.Skipf("PENDING: `taskgraph %s` is not implemented yet; used by %v: %s", sub, used[sub], why)
				}
				t.Fatalf("`taskgraph %s`, used by %v, is not a command of the binary:\n%s", sub, used[sub], stderr)
			}
			if _, pending := pendingSubcommands[sub]; pending {
				t.Logf("`taskgraph %s` exists now: remove it from pendingSubcommands in deploy/deploy_test.go", sub)
			}
			if sub == "healthcheck" {
				checkHealthcheck(t, bin, code, stderr)
			}
		})
	}
}

// checkHealthcheck: `taskgraph healthcheck` exits 1 when nothing answers on HTTP_ADDR's port and 0
// when /healthz answers 200 (with HTTP_ADDR given as host:port and as :port).
func checkHealthcheck(t *testing.T, bin string, codeWhenDown int, stderr string) {
	t.Helper()
	if codeWhenDown != 1 {
		t.Errorf("healthcheck with nothing listening: exit %d, want 1 (Docker reserves 2)\n%s", codeWhenDown, stderr)
	}
	var hits int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		hits++
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, addr := range []string{"127.0.0.1:" + port, ":" + port} {
		if code, stderr := runBinary(t, bin, map[string]string{"APP_ENV": "development", "HTTP_ADDR": addr}, "healthcheck"); code != 0 {
			t.Errorf("healthcheck with HTTP_ADDR=%s and /healthz answering 200: exit %d, want 0\n%s", addr, code, stderr)
		}
	}
	// The worker's variant reads WORKER_HTTP_ADDR, and only that.
	if code, stderr := runBinary(t, bin, map[string]string{"APP_ENV": "development", "WORKER_HTTP_ADDR": ":" + port,
		"HTTP_ADDR": closedAddr(t)}, "healthcheck", "worker"); code != 0 {
		t.Errorf("healthcheck worker with WORKER_HTTP_ADDR=:%s answering 200: exit %d, want 0\n%s", port, code, stderr)
	}
	if code, _ := runBinary(t, bin, map[string]string{"APP_ENV": "development", "WORKER_HTTP_ADDR": closedAddr(t),
		"HTTP_ADDR": ":" + port}, "healthcheck", "worker"); code != 1 {
		t.Errorf("healthcheck worker with nothing on WORKER_HTTP_ADDR: exit %d, want 1", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits == 0 {
		t.Error("healthcheck never requested /healthz")
	}
}

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
