package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	psapi "k8s.io/pod-security-admission/api"
	pspolicy "k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/taskgraph/taskgraph/internal/config"
	"github.com/taskgraph/taskgraph/internal/server"
)

const (
	k8sNamespace  = "taskgraph"
	apiName       = "taskgraph-api"
	workerName    = "taskgraph-worker"
	configMapName = "taskgraph-config"
	secretName    = "taskgraph-secrets"
)

// manifests are the objects of deploy/k8s, decoded strictly into the Kubernetes API types: an
// unknown or misplaced field, a wrong type or an unparsable quantity fails the decoding, as
// `kubectl apply` would refuse it.
type manifests struct {
	files       map[string]bool // the files that hold objects
	namespace   *corev1.Namespace
	configMap   *corev1.ConfigMap
	secret      *corev1.Secret
	deployments map[string]*appsv1.Deployment
	jobs        map[string]*batchv1.Job
	services    map[string]*corev1.Service
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	ingresses   []*networkingv1.Ingress
}

// loadManifests decodes deploy/k8s once per test binary; every test reads the same objects.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	m, err := manifestsOnce()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var manifestsOnce = sync.OnceValues(func() (*manifests, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		autoscalingv2.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	m := &manifests{files: map[string]bool{}, deployments: map[string]*appsv1.Deployment{},
		jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{}}
	paths, _ := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	for _, path := range paths {
		file := filepath.Base(path)
		if file == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		docs := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			m.files[file] = true
			if ns := obj.(interface{ GetNamespace() string }).GetNamespace(); gvk.Kind != "Namespace" && ns != k8sNamespace {
				return nil, fmt.Errorf("%s: %s is in namespace %q, want %q", file, gvk.Kind, ns, k8sNamespace)
			}
			switch o := obj.(type) {
			case *corev1.Namespace:
				m.namespace = o
			case *corev1.ConfigMap:
				m.configMap = o
			case *corev1.Secret:
				m.secret = o
			case *corev1.Service:
				m.services[o.Name] = o
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
			case *batchv1.Job:
				m.jobs[o.Name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *networkingv1.Ingress:
				m.ingresses = append(m.ingresses, o)
			default:
				return nil, fmt.Errorf("%s: %s is not checked by deploy/k8s_test.go", file, gvk)
			}
		}
	}
	if m.namespace == nil || m.configMap == nil || m.secret == nil || m.deployments[apiName] == nil ||
		m.deployments[workerName] == nil || m.services[apiName] == nil || len(m.jobs) == 0 {
		return nil, fmt.Errorf("deploy/k8s must hold the namespace, ConfigMap %s, Secret %s, Deployments %s and %s, Service %s and the migrate Job",
			configMapName, secretName, apiName, workerName, apiName)
	}
	return m, nil
})

// pods are the pod templates of the Deployments and Jobs, by "Kind/name".
func (m *manifests) pods() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for name, d := range m.deployments {
		out["Deployment/"+name] = &d.Spec.Template
	}
	for name, j := range m.jobs {
		out["Job/"+name] = &j.Spec.Template
	}
	return out
}

// settingsEnv is the environment the ConfigMap and the Secret give every container, with a usable
// JWT_SECRET in place of the placeholder when withTestSecret.
func (m *manifests) settingsEnv(withTestSecret bool) map[string]string {
	env := map[string]string{}
	for k, v := range m.configMap.Data {
		env[k] = v
	}
	for k, v := range m.secret.StringData {
		env[k] = v
	}
	for k, v := range m.secret.Data {
		env[k] = string(v)
	}
	if withTestSecret {
		env["JWT_SECRET"] = testJWTSecret
	}
	return env
}

func (m *manifests) settings(t *testing.T) config.Config {
	t.Helper()
	return mustLoadSettings(t, "ConfigMap "+configMapName+" and Secret "+secretName, m.settingsEnv(true))
}

// TestKustomizationBuilds: kustomization.yaml lists every manifest, and kubectl builds it.
func TestKustomizationBuilds(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	var k struct {
		Namespace string   `json:"namespace"`
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/k8s/kustomization.yaml"), &k); err != nil {
		t.Fatal(err)
	}
	if k.Namespace != k8sNamespace {
		t.Errorf("kustomization namespace %q, want %q", k.Namespace, k8sNamespace)
	}
	for f := range m.files {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("%s is not in kustomization.yaml's resources", f)
		}
	}
	kubectl := tool(t, "kubectl", "kubectl (Debian's kubernetes-client 1.20 is too old for this kustomization)")
	out := run(t, kubectl, "kustomize", repoPath(t, "deploy/k8s"))
	if !bytes.Contains(out, []byte("name: "+apiName)) {
		t.Errorf("kubectl kustomize output lacks %s", apiName)
	}
}

