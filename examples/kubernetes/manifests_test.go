// Package kubernetes holds the Kubernetes manifests of README.md and the
// tests that keep them true. Every YAML document is decoded strictly into
// its Kubernetes type (an unknown or misspelled field is an error), then
// the objects are checked against each other (Service ports, PDB selector,
// config mount) and against ratelimitd itself: the probe paths are served
// by server.HTTPHandler with the meaning the probes need, the ConfigMap's
// rules load, and the built binary accepts the Deployment's arguments and
// answers the probes when started with them against a real Redis.
// dockerfile_test.go checks the Dockerfile at the repository root.
package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/ratelimitd/ratelimitd/backends/memory"
	"github.com/ratelimitd/ratelimitd/config"
	"github.com/ratelimitd/ratelimitd/internal/redistest"
	"github.com/ratelimitd/ratelimitd/server"
)

const (
	// namespace is where every object lives. examples/istio dials
	// ratelimitd.ratelimit.svc.cluster.local:8081.
	namespace = "ratelimit"
	// appName is the Deployment, the Service and the container of
	// ratelimitd.
	appName = "ratelimitd"
	// The ports of ratelimitd's -grpc-addr and -http-addr defaults, which
	// the Service exposes unchanged (TestBinaryFlags checks them against
	// the binary's defaults).
	grpcPort = 8081
	httpPort = 8080
	// The probe paths, served by server.HTTPHandler.
	readinessPath = "/readyz"
	livenessPath  = "/healthz"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ratelimitd-kubernetes")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binDir is where binary builds ratelimitd; set once by TestMain.
var binDir string

// buildBinary builds ./cmd/ratelimitd once for every test that needs it.
var buildBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "ratelimitd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ratelimitd/ratelimitd/cmd/ratelimitd")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/ratelimitd: %v\n%s", err, out)
	}
	return bin, nil
})

func binary(t *testing.T) string {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// manifests are the decoded objects of every YAML file but
// kustomization.yaml.
type manifests struct {
	files       []string // base names, sorted
	namespaces  []*corev1.Namespace
	configMaps  map[string]*corev1.ConfigMap
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	metas       []metav1.ObjectMeta // of every object, with its kind in Kind
	kinds       []string            // kinds[i] is the kind of metas[i]
}

// decodeStrict decodes one YAML document into a typed object: unknown
// fields, duplicate keys and type mismatches are errors.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 Namespace":
		obj = &corev1.Namespace{}
	case "v1 ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	default:
		return nil, fmt.Errorf("apiVersion %q kind %q: not a type this test knows: add it to decodeStrict", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	return obj, nil
}

// documents splits a YAML stream at its "---" lines, dropping documents
// that hold only comments.
func documents(b []byte) ([][]byte, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if string(j) != "null" {
			docs = append(docs, doc)
		}
	}
}

func load(t *testing.T) *manifests {
	t.Helper()
	paths, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{
		configMaps:  map[string]*corev1.ConfigMap{},
		deployments: map[string]*appsv1.Deployment{},
		services:    map[string]*corev1.Service{},
	}
	for _, p := range paths {
		if p == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, p)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := documents(b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if len(docs) == 0 {
			t.Errorf("%s: no object", p)
		}
		for i, doc := range docs {
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", p, i+1, err)
				continue
			}
			var meta metav1.ObjectMeta
			var kind string
			switch o := obj.(type) {
			case *corev1.Namespace:
				m.namespaces = append(m.namespaces, o)
				meta, kind = o.ObjectMeta, "Namespace"
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
				meta, kind = o.ObjectMeta, "ConfigMap"
			case *corev1.Service:
				m.services[o.Name] = o
				meta, kind = o.ObjectMeta, "Service"
			case *appsv1.Deployment:
				m.deployments[o.Name] = o
				meta, kind = o.ObjectMeta, "Deployment"
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
				meta, kind = o.ObjectMeta, "PodDisruptionBudget"
			}
			m.metas = append(m.metas, meta)
			m.kinds = append(m.kinds, kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// ratelimitd returns the ratelimitd Deployment and its container.
func (m *manifests) ratelimitd(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	d := m.deployments[appName]
	if d == nil {
		t.Fatalf("no Deployment %q", appName)
	}
	for i := range d.Spec.Template.Spec.Containers {
		if c := &d.Spec.Template.Spec.Containers[i]; c.Name == appName {
			return d, c
		}
	}
	t.Fatalf("Deployment %s has no container %q", appName, appName)
	return nil, nil
}

// flags parses a container's args as ratelimitd's flag package would:
// "-name value", "-name=value", one or two dashes. Every flag the
// manifests pass takes a value (none is a boolean).
func flags(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "-")
		if !ok {
			t.Fatalf("args: %q is not a flag: ratelimitd takes no positional argument", a)
		}
		name = strings.TrimPrefix(name, "-")
		if n, v, ok := strings.Cut(name, "="); ok {
			out[n] = v
			continue
		}
		if i+1 == len(args) {
			t.Fatalf("args: -%s has no value", name)
		}
		i++
		out[name] = args[i]
	}
	return out
}

// addrPort returns the host and port of a listen address.
func addrPort(t *testing.T, flag, addr string) (string, int32) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("-%s %q: %v", flag, addr, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("-%s %q: port: %v", flag, addr, err)
	}
	return host, int32(n)
}

