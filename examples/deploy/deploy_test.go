package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokproxy/tok/config"
)

// drainTimeout is how long tok drains in-flight requests after SIGTERM
// (proxy.DefaultShutdownTimeout; not imported, to keep this test's
// dependencies to the config package). Every stop timeout must exceed it.
const drainTimeout = 25 * time.Second

// The files under test, relative to this directory.
const (
	kubernetesDir  = "kubernetes"
	dockerfile     = "Dockerfile"
	dockerConfig   = "docker/tok.yaml"
	systemdUnit    = "systemd/tok.service"
	systemdConfig  = "systemd/tok.yaml"
	repoRoot       = "../.."
	tokContainer   = "tok" // the sidecar's container name in the pod
	appContainer   = "app" // the merchant app's
	kustomization  = "kustomization.yaml"
	healthzPath    = "/healthz"
	readyzPath     = "/readyz"
	keyringEnv     = config.EnvKeyring
	postgresURLEnv = config.EnvPostgresURL
)

// --- YAML documents -----------------------------------------------------------

// document is one YAML document of a manifest file.
type document struct {
	file string
	node *yaml.Node
	meta struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name   string            `yaml:"name"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
	}
}

func (d document) String() string { return d.file + ": " + d.meta.Kind + " " + d.meta.Metadata.Name }

// decode decodes the whole document into v, failing the test on error.
func (d document) decode(t *testing.T, v any) {
	t.Helper()
	if err := d.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", d, err)
	}
}

// readDocuments parses every document of a (multi-document) YAML file.
// Empty documents (a stray "---") are an error: they are usually a mistake.
func readDocuments(t *testing.T, file string) []document {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []document
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		if len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
			t.Fatalf("%s: document %d is empty or not a mapping", file, i)
		}
		d := document{file: file, node: &n}
		if err := n.Decode(&d.meta); err != nil {
			t.Fatalf("%s: document %d: %v", file, i, err)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", file)
	}
	return docs
}

// kubernetesDocuments parses every manifest in kubernetes/.
func kubernetesDocuments(t *testing.T) []document {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", kubernetesDir, err)
	}
	var docs []document
	for _, f := range files {
		docs = append(docs, readDocuments(t, f)...)
	}
	return docs
}

func ofKind(docs []document, kinds ...string) []document {
	var out []document
	for _, d := range docs {
		if slices.Contains(kinds, d.meta.Kind) {
			out = append(out, d)
		}
	}
	return out
}

// --- the subset of the Kubernetes API this test reads ---------------------------

// intOrString is a port given by number or by name.
type intOrString struct {
	num  int
	name string
}

func (p *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port must be a number or a name", n.Line)
	}
	if n.Tag == "!!int" {
		return n.Decode(&p.num)
	}
	p.name = n.Value
	return nil
}

func (p intOrString) String() string {
	if p.name != "" {
		return p.name
	}
	return strconv.Itoa(p.num)
}

type probe struct {
	HTTPGet *struct {
		Path string      `yaml:"path"`
		Port intOrString `yaml:"port"`
	} `yaml:"httpGet"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
}

type secretKeyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type container struct {
	Name          string          `yaml:"name"`
	Image         string          `yaml:"image"`
	Command       []string        `yaml:"command"`
	Args          []string        `yaml:"args"`
	RestartPolicy string          `yaml:"restartPolicy"`
	Ports         []containerPort `yaml:"ports"`
	Env           []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *secretKeyRef `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
	Mode *int   `yaml:"mode"`
}

// volumeSource is a configMap or secret volume, or one source of a
// projected volume.
type volumeSource struct {
	Name        string      `yaml:"name"`       // configMap, projected sources
	SecretName  string      `yaml:"secretName"` // secret volume
	Items       []keyToPath `yaml:"items"`
	DefaultMode *int        `yaml:"defaultMode"`
}

type volume struct {
	Name      string        `yaml:"name"`
	ConfigMap *volumeSource `yaml:"configMap"`
	Secret    *volumeSource `yaml:"secret"`
	Projected *struct {
		DefaultMode *int `yaml:"defaultMode"`
		Sources     []struct {
			ConfigMap *volumeSource `yaml:"configMap"`
			Secret    *volumeSource `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
}

// file is one file a volume puts in its mount directory.
type file struct {
	kind, object, key string // "configMap" or "secret", its name, the data key
	mode              int
}