// TestKubernetesSettings: the ConfigMap and Secret hold only settings the server reads, and they load
// as the server loads them, except that the placeholder JWT_SECRET is refused in production.
func TestKubernetesSettings(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	cfg := m.settings(t)
	if !cfg.Production() || cfg.RedisURL == "" {
		t.Error("APP_ENV must be production, and REDIS_URL set: several API pods share the cache and rate limits")
	}
	for _, k := range []string{"JWT_SECRET", "DATABASE_URL", "REDIS_URL"} {
		if _, ok := m.configMap.Data[k]; ok {
			t.Errorf("ConfigMap %s holds the secret setting %s: keep it in the Secret", configMapName, k)
		}
	}
	if _, err := config.Load(func(k string) string { return m.settingsEnv(false)[k] }); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("the placeholder JWT_SECRET of secret.yaml must be refused in production, got %v", err)
	}
	for name, pod := range m.pods() {
		for _, c := range pod.Spec.Containers {
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			loadSettings(t, name+" container "+c.Name+" env", env)
			var fromCM, fromSecret bool
			for _, ef := range c.EnvFrom {
				fromCM = fromCM || (ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == configMapName)
				fromSecret = fromSecret || (ef.SecretRef != nil && ef.SecretRef.Name == secretName)
			}
			if !fromCM || !fromSecret {
				t.Errorf("%s container %s: want envFrom ConfigMap %s and Secret %s", name, c.Name, configMapName, secretName)
			}
		}
	}
}

// TestPodsMeetTheNamespacePolicy runs the Pod Security admission checks of the level the namespace
// enforces (restricted) on every pod template, as the API server will when the pods are created.
func TestPodsMeetTheNamespacePolicy(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	policy, errs := psapi.PolicyToEvaluate(m.namespace.Labels, psapi.Policy{})
	if len(errs) > 0 {
		t.Fatalf("namespace pod-security labels: %v", errs.ToAggregate())
	}
	if policy.Enforce.Level != psapi.LevelRestricted {
		t.Errorf("namespace enforces %q, want restricted", policy.Enforce.Level)
	}
	eval, err := pspolicy.NewEvaluator(pspolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	image := ""
	for name, pod := range m.pods() {
		for _, r := range eval.EvaluatePod(policy.Enforce, &pod.ObjectMeta, &pod.Spec) {
			if !r.Allowed {
				t.Errorf("%s violates the %s pod security level: %s (%s)", name, policy.Enforce, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
		if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false: the server never calls the Kubernetes API", name)
		}
		for _, c := range pod.Spec.Containers {
			// One image everywhere, running one of its subcommands (TestImageSubcommands runs them).
			if image == "" {
				image = c.Image
			}
			if c.Image != image || len(c.Command) > 0 || len(c.Args) == 0 || !slices.Contains(knownSubcommands, c.Args[0]) {
				t.Errorf("%s container %s: want image %s with args starting with a subcommand %v, got %s %v %v",
					name, c.Name, image, knownSubcommands, c.Image, c.Command, c.Args)
			}
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s container %s: readOnlyRootFilesystem must be true (the image writes only to /tmp)", name, c.Name)
			}
			for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okReq := c.Resources.Requests[res]
				lim, okLim := c.Resources.Limits[res]
				if !okReq || !okLim || req.Cmp(lim) > 0 {
					t.Errorf("%s container %s: want %s request and limit, request <= limit (got %v, %v)", name, c.Name, res, req.String(), lim.String())
				}
			}
		}
	}
}

// TestWorkloadsMatchTheServer: the ports, probes, metrics annotations and shutdown timings of the API
// and worker Deployments are those of the server.
func TestWorkloadsMatchTheServer(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	cfg := m.settings(t)
	probes := routePaths(server.Probe)
	metricsPath := routePaths(server.Operator)[0]
	for name, listen := range map[string]string{apiName: cfg.HTTPAddr, workerName: cfg.WorkerHTTPAddr} {
		d := m.deployments[name]
		pod := d.Spec.Template
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("Deployment %s: want one container", name)
		}
		c := pod.Spec.Containers[0]
		want := port(t, listen)
		if len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != want {
			t.Errorf("Deployment %s: container ports %v, want the one the process listens on, %d (%s)", name, c.Ports, want, listen)
		}
		for kind, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
			if p == nil || p.HTTPGet == nil {
				t.Errorf("Deployment %s: want an httpGet %s", name, kind)
				continue
			}
			if !slices.Contains(probes, p.HTTPGet.Path) {
				t.Errorf("Deployment %s: %s path %q is not a probe route of the server %v", name, kind, p.HTTPGet.Path, probes)
			}
			if got, ok := containerPort(c, p.HTTPGet.Port); !ok || got != want {
				t.Errorf("Deployment %s: %s port %s is not the container port %d", name, kind, p.HTTPGet.Port.String(), want)
			}
		}
		// /readyz pings the database for up to 2 s; a shorter probe timeout fails healthy pods.
		if p := c.ReadinessProbe; p != nil && p.TimeoutSeconds < 3 {
			t.Errorf("Deployment %s: readinessProbe timeoutSeconds %d, want at least 3", name, p.TimeoutSeconds)
		}
		if p := c.LivenessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path == "/readyz" {
			t.Errorf("Deployment %s: liveness on /readyz would restart every pod during a database outage", name)
		}
		ann := pod.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != metricsPath || ann["prometheus.io/port"] != strconv.Itoa(want) {
			t.Errorf("Deployment %s: prometheus.io annotations %v, want scrape \"true\", path %s, port %d", name, ann, metricsPath, want)
		}
		// The grace period covers the preStop pause and the drain (SHUTDOWN_TIMEOUT).
		var preStop time.Duration
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
		grace := 30 * time.Second // the Kubernetes default
		if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if grace <= preStop+cfg.ShutdownTimeout {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %s must exceed preStop %s + SHUTDOWN_TIMEOUT %s", name, grace, preStop, cfg.ShutdownTimeout)
		}
		if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "0" {
			t.Errorf("Deployment %s: rollouts must keep maxUnavailable 0 (a new pod is ready before an old one goes)", name)
		}
	}
	for name, j := range m.jobs {
		c := j.Spec.Template.Spec.Containers
		if len(c) != 1 || !slices.Equal(c[0].Args, []string{"migrate"}) {
			t.Errorf("Job %s must run `taskgraph migrate`", name)
		}
	}
	if c := m.deployments[workerName].Spec.Template.Spec.Containers[0]; !slices.Equal(c.Args, []string{"worker"}) {
		t.Errorf("Deployment %s must run `taskgraph worker`", workerName)
	}
	if c := m.deployments[apiName].Spec.Template.Spec.Containers[0]; !slices.Equal(c.Args, []string{"serve"}) {
		t.Errorf("Deployment %s must run `taskgraph serve`", apiName)
	}
	if cfg.JobsInProcess {
		t.Error("JOBS_IN_PROCESS must be false: the worker Deployment runs the jobs")
	}
}