// containerPort resolves a probe's or a Service's target port (a number or
// a port name) to one of the container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func TestObjectsInNamespace(t *testing.T) {
	m := load(t)
	if len(m.namespaces) != 1 || m.namespaces[0].Name != namespace {
		t.Errorf("want one Namespace %q, got %d", namespace, len(m.namespaces))
	}
	for i, meta := range m.metas {
		if m.kinds[i] == "Namespace" {
			continue
		}
		if meta.Namespace != namespace {
			t.Errorf("%s %s: namespace %q, want %q (kubectl apply -f applies the files without the kustomization)", m.kinds[i], meta.Name, meta.Namespace, namespace)
		}
	}
}

// kustomization is the part of a Kustomization the manifests use: any
// other field is an error, like a misspelling.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
}

func TestKustomizationListsEveryFile(t *testing.T) {
	m := load(t)
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	if k.Namespace != namespace {
		t.Errorf("kustomization.yaml: namespace %q, want %q", k.Namespace, namespace)
	}
	if k.Resources[0] != "namespace.yaml" {
		t.Errorf("kustomization.yaml: resources start with %q, want namespace.yaml", k.Resources[0])
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, m.files) {
		t.Errorf("kustomization.yaml resources %q, want every manifest %q", got, m.files)
	}
}

func TestDeploymentArgsAndPorts(t *testing.T) {
	m := load(t)
	d, c := m.ratelimitd(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("selector %v does not select the pod template's labels %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	f := flags(t, c.Args)
	for name, want := range map[string]int32{"grpc-addr": grpcPort, "http-addr": httpPort} {
		addr, ok := f[name]
		if !ok {
			t.Errorf("args: no -%s: the default listens on loopback, out of reach of the Service", name)
			continue
		}
		host, port := addrPort(t, name, addr)
		if host != "0.0.0.0" && host != "" {
			t.Errorf("-%s %s: listen on 0.0.0.0 in a container, not %q", name, addr, host)
		}
		if port != want {
			t.Errorf("-%s %s: port %d, want %d", name, addr, port, want)
		}
		portName := strings.TrimSuffix(name, "-addr")
		cp, ok := containerPort(c, intstr.FromString(portName))
		if !ok || cp.ContainerPort != port || cp.Protocol != corev1.ProtocolTCP {
			t.Errorf("container port %q is %+v, want TCP %d (-%s)", portName, cp, port, name)
		}
	}
	if f["backend"] != "redis" {
		t.Errorf("-backend %q, want redis: two replicas on the memory backend would each count on their own", f["backend"])
	}
	if f["log-format"] != "json" {
		t.Errorf("-log-format %q, want json", f["log-format"])
	}

	// -redis-addr names the Redis Service by its port.
	host, port := addrPort(t, "redis-addr", f["redis-addr"])
	svc := m.services[host]
	if svc == nil {
		t.Fatalf("-redis-addr %s: no Service %q", f["redis-addr"], host)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port }) {
		t.Errorf("-redis-addr %s: Service %s has no port %d", f["redis-addr"], host, port)
	}
}

func TestProbes(t *testing.T) {
	m := load(t)
	_, c := m.ratelimitd(t)
	_, httpAddrPort := addrPort(t, "http-addr", flags(t, c.Args)["http-addr"])
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, readinessPath},
		{"livenessProbe", c.LivenessProbe, livenessPath},
		{"startupProbe", c.StartupProbe, livenessPath},
	} {
		if p.probe == nil {
			if p.name != "startupProbe" {
				t.Errorf("no %s", p.name)
			}
			continue
		}
		g := p.probe.HTTPGet
		if g == nil {
			t.Errorf("%s: not an httpGet probe", p.name)
			continue
		}
		if g.Path != p.path {
			t.Errorf("%s: path %q, want %q", p.name, g.Path, p.path)
		}
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: scheme %q: ratelimitd's HTTP listener is plaintext", p.name, g.Scheme)
		}
		cp, ok := containerPort(c, g.Port)
		if !ok {
			t.Errorf("%s: port %s is none of the container's", p.name, g.Port.String())
		} else if cp.ContainerPort != httpPort || cp.ContainerPort != httpAddrPort {
			t.Errorf("%s: port %s is %d, want the HTTP port %d (-http-addr port %d)", p.name, g.Port.String(), cp.ContainerPort, httpPort, httpAddrPort)
		}
	}

	// Prometheus scrapes the HTTP port's /metrics.
	a := m.deployments[appName].Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(httpPort) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus.io annotations %v, want scrape true on port %d path /metrics", a, httpPort)
	}
}