// files lists the files the volume provides, by path in the mount. Every
// source here must list its items, so that the file names are explicit.
func (v volume) files(t *testing.T) map[string]file {
	t.Helper()
	out := map[string]file{}
	add := func(kind, object string, src *volumeSource, defMode *int) {
		mode := 0o644 // Kubernetes' default
		if defMode != nil {
			mode = *defMode
		}
		if src.DefaultMode != nil {
			mode = *src.DefaultMode
		}
		if len(src.Items) == 0 {
			t.Errorf("volume %s: %s %s lists no items; name the files it provides", v.Name, kind, object)
		}
		for _, it := range src.Items {
			m := mode
			if it.Mode != nil {
				m = *it.Mode
			}
			out[it.Path] = file{kind, object, it.Key, m}
		}
	}
	switch {
	case v.ConfigMap != nil:
		add("configMap", v.ConfigMap.Name, v.ConfigMap, nil)
	case v.Secret != nil:
		add("secret", v.Secret.SecretName, v.Secret, nil)
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			if s.ConfigMap != nil {
				add("configMap", s.ConfigMap.Name, s.ConfigMap, v.Projected.DefaultMode)
			}
			if s.Secret != nil {
				add("secret", s.Secret.Name, s.Secret, v.Projected.DefaultMode)
			}
		}
	}
	return out
}

type podSpec struct {
	TerminationGracePeriodSeconds *int64            `yaml:"terminationGracePeriodSeconds"`
	AutomountServiceAccountToken  *bool             `yaml:"automountServiceAccountToken"`
	SecurityContext               *securityContext  `yaml:"securityContext"`
	InitContainers                []container       `yaml:"initContainers"`
	Containers                    []container       `yaml:"containers"`
	Volumes                       []volume          `yaml:"volumes"`
	Labels                        map[string]string `yaml:"-"` // the pod's, from its metadata
	Replicas                      int               `yaml:"-"`
	Source                        document          `yaml:"-"`
}