// containerPort resolves a probe's or a Service's port (a number or a port name) on c.
func containerPort(c corev1.Container, p intstr.IntOrString) (int, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// TestObjectsReferToEachOther: the Service and the disruption budget select the API pods (the Service
// only those), and the autoscaler and the Ingress name objects that exist. (A Deployment whose
// selector misses its own pods is refused by the API server at once; a Service that selects the
// worker is not refused, it just sends it traffic.)
func TestObjectsReferToEachOther(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	api := m.deployments[apiName]
	apiPod := api.Spec.Template
	// The Service sends traffic to the API pods and to nothing else.
	for name, svc := range m.services {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		for podName, pod := range m.pods() {
			if sel.Matches(labels.Set(pod.Labels)) != (podName == "Deployment/"+apiName) {
				t.Errorf("Service %s: selector %v must select the %s pods and only those (%s)", name, svc.Spec.Selector, apiName, podName)
			}
		}
		for _, p := range svc.Spec.Ports {
			if _, ok := containerPort(apiPod.Spec.Containers[0], p.TargetPort); !ok {
				t.Errorf("Service %s: targetPort %s is not a port of the API container", name, p.TargetPort.String())
			}
		}
	}
	for _, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != apiName {
			t.Errorf("HPA %s scales %s %s, want Deployment %s", h.Name, ref.Kind, ref.Name, apiName)
		}
		if h.Spec.MinReplicas == nil || api.Spec.Replicas == nil || *h.Spec.MinReplicas != *api.Spec.Replicas {
			t.Errorf("HPA %s minReplicas %v differs from the Deployment's replicas %v", h.Name, h.Spec.MinReplicas, api.Spec.Replicas)
		}
		for _, p := range m.pdbs {
			if p.Spec.MinAvailable != nil && h.Spec.MinReplicas != nil && p.Spec.MinAvailable.IntValue() >= int(*h.Spec.MinReplicas) {
				t.Errorf("PDB %s minAvailable %s leaves no pod of HPA minReplicas %d evictable: node drains would block", p.Name, p.Spec.MinAvailable.String(), *h.Spec.MinReplicas)
			}
		}
	}
	for _, p := range m.pdbs {
		if s := labels.SelectorFromSet(p.Spec.Selector.MatchLabels); !s.Matches(labels.Set(apiPod.Labels)) {
			t.Errorf("PDB %s does not select the API pods", p.Name)
		}
	}
	for _, ing := range m.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				svc, ok := m.services[b.Name]
				if !ok {
					t.Errorf("Ingress %s: %s goes to Service %q, which does not exist", ing.Name, p.Path, b.Name)
					continue
				}
				if !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					t.Errorf("Ingress %s: %s uses a port Service %s does not have", ing.Name, p.Path, b.Name)
				}
			}
		}
	}
}