// TestProbePathsServed serves the probe paths with ratelimitd's own HTTP
// handler and checks that they mean what the probes need: readiness fails
// until a config is loaded and again from shutdown on, liveness never
// does (a failing liveness probe restarts the pod).
func TestProbePathsServed(t *testing.T) {
	m := load(t)
	cfg := loadConfigMap(t, m.configMaps["ratelimitd-config"])
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	srv, err := server.New(server.Options{Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.HTTPHandler())
	t.Cleanup(hs.Close)
	get := func(path string) int {
		t.Helper()
		resp, err := hs.Client().Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	check := func(stage string, want map[string]int) {
		t.Helper()
		for path, code := range want {
			if got := get(path); got != code {
				t.Errorf("%s: GET %s = %d, want %d", stage, path, got, code)
			}
		}
	}
	check("starting", map[string]int{readinessPath: 503, livenessPath: 200})
	srv.SetConfig(cfg)
	srv.SetServing(true)
	check("serving", map[string]int{readinessPath: 200, livenessPath: 200, "/metrics": 200})
	srv.SetServing(false)
	check("draining", map[string]int{readinessPath: 503, livenessPath: 200})
}

// loadConfigMap writes a ConfigMap's data as the kubelet mounts it and
// loads it as ratelimitd does.
func loadConfigMap(t *testing.T, cm *corev1.ConfigMap) *config.Config {
	t.Helper()
	if cm == nil {
		t.Fatal("no ConfigMap ratelimitd-config")
	}
	dir := t.TempDir()
	for name, data := range cm.Data {
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			t.Errorf("ConfigMap %s: key %q: ratelimitd loads only *.yaml and *.yml files of its directory", cm.Name, name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(dir, config.Options{})
	if err != nil {
		t.Fatalf("ConfigMap %s does not load: %v", cm.Name, err)
	}
	return cfg
}

func TestConfigMapMountedAsDirectory(t *testing.T) {
	m := load(t)
	cm := m.configMaps["ratelimitd-config"]
	cfg := loadConfigMap(t, cm)
	if len(cfg.Rules()) == 0 {
		t.Error("ConfigMap: no rule")
	}
	quickstart, err := os.ReadFile("../quickstart/config/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["config.yaml"] != string(quickstart) {
		t.Error("ConfigMap's config.yaml differs from examples/quickstart/config/config.yaml: copy it again (README.md says it is the quickstart's)")
	}

	d, c := m.ratelimitd(t)
	dir := flags(t, c.Args)["config"]
	var mounted bool
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		mounted = true
		if vm.SubPath != "" || vm.SubPathExpr != "" {
			t.Errorf("volume %s is mounted with subPath: a subPath mount never sees ConfigMap updates", vm.Name)
		}
		if !vm.ReadOnly {
			t.Errorf("volume %s: mount it readOnly", vm.Name)
		}
		i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 || d.Spec.Template.Spec.Volumes[i].ConfigMap == nil || d.Spec.Template.Spec.Volumes[i].ConfigMap.Name != cm.Name {
			t.Errorf("volume %s mounted on -config %s is not the ConfigMap %s", vm.Name, dir, cm.Name)
		}
	}
	if !mounted {
		t.Errorf("-config %q: no volume is mounted there", dir)
	}
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, vm := range c.VolumeMounts {
				if vm.SubPath != "" || vm.SubPathExpr != "" {
					t.Errorf("Deployment %s, container %s: volume %s mounted with subPath", d.Name, c.Name, vm.Name)
				}
			}
		}
	}
}

// TestPodsLockedDown checks every Deployment's pods against the restricted
// Pod Security Standard the namespace enforces, and a bit more.
func TestPodsLockedDown(t *testing.T) {
	m := load(t)
	for _, d := range m.deployments {
		spec := d.Spec.Template.Spec
		where := "Deployment " + d.Name
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", where)
		}
		if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
			t.Errorf("%s: pod runs as user 0", where)
		}
		podSeccomp := psc != nil && psc.SeccompProfile != nil && psc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false: nothing here calls the API server", where)
		}
		if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks is not false: Service variables such as GRPC_PORT=tcp://... would reach ratelimitd's envoyproxy/ratelimit settings", where)
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			where := where + ", container " + c.Name
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem is not true", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				t.Errorf("%s: runs as user 0", where)
			}
			if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
				t.Errorf("%s: runAsNonRoot false", where)
			}
			if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
				t.Errorf("%s: capabilities %+v, want drop ALL and add none", where, sc.Capabilities)
			}
			if !podSeccomp && (sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
				t.Errorf("%s: no RuntimeDefault seccomp profile (pod or container)", where)
			}
			r := c.Resources
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := r.Requests[name]; !ok || q.IsZero() {
					t.Errorf("%s: no %s request", where, name)
				}
			}
			if q, ok := r.Limits[corev1.ResourceMemory]; !ok || q.IsZero() {
				t.Errorf("%s: no memory limit", where)
			} else if q.Cmp(r.Requests[corev1.ResourceMemory]) < 0 {
				t.Errorf("%s: memory limit below its request", where)
			}
		}
	}
}