// pods returns the pod specs of every Pod and Deployment-like workload.
func pods(t *testing.T, docs []document) []podSpec {
	t.Helper()
	var out []podSpec
	for _, d := range ofKind(docs, "Pod") {
		var p struct {
			Spec podSpec `yaml:"spec"`
		}
		d.decode(t, &p)
		p.Spec.Labels, p.Spec.Replicas, p.Spec.Source = d.meta.Metadata.Labels, 1, d
		out = append(out, p.Spec)
	}
	for _, d := range ofKind(docs, "Deployment", "StatefulSet") {
		var w struct {
			Spec struct {
				Replicas *int `yaml:"replicas"`
				Template struct {
					Metadata struct {
						Labels map[string]string `yaml:"labels"`
					} `yaml:"metadata"`
					Spec podSpec `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		d.decode(t, &w)
		p := w.Spec.Template.Spec
		p.Labels, p.Replicas, p.Source = w.Spec.Template.Metadata.Labels, 1, d
		if w.Spec.Replicas != nil {
			p.Replicas = *w.Spec.Replicas
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		t.Fatalf("no Pod or Deployment in %s", kubernetesDir)
	}
	return out
}

func (p podSpec) container(name string) (c container, init bool, ok bool) {
	for _, c := range p.InitContainers {
		if c.Name == name {
			return c, true, true
		}
	}
	for _, c := range p.Containers {
		if c.Name == name {
			return c, false, true
		}
	}
	return container{}, false, false
}

func (p podSpec) volume(name string) (volume, bool) {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return volume{}, false
}

// fileAt returns what the pod mounts at filePath in container c: a file of
// a ConfigMap or Secret volume, or (pvc) a path on a PersistentVolumeClaim.
func (p podSpec) fileAt(t *testing.T, c container, filePath string) (f file, pvc bool, ok bool) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, filePath)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		v, found := p.volume(m.Name)
		if !found {
			t.Errorf("%s: container %s mounts volume %q, which the pod does not define", p.Source, c.Name, m.Name)
			continue
		}
		if v.PersistentVolumeClaim != nil {
			return file{}, true, true
		}
		if m.SubPath != "" {
			continue
		}
		f, ok := v.files(t)[rel]
		return f, false, ok
	}
	return file{}, false, false
}

// portNumber resolves a probe's or Service's port (a number, or the name
// of one of c's ports) to a number; 0 if the name is unknown.
func (c container) portNumber(p intOrString) int {
	if p.name == "" {
		return p.num
	}
	for _, cp := range c.Ports {
		if cp.Name == p.name {
			return cp.ContainerPort
		}
	}
	return 0
}

func (c container) hasPort(n int) bool {
	return slices.ContainsFunc(c.Ports, func(cp containerPort) bool { return cp.ContainerPort == n })
}

// envFromSecret reports whether c sets name from a required Secret key.
func (c container) envFromSecret(name string) (ref *secretKeyRef, set bool) {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef, true
		}
		return nil, true
	}
	return nil, false
}

// configFlag returns the -config FILE of a "tok serve" or "tok check"
// command line, in either "-config FILE" or "-config=FILE" form.
func configFlag(args []string) (string, bool) {
	for i, a := range args {
		for _, flag := range []string{"-config", "--config"} {
			if a == flag && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// --- listen addresses ---------------------------------------------------------

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 {
		t.Fatalf("listen address %q: want a fixed port", addr)
	}
	return n
}

// loopback reports whether addr listens on a loopback address only. An
// empty address (a listener turned off) is loopback-only too: it is not
// reachable at all.
func loopback(addr string) bool {
	if addr == "" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// --- tests ------------------------------------------------------------------------

// TestKustomizationListsEveryManifest checks that kustomization.yaml lists
// every manifest beside it. The manifests themselves are decoded against
// the Kubernetes API's types by .ci/deploycheck.
func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
	}
	readDocuments(t, filepath.Join(kubernetesDir, kustomization))[0].decode(t, &k)
	manifests, _ := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	var want []string
	for _, m := range manifests {
		if filepath.Base(m) != kustomization {
			want = append(want, filepath.Base(m))
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources = %v, want every manifest: %v", got, want)
	}
}

// example is one tok.yaml shipped here, with where it runs.
type example struct {
	name string
	data []byte
	// adminExposed: the admin listener must listen beyond loopback (a
	// container's /healthz probed from outside); otherwise loopback only.
	adminExposed bool
}

func examples(t *testing.T) []example {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ex := []example{
		{name: dockerConfig, data: read(dockerConfig), adminExposed: true},
		{name: systemdConfig, data: read(systemdConfig), adminExposed: false},
	}
	cms := ofKind(kubernetesDocuments(t), "ConfigMap")
	if len(cms) == 0 {
		t.Fatal("no ConfigMap with tok.yaml")
	}
	for _, d := range cms {
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		d.decode(t, &cm)
		for key, v := range cm.Data {
			if strings.HasSuffix(key, ".yaml") {
				ex = append(ex, example{name: d.String() + " data." + key, data: []byte(v), adminExposed: true})
			}
		}
	}
	return ex
}

// TestConfigsLoad loads every tok.yaml shipped here the way tok does, and
// checks which listeners each exposes.
func TestConfigsLoad(t *testing.T) {
	for _, ex := range examples(t) {
		t.Run(ex.name, func(t *testing.T) {
			cfg, err := config.Parse(ex.data, ex.name)
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			// Reveal paths never leave the host (or pod).
			for _, l := range []struct{ key, addr string }{
				{"listen.auth", cfg.Listen.Auth},
				{"listen.egress", cfg.Listen.Egress},
			} {
				if !loopback(l.addr) {
					t.Errorf("%s = %q, want a loopback address: it reveals card numbers", l.key, l.addr)
				}
			}
			if cfg.Listen.Public == "" || cfg.Listen.Admin == "" {
				t.Fatalf("public %q, admin %q: both must be on", cfg.Listen.Public, cfg.Listen.Admin)
			}
			port(t, cfg.Listen.Public)
			port(t, cfg.Listen.Admin)
			if got := !loopback(cfg.Listen.Admin); got != ex.adminExposed {
				t.Errorf("listen.admin = %q: exposed beyond loopback = %v, want %v", cfg.Listen.Admin, got, ex.adminExposed)
			}
			// Deployed configs name absolute paths: relative ones depend on
			// the working directory and default to ./data.
			for _, p := range []struct{ key, path string }{
				{"vault.bolt", cfg.Vault.Bolt},
				{"vault.keyring", cfg.Vault.Keyring},
				{"audit.path", cfg.Audit.Path},
			} {
				if p.path != "" && p.path != "-" && !path.IsAbs(p.path) {
					t.Errorf("%s = %q, want an absolute path", p.key, p.path)
				}
			}
			if cfg.Upstream != "" {
				u, err := url.Parse(cfg.Upstream)
				if err != nil || !loopback(u.Host) {
					t.Errorf("upstream = %q, want the app on loopback beside tok", cfg.Upstream)
				}
			}
		})
	}
}

// envRefs lists the environment variables a config reads through "env:NAME".
func envRefs(cfg *config.Config) []string {
	var names []string
	add := func(s string) {
		if n, ok := strings.CutPrefix(s, "env:"); ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, r := range cfg.Egress {
		for _, v := range r.Headers {
			add(v)
		}
		add(r.EgressKey)
	}
	return names
}

// kubernetesSetup is the tok sidecar of one pod and the config it loads.
type kubernetesSetup struct {
	pod        podSpec
	tok        container
	tokIsInit  bool
	configPath string // the -config FILE inside the container
	cfg        *config.Config
}

// kubernetesSetups finds the tok container of every pod, follows its
// -config path through its volume mount to the ConfigMap key, and parses
// that config.
func kubernetesSetups(t *testing.T, docs []document) []kubernetesSetup {
	t.Helper()
	cmData := map[string]map[string]string{}
	for _, d := range ofKind(docs, "ConfigMap") {
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		d.decode(t, &cm)
		cmData[d.meta.Metadata.Name] = cm.Data
	}
	cmd := dockerCMD(t)
	var out []kubernetesSetup
	for _, p := range pods(t, docs) {
		tok, init, ok := p.container(tokContainer)
		if !ok {
			t.Fatalf("%s: no container named %q", p.Source, tokContainer)
		}
		args := tok.Args
		if len(tok.Command) == 0 && len(args) == 0 {
			args = cmd // the image's CMD
		}
		cfgPath, ok := configFlag(args)
		if !ok {
			t.Fatalf("%s: tok's args %q name no -config FILE", p.Source, args)
		}
		f, _, ok := p.fileAt(t, tok, cfgPath)
		if !ok || f.kind != "configMap" {
			t.Fatalf("%s: -config %s is not a ConfigMap file mounted into the tok container", p.Source, cfgPath)
		}
		data, ok := cmData[f.object][f.key]
		if !ok {
			t.Fatalf("%s: -config %s is ConfigMap %s key %s, which is not in %s", p.Source, cfgPath, f.object, f.key, kubernetesDir)
		}
		cfg, err := config.Parse([]byte(data), "ConfigMap "+f.object+" "+f.key)
		if err != nil {
			t.Fatalf("%s: %v", p.Source, err)
		}
		out = append(out, kubernetesSetup{p, tok, init, cfgPath, cfg})
	}
	return out
}

// TestKubernetesMatchesConfig checks the pod, Service and NetworkPolicy
// against the listen addresses and paths of the config the pod mounts.
func TestKubernetesMatchesConfig(t *testing.T) {
	docs := kubernetesDocuments(t)
	for _, s := range kubernetesSetups(t, docs) {
		t.Run(s.pod.Source.String(), func(t *testing.T) {
			publicPort, adminPort := port(t, s.cfg.Listen.Public), port(t, s.cfg.Listen.Admin)

			t.Run("ports", func(t *testing.T) {
				for _, p := range []struct {
					key  string
					port int
				}{{"listen.public", publicPort}, {"listen.admin", adminPort}} {
					if !s.tok.hasPort(p.port) {
						t.Errorf("tok container has no containerPort %d (%s)", p.port, p.key)
					}
				}
				for _, addr := range []string{s.cfg.Listen.Auth, s.cfg.Listen.Egress} {
					if addr != "" && s.tok.hasPort(port(t, addr)) {
						t.Errorf("tok container declares port %d of the loopback listener %s", port(t, addr), addr)
					}
				}
			})

			t.Run("probes", func(t *testing.T) {
				for _, p := range []struct {
					name  string
					probe *probe
					paths []string
					req   bool
				}{
					{"readinessProbe", s.tok.ReadinessProbe, []string{readyzPath}, true},
					{"livenessProbe", s.tok.LivenessProbe, []string{healthzPath}, true},
					{"startupProbe", s.tok.StartupProbe, []string{healthzPath, readyzPath}, false},
				} {
					if p.probe == nil {
						if p.req {
							t.Errorf("tok has no %s", p.name)
						}
						continue
					}
					g := p.probe.HTTPGet
					if g == nil {
						t.Errorf("%s: want httpGet on the admin port", p.name)
						continue
					}
					if !slices.Contains(p.paths, g.Path) {
						t.Errorf("%s path = %q, want one of %q", p.name, g.Path, p.paths)
					}
					if n := s.tok.portNumber(g.Port); n != adminPort {
						t.Errorf("%s port %s = %d, want listen.admin's %d", p.name, g.Port, n, adminPort)
					}
				}
				// The kubelet probes the pod IP, never the pod's loopback.
				if loopback(s.cfg.Listen.Admin) {
					t.Errorf("listen.admin = %q is loopback: the kubelet's probes cannot reach it", s.cfg.Listen.Admin)
				}
			})

			t.Run("service", func(t *testing.T) {
				var matched int
				for _, d := range ofKind(docs, "Service") {
					var svc struct {
						Spec struct {
							Selector map[string]string `yaml:"selector"`
							Ports    []struct {
								Name       string      `yaml:"name"`
								Port       int         `yaml:"port"`
								TargetPort intOrString `yaml:"targetPort"`
							} `yaml:"ports"`
						} `yaml:"spec"`
					}
					d.decode(t, &svc)
					if len(svc.Spec.Selector) == 0 || !selects(svc.Spec.Selector, s.pod.Labels) {
						continue
					}
					matched++
					for _, sp := range svc.Spec.Ports {
						target := sp.TargetPort
						if target.name == "" && target.num == 0 {
							target.num = sp.Port // Kubernetes' default
						}
						if n := s.tok.portNumber(target); n != publicPort {
							t.Errorf("%s port %s targets %s = %d, want listen.public's %d (and nothing else)", d, sp.Name, target, n, publicPort)
						}
					}
				}
				if matched == 0 {
					t.Errorf("no Service selects the pod (labels %v)", s.pod.Labels)
				}
			})

			t.Run("networkpolicy", func(t *testing.T) {
				checkNetworkPolicy(t, docs, s, publicPort, adminPort)
			})

			t.Run("app", func(t *testing.T) {
				app, _, ok := s.pod.container(appContainer)
				if !ok {
					t.Fatalf("no container named %q beside tok", appContainer)
				}
				if len(app.Ports) != 0 {
					t.Errorf("app declares ports %v; it must be reachable only through tok", app.Ports)
				}
				cmdline := strings.Join(append(slices.Clone(app.Command), app.Args...), " ")
				u, err := url.Parse(s.cfg.Upstream)
				if err != nil || u.Host == "" {
					t.Fatalf("upstream = %q, want the app's URL", s.cfg.Upstream)
				}
				if !loopback(u.Host) || !strings.Contains(cmdline, u.Host) {
					t.Errorf("upstream %s: the app (%q) must listen on that loopback address", s.cfg.Upstream, cmdline)
				}
				if len(s.cfg.Egress) > 0 && !strings.Contains(cmdline, s.cfg.Listen.Egress) {
					t.Errorf("the app (%q) does not use the egress listener %s", cmdline, s.cfg.Listen.Egress)
				}
			})

			t.Run("secrets", func(t *testing.T) {
				checkKubernetesSecrets(t, s)
			})

			t.Run("lifecycle", func(t *testing.T) {
				g := s.pod.TerminationGracePeriodSeconds
				if g == nil {
					t.Errorf("terminationGracePeriodSeconds is unset; want >= 30, more than tok's %v drain", drainTimeout)
				} else if time.Duration(*g)*time.Second <= drainTimeout || *g < 30 {
					t.Errorf("terminationGracePeriodSeconds = %d, want >= 30 and more than tok's %v drain", *g, drainTimeout)
				}
				if s.tokIsInit && s.tok.RestartPolicy != "Always" {
					t.Errorf("tok is an init container with restartPolicy %q: without Always it would block the app", s.tok.RestartPolicy)
				}
				if cmd := dockerCMD(t); len(s.tok.Args) > 0 && !slices.Equal(s.tok.Args, cmd) {
					t.Errorf("tok args %q differ from the image's CMD %q", s.tok.Args, cmd)
				}
			})

			t.Run("hardening", func(t *testing.T) {
				if a := s.pod.AutomountServiceAccountToken; a == nil || *a {
					t.Error("automountServiceAccountToken should be false: tok needs no API access")
				}
				for _, c := range append(slices.Clone(s.pod.InitContainers), s.pod.Containers...) {
					checkContainerHardening(t, s.pod, c)
				}
			})
		})
	}
}

// selects reports whether every selector label is among labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkNetworkPolicy(t *testing.T, docs []document, s kubernetesSetup, publicPort, adminPort int) {
	t.Helper()
	type netPort struct {
		Port *intOrString `yaml:"port"`
	}
	var covered bool
	publicOpen := false
	for _, d := range ofKind(docs, "NetworkPolicy") {
		var np struct {
			Spec struct {
				PodSelector struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				} `yaml:"podSelector"`
				PolicyTypes []string `yaml:"policyTypes"`
				Ingress     []struct {
					From  []yaml.Node `yaml:"from"`
					Ports []netPort   `yaml:"ports"`
				} `yaml:"ingress"`
			} `yaml:"spec"`
		}
		d.decode(t, &np)
		if !selects(np.Spec.PodSelector.MatchLabels, s.pod.Labels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
			continue
		}
		covered = true
		for i, rule := range np.Spec.Ingress {
			allows := func(n int) bool {
				if len(rule.Ports) == 0 {
					return true // every port
				}
				return slices.ContainsFunc(rule.Ports, func(p netPort) bool { return p.Port == nil || s.tok.portNumber(*p.Port) == n })
			}
			if allows(adminPort) && len(rule.From) == 0 {
				t.Errorf("%s ingress[%d] admits the admin port %d from everywhere; restrict `from`", d, i, adminPort)
			}
			if allows(publicPort) {
				publicOpen = true
			}
		}
	}
	if !loopback(s.cfg.Listen.Admin) && !covered {
		t.Errorf("listen.admin %q is on the pod IP but no Ingress NetworkPolicy selects the pod", s.cfg.Listen.Admin)
	}
	if covered && !publicOpen {
		t.Errorf("the NetworkPolicies select the pod but admit nothing on the public port %d", publicPort)
	}
}

func checkKubernetesSecrets(t *testing.T, s kubernetesSetup) {
	t.Helper()
	// The keyring: TOK_KEYRING from a Secret, or vault.keyring a Secret's
	// file that only its owner may read.
	if ref, set := s.tok.envFromSecret(keyringEnv); set {
		if ref == nil {
			t.Errorf("%s is set from a literal; want secretKeyRef", keyringEnv)
		}
	} else {
		f, _, ok := s.pod.fileAt(t, s.tok, s.cfg.Vault.Keyring)
		switch {
		case !ok || f.kind != "secret":
			t.Errorf("vault.keyring %s is not a Secret's file in the tok container, and %s is not set", s.cfg.Vault.Keyring, keyringEnv)
		case f.mode&0o077 != 0:
			t.Errorf("keyring file mode %#o: want 0400 (owner only)", f.mode)
		}
	}

	// The vault: shared PostgreSQL from a required Secret, or bolt on a
	// PVC with a single replica.
	if ref, set := s.tok.envFromSecret(postgresURLEnv); set {
		switch {
		case ref == nil:
			t.Errorf("%s is set from a literal; it holds a password: want secretKeyRef", postgresURLEnv)
		case ref.Optional != nil && *ref.Optional:
			t.Errorf("%s's secretKeyRef is optional: without it tok would fall back to bolt on the pod's disk", postgresURLEnv)
		}
	} else if s.cfg.Vault.Postgres == "" {
		if _, pvc, ok := s.pod.fileAt(t, s.tok, s.cfg.Vault.Bolt); !ok || !pvc {
			t.Errorf("vault.bolt %s is not on a PersistentVolumeClaim", s.cfg.Vault.Bolt)
		}
		if s.pod.Replicas != 1 {
			t.Errorf("replicas = %d with the bolt store: one process per vault file; use PostgreSQL", s.pod.Replicas)
		}
	}

	// Every "env:NAME" the config reads is set, from a Secret.
	for _, name := range envRefs(s.cfg) {
		if ref, set := s.tok.envFromSecret(name); !set || ref == nil {
			t.Errorf("the config reads env:%s; the tok container must set it from a Secret", name)
		}
	}
}

func checkContainerHardening(t *testing.T, pod podSpec, c container) {
	t.Helper()
	pc := pod.SecurityContext
	if pc == nil {
		pc = &securityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("container %s has no securityContext", c.Name)
		return
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	isFalse := func(b *bool) bool { return b != nil && !*b }
	if !isTrue(sc.RunAsNonRoot) && !isTrue(pc.RunAsNonRoot) {
		t.Errorf("container %s: runAsNonRoot is not true", c.Name)
	}
	for _, u := range []*int64{sc.RunAsUser, pc.RunAsUser} {
		if u != nil && *u == 0 {
			t.Errorf("container %s: runAsUser 0", c.Name)
		}
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
	}
	if !isFalse(sc.AllowPrivilegeEscalation) {
		t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
	}
	if isTrue(sc.Privileged) {
		t.Errorf("container %s: privileged", c.Name)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container %s: capabilities drop %v add %v, want drop [ALL] and nothing added", c.Name, sc.Capabilities.Drop, sc.Capabilities.Add)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("container %s: resources %+v, want cpu and memory requests and a memory limit", c.Name, c.Resources)
	}
}

// --- Dockerfile --------------------------------------------------------------------

type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// readDockerfile returns the instructions, continuation lines joined and
// comments dropped.
func readDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out  []instruction
		cur  strings.Builder
		from int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			from = n
		}
		body, more := strings.CutSuffix(line, `\`)
		cur.WriteString(body + " ")
		if more {
			continue
		}
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), from})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.Len() > 0 {
		t.Fatalf("%s ends inside a continued line", dockerfile)
	}
	return out
}

// stages splits the instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

func execForm(t *testing.T, in instruction) []string {
	t.Helper()
	var v []string
	if err := json.Unmarshal([]byte(in.args), &v); err != nil {
		t.Fatalf("%s:%d: %s %s: want the exec (JSON array) form: %v", dockerfile, in.line, in.cmd, in.args, err)
	}
	return v
}

func last(ins []instruction, cmd string) (instruction, bool) {
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].cmd == cmd {
			return ins[i], true
		}
	}
	return instruction{}, false
}

// dockerCMD is the final stage's CMD.
func dockerCMD(t *testing.T) []string {
	t.Helper()
	st := stages(readDockerfile(t))
	if len(st) == 0 {
		t.Fatalf("%s has no FROM", dockerfile)
	}
	in, ok := last(st[len(st)-1], "CMD")
	if !ok {
		t.Fatalf("%s: the final stage has no CMD", dockerfile)
	}
	return execForm(t, in)
}

// TestDockerfile checks the image's build and runtime choices, and that its
// CMD names the config path the Kubernetes pod mounts.
func TestDockerfile(t *testing.T) {
	st := stages(readDockerfile(t))
	if len(st) < 2 {
		t.Fatalf("%d stage(s); want a build stage and a final stage", len(st))
	}
	final := st[len(st)-1]
	base := strings.Fields(final[0].args)
	if img := base[len(base)-1]; img != "scratch" && !strings.HasPrefix(img, "gcr.io/distroless/static") {
		t.Errorf("final image %s; want distroless/static or scratch", img)
	}

	var build string
	for _, s := range st[:len(st)-1] {
		for _, in := range s {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				build = in.args
			}
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "go build", "-trimpath", "-s -w"} {
		if !strings.Contains(build, want) {
			t.Errorf("the build stage's go build RUN (%q) lacks %q", build, want)
		}
	}

	t.Run("user", func(t *testing.T) {
		in, ok := last(final, "USER")
		if !ok {
			t.Fatal("the final stage has no USER: it would run as root")
		}
		uid, _, _ := strings.Cut(in.args, ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("USER %s: want a numeric non-zero UID (runAsNonRoot can only verify numbers)", in.args)
		}
	})

	t.Run("entrypoint", func(t *testing.T) {
		in, ok := last(final, "ENTRYPOINT")
		if !ok {
			t.Fatal("no ENTRYPOINT")
		}
		ep := execForm(t, in)
		if !slices.Equal(ep, []string{"/tok"}) {
			t.Errorf("ENTRYPOINT %q, want [\"/tok\"]", ep)
		}
		var copied bool
		for _, in := range final {
			if f := strings.Fields(in.args); in.cmd == "COPY" && strings.HasPrefix(in.args, "--from=") && f[len(f)-1] == "/tok" {
				copied = true
			}
		}
		if !copied {
			t.Error("the final stage copies no binary to /tok from the build stage")
		}
	})

	t.Run("cmd", func(t *testing.T) {
		cmd := dockerCMD(t)
		cfgPath, ok := configFlag(cmd)
		if len(cmd) == 0 || cmd[0] != "serve" || !ok {
			t.Fatalf("CMD %q; want serve -config FILE", cmd)
		}
		// The Kubernetes pod mounts its ConfigMap at that very path.
		for _, s := range kubernetesSetups(t, kubernetesDocuments(t)) {
			if s.configPath != cfgPath {
				t.Errorf("%s: tok reads %s, the image's CMD %s", s.pod.Source, s.configPath, cfgPath)
			}
		}
		// The image ships a config there, which loads.
		var src string
		for _, in := range final {
			f := strings.Fields(in.args)
			if in.cmd == "COPY" && !strings.HasPrefix(in.args, "--from=") && len(f) == 2 && f[1] == cfgPath {
				src = f[0]
			}
		}
		got, _ := filepath.Abs(filepath.Join(repoRoot, src))
		want, _ := filepath.Abs(dockerConfig)
		if src == "" || got != want {
			t.Fatalf("the image's %s comes from %q, want %s", cfgPath, src, filepath.Join("examples/deploy", dockerConfig))
		}
		cfg, err := config.Load(dockerConfig)
		if err != nil {
			t.Fatal(err)
		}
		exposed := strings.Fields(func() string { in, _ := last(final, "EXPOSE"); return in.args }())
		if p := strconv.Itoa(port(t, cfg.Listen.Public)); !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
			t.Errorf("EXPOSE %v lacks listen.public's port %s", exposed, p)
		}
		vol, ok := last(final, "VOLUME")
		if !ok {
			t.Fatal("no VOLUME for the data directory")
		}
		dirs := execForm(t, vol)
		for _, p := range []string{cfg.Vault.Bolt, cfg.Audit.Path} {
			if !slices.Contains(dirs, path.Dir(p)) {
				t.Errorf("%s is not in a VOLUME (%v): the vault would die with the container", p, dirs)
			}
		}
	})

	t.Run("stopsignal", func(t *testing.T) {
		if in, ok := last(final, "STOPSIGNAL"); ok && in.args != "SIGTERM" {
			t.Errorf("STOPSIGNAL %s: tok drains on SIGTERM", in.args)
		}
	})
}

// --- systemd -------------------------------------------------------------------------

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	data, err := os.ReadFile(systemdUnit)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: %q is not key=value in a section", systemdUnit, n+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// get returns the key's last value (systemd's rule for single-valued keys).
func (u unit) get(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// systemdSeconds parses a systemd time span: "30", "30s", "1min 30s".
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.NewReplacer(" ", "", "min", "m", "sec", "s").Replace(s))
}

// TestSystemdUnit checks the unit's hardening, its shutdown against tok's
// drain, and that its command lines and directories match tok.yaml.
func TestSystemdUnit(t *testing.T) {
	u := readUnit(t)
	svc := "Service"

	// The sandbox (NoNewPrivileges, ProtectSystem, capabilities, the user)
	// is rated by systemd-analyze security in .ci/run; here only what ties
	// the unit to tok: its stop signal and drain, its state directory.
	for _, d := range []struct{ key, want string }{
		{"KillSignal", "SIGTERM"},
		{"Restart", "on-failure"},
		{"StateDirectory", "tok"},
	} {
		if got, ok := u.get(svc, d.key); !ok || got != d.want {
			t.Errorf("[Service] %s = %q (set: %v), want %q", d.key, got, ok, d.want)
		}
	}
	stop, _ := u.get(svc, "TimeoutStopSec")
	if d, err := systemdSeconds(stop); err != nil || d <= drainTimeout || d < 30*time.Second {
		t.Errorf("TimeoutStopSec = %q, want >= 30s and more than tok's %v drain (%v)", stop, drainTimeout, err)
	}

	// ExecStart: tok serve -config /etc/<ConfigurationDirectory>/tok.yaml,
	// ExecStartPre: the same binary's check of the same file.
	execStart, _ := u.get(svc, "ExecStart")
	start := strings.Fields(execStart)
	if len(start) < 2 || !path.IsAbs(start[0]) || path.Base(start[0]) != "tok" || start[1] != "serve" {
		t.Fatalf("ExecStart = %q, want /path/to/tok serve -config FILE", execStart)
	}
	cfgPath, ok := configFlag(start[2:])
	if !ok {
		t.Fatalf("ExecStart = %q names no -config FILE", execStart)
	}
	confDir, _ := u.get(svc, "ConfigurationDirectory")
	if want := path.Join("/etc", confDir, filepath.Base(systemdConfig)); confDir == "" || cfgPath != want {
		t.Errorf("ExecStart reads %s; the shipped %s installs as %s (ConfigurationDirectory=%s)", cfgPath, systemdConfig, want, confDir)
	}
	var checked bool
	for _, pre := range u[svc]["ExecStartPre"] {
		f := strings.Fields(strings.TrimLeft(pre, "-+!@:|"))
		if p, ok := configFlag(f); ok && len(f) >= 2 && f[0] == start[0] && f[1] == "check" && p == cfgPath {
			checked = true
		}
	}
	if !checked {
		t.Errorf("no ExecStartPre=%s check -config %s (got %q)", start[0], cfgPath, u[svc]["ExecStartPre"])
	}

	// The shipped tok.yaml keeps its state where systemd lets it write.
	cfg, err := config.Load(systemdConfig)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := u.get(svc, "StateDirectory")
	logs, _ := u.get(svc, "LogsDirectory")
	writable := []string{path.Join("/var/lib", state)}
	if logs != "" {
		writable = append(writable, path.Join("/var/log", logs))
	}
	for _, p := range []struct{ key, path string }{{"vault.bolt", cfg.Vault.Bolt}, {"audit.path", cfg.Audit.Path}} {
		if p.path != "" && !slices.Contains(writable, path.Dir(p.path)) {
			t.Errorf("%s = %s is outside the writable directories %v (ProtectSystem=strict)", p.key, p.path, writable)
		}
	}
	// A keyring in the credentials directory must be a loaded credential.
	credDir := "/run/credentials/" + filepath.Base(systemdUnit) + "/"
	if name, ok := strings.CutPrefix(cfg.Vault.Keyring, credDir); ok {
		var loaded bool
		for _, lc := range append(u[svc]["LoadCredential"], u[svc]["LoadCredentialEncrypted"]...) {
			if id, _, _ := strings.Cut(lc, ":"); id == name {
				loaded = true
			}
		}
		if !loaded {
			t.Errorf("vault.keyring = %s, but no LoadCredential=%s:...", cfg.Vault.Keyring, name)
		}
	} else if !strings.HasPrefix(cfg.Vault.Keyring, writable[0]+"/") {
		t.Errorf("vault.keyring = %s: want a systemd credential (%s...) or the state directory", cfg.Vault.Keyring, credDir)
	}
}