// TestGOMEMLIMIT checks that the Go runtime's soft limit follows the
// container's memory limit, and that Go accepts the value the kubelet
// gives it (TestBinaryServesProbes starts the binary with it).
func TestGOMEMLIMIT(t *testing.T) {
	m := load(t)
	_, c := m.ratelimitd(t)
	env := podEnv(t, c)
	limit := c.Resources.Limits[corev1.ResourceMemory]
	if got, want := env["GOMEMLIMIT"], strconv.FormatInt(limit.Value(), 10); got != want {
		t.Errorf("GOMEMLIMIT = %q, want the memory limit %s in bytes (%s)", got, limit.String(), want)
	}
}

// podEnv returns the container's environment as the kubelet would set it,
// for the variables the manifests use: plain values, and the container's
// own resource limits through the downward API.
func podEnv(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ResourceFieldRef != nil:
			ref := e.ValueFrom.ResourceFieldRef
			if ref.ContainerName != "" && ref.ContainerName != c.Name {
				t.Errorf("env %s: resourceFieldRef of container %q, not this one (%s)", e.Name, ref.ContainerName, c.Name)
			}
			if !ref.Divisor.IsZero() && ref.Divisor.Value() != 1 {
				t.Errorf("env %s: divisor %s: Go reads a bare number as bytes", e.Name, ref.Divisor.String())
			}
			name, ok := strings.CutPrefix(ref.Resource, "limits.")
			q, set := c.Resources.Limits[corev1.ResourceName(name)]
			if !ok || !set {
				t.Errorf("env %s: %s is not a limit the container sets", e.Name, ref.Resource)
				continue
			}
			env[e.Name] = strconv.FormatInt(q.Value(), 10)
		default:
			t.Errorf("env %s: a valueFrom this test does not know", e.Name)
		}
	}
	return env
}

// TestShutdown checks that the pod gets time to drain: the preStop sleep
// and ratelimitd's -drain-timeout both fit in the termination grace period.
func TestShutdown(t *testing.T) {
	m := load(t)
	d, c := m.ratelimitd(t)
	drain, err := time.ParseDuration(flags(t, c.Args)["drain-timeout"])
	if err != nil {
		t.Fatalf("-drain-timeout: %v (give it explicitly, so the grace period is checked against it)", err)
	}
	var sleep time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if s := c.Lifecycle.PreStop.Sleep; s != nil {
			sleep = time.Duration(s.Seconds) * time.Second
		} else {
			t.Error("preStop: only a sleep action works: the image has no shell")
		}
	}
	grace := 30 * time.Second // Kubernetes' default
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= sleep+drain {
		t.Errorf("terminationGracePeriodSeconds %s: want more than the preStop sleep %s plus -drain-timeout %s", grace, sleep, drain)
	}
}

func TestServices(t *testing.T) {
	m := load(t)
	for _, svc := range m.services {
		var d *appsv1.Deployment
		for _, dep := range m.deployments {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(dep.Spec.Template.Labels)) {
				if d != nil {
					t.Errorf("Service %s selects the pods of Deployments %s and %s", svc.Name, d.Name, dep.Name)
				}
				d = dep
			}
		}
		if len(svc.Spec.Selector) == 0 || d == nil {
			t.Errorf("Service %s selects no Deployment's pods", svc.Name)
			continue
		}
		for _, p := range svc.Spec.Ports {
			var found bool
			for _, c := range d.Spec.Template.Spec.Containers {
				if cp, ok := containerPort(&c, p.TargetPort); ok {
					found = true
					if cp.Name != p.Name || cp.Protocol != p.Protocol {
						t.Errorf("Service %s port %s: container port %s/%s, want the same name and protocol", svc.Name, p.Name, cp.Name, cp.Protocol)
					}
				}
			}
			if !found || p.TargetPort.Type != intstr.String {
				t.Errorf("Service %s port %s: targetPort %s is not a container port name of Deployment %s", svc.Name, p.Name, p.TargetPort.String(), d.Name)
			}
		}
	}

	svc := m.services[appName]
	if svc == nil {
		t.Fatalf("no Service %s", appName)
	}
	want := map[string]int32{"grpc": grpcPort, "http": httpPort}
	got := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.Port
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Service %s ports %v, want %v (examples/istio and examples/envoy dial %s.%s.svc.cluster.local:%d)", appName, got, want, appName, namespace, grpcPort)
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	m := load(t)
	d, _ := m.ratelimitd(t)
	if len(m.pdbs) != 1 {
		t.Fatalf("%d PodDisruptionBudgets, want 1", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget %s selector %v does not select ratelimitd's pods %v (%v)", pdb.Name, pdb.Spec.Selector, d.Spec.Template.Labels, err)
	}
	if v := pdb.Spec.MinAvailable; v == nil || v.Type != intstr.Int || v.IntVal != 1 {
		t.Errorf("minAvailable %v, want 1", v)
	} else if v.IntVal >= *d.Spec.Replicas {
		t.Errorf("minAvailable %d with %d replicas: no eviction would ever be allowed", v.IntVal, *d.Spec.Replicas)
	}
}

func TestTopologySpread(t *testing.T) {
	m := load(t)
	d, _ := m.ratelimitd(t)
	tsc := d.Spec.Template.Spec.TopologySpreadConstraints
	if len(tsc) == 0 {
		t.Fatal("no topologySpreadConstraints")
	}
	for _, c := range tsc {
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("topologySpreadConstraint on %s: selector %v does not select the pods (%v)", c.TopologyKey, c.LabelSelector, err)
		}
	}
}

// TestDecodeIsStrict shows that a misspelled field fails decoding, so a
// pass of the tests above means every field was understood.
func TestDecodeIsStrict(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1, targetPrt: x}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: x, readinesProbe: {}}]}}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

// helpFlags returns the flags `ratelimitd -h` lists, with their defaults.
func helpFlags(t *testing.T, bin string) map[string]string {
	t.Helper()
	cmd := exec.Command(bin, "-h")
	cmd.Env = []string{} // no RATELIMITD_* or envoyproxy/ratelimit variable of ours
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ratelimitd -h: %v\n%s", err, out)
	}
	// The flag package's usage: "  -name type\n    \tusage (default "x")".
	line := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)\b.*\n((?:    .*\n?)*)`)
	def := regexp.MustCompile(`\(default "?([^")]*)"?\)`)
	got := map[string]string{}
	for _, sm := range line.FindAllStringSubmatch(string(out), -1) {
		got[sm[1]] = ""
		if d := def.FindStringSubmatch(sm[2]); d != nil {
			got[sm[1]] = d[1]
		}
	}
	if len(got) < 10 {
		t.Fatalf("ratelimitd -h lists %d flags; the pattern no longer matches its output:\n%s", len(got), out)
	}
	return got
}

// TestBinaryFlags checks the Deployment's args against the flags of the
// built binary, and the Service's ports against the defaults.
func TestBinaryFlags(t *testing.T) {
	m := load(t)
	_, c := m.ratelimitd(t)
	help := helpFlags(t, binary(t))
	for name := range flags(t, c.Args) {
		if _, ok := help[name]; !ok {
			t.Errorf("args: -%s is not a flag of ratelimitd", name)
		}
	}
	for name, want := range map[string]int32{"grpc-addr": grpcPort, "http-addr": httpPort} {
		if _, port := addrPort(t, name, help[name]); port != want {
			t.Errorf("ratelimitd's default -%s is %q: the manifests expose %d", name, help[name], want)
		}
	}
}

// TestBinaryServesProbes starts the built binary with the Deployment's
// args and environment, against a real Redis, changing only what a test
// must: the listen addresses (free loopback ports), the Redis address and
// the config directory (the ConfigMap's data). Its probes answer 200, and
// SIGTERM ends it cleanly within -drain-timeout.
func TestBinaryServesProbes(t *testing.T) {
	m := load(t)
	_, c := m.ratelimitd(t)
	bin := binary(t)
	rdb := redistest.Standalone(t)

	dir := t.TempDir()
	for name, data := range m.configMaps["ratelimitd-config"].Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	replace := map[string]string{
		"grpc-addr":  "127.0.0.1:0",
		"http-addr":  "127.0.0.1:0",
		"redis-addr": rdb.Addr,
		"config":     dir,
	}
	args := slices.Clone(c.Args)
	for i := 0; i+1 < len(args); i++ {
		if v, ok := replace[strings.TrimLeft(args[i], "-")]; ok {
			args[i+1] = v
			i++
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	for k, v := range podEnv(t, c) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	serving := make(chan string, 1)
	done := make(chan struct{}) // closed once cmd.Wait returned, waitErr set
	var waitErr error
	go func() {
		// -log-format json: one object a line; "serving" has the bound
		// HTTP address.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "serving" {
				addr, _ := line["http_addr"].(string)
				serving <- addr
			}
		}
		waitErr = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})

	var httpAddr string
	select {
	case httpAddr = <-serving:
	case <-done:
		t.Fatalf("ratelimitd exited before serving: %v\n%s", waitErr, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("ratelimitd did not log serving within 30s\n%s", logs.String())
	}

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{livenessPath, readinessPath, "/metrics"} {
		// Readiness waits for Redis's first PING: poll briefly.
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := get(path)
			if code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("GET %s = %d %q, want 200", path, code, body)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	drain, err := time.ParseDuration(flags(t, c.Args)["drain-timeout"])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain+5*time.Second)
	defer cancel()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		if waitErr != nil {
			t.Errorf("ratelimitd after SIGTERM: %v, want exit 0\n%s", waitErr, logs.String())
		}
	case <-ctx.Done():
		t.Errorf("ratelimitd still running %s after SIGTERM\n%s", drain+5*time.Second, logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use: the process's log,
// written by the goroutine reading it and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
