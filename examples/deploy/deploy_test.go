package deploy

// The checks here span files: what one deployment file says must agree
// with another, or with tok itself (its config loader, its drain time).
// Each file on its own is checked by the real tools in .ci/run:
// `systemd-analyze verify` and `security` for the unit, and
// .ci/deploycheck for the manifests (strict decoding into the Kubernetes
// API's types, the restricted Pod Security Standard) and the Dockerfile
// (BuildKit's linter). So the readers below take only the fields these
// checks compare, and leave syntax and schema to those tools.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
)

// The files under test, relative to this directory.
const (
	kubernetesDir = "kubernetes"
	kustomization = "kustomization.yaml"
	dockerfile    = "Dockerfile"
	dockerConfig  = "docker/tok.yaml"
	systemdUnit   = "systemd/tok.service"
	systemdConfig = "systemd/tok.yaml"
	tokContainer  = "tok" // the sidecar's container name in the pod
	appContainer  = "app" // the merchant app's
)

// drainTimeout is how long tok drains in-flight requests after SIGTERM;
// every stop timeout must exceed it.
const drainTimeout = proxy.DefaultShutdownTimeout

// --- Kubernetes manifests: the fields the checks compare ----------------------

// manifest is one YAML document of kubernetes/.
type manifest struct {
	file string
	node *yaml.Node
	Kind string `yaml:"kind"`
	Meta struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

func (m manifest) String() string { return m.file + ": " + m.Kind + " " + m.Meta.Name }

func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.node.Decode(v); err != nil {
		t.Fatalf("%s: %v", m, err)
	}
}

// manifests reads every document of every file in kubernetes/.
func manifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", kubernetesDir, err)
	}
	var out []manifest
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(mustRead(t, f))))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			m := manifest{file: f, node: &n}
			m.decode(t, &m)
			out = append(out, m)
		}
	}
	return out
}

func ofKind(ms []manifest, kind string) []manifest {
	var out []manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// port is a port given by number or by the name of a container port.
type port struct {
	num  int
	name string
}

func (p *port) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		return n.Decode(&p.num)
	}
	p.name = n.Value
	return nil
}

func (p port) String() string {
	if p.name != "" {
		return p.name
	}
	return strconv.Itoa(p.num)
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port port   `yaml:"port"`
	} `yaml:"httpGet"`
}

type secretKeyRef struct {
	Name     string `yaml:"name"`
	Optional *bool  `yaml:"optional"`
}

type container struct {
	Name          string          `yaml:"name"`
	Command       []string        `yaml:"command"`
	Args          []string        `yaml:"args"`
	RestartPolicy string          `yaml:"restartPolicy"`
	Ports         []containerPort `yaml:"ports"`
	Env           []struct {
		Name      string `yaml:"name"`
		ValueFrom *struct {
			SecretKeyRef *secretKeyRef `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
	StartupProbe    *probe `yaml:"startupProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	SecurityContext *struct {
		RunAsUser *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
}

// portNumber resolves a port by number or name; 0 if the name is unknown.
func (c container) portNumber(p port) int {
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

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

func (c container) hasPort(n int) bool {
	return slices.ContainsFunc(c.Ports, func(p containerPort) bool { return p.ContainerPort == n })
}

// envFromSecret returns the Secret reference c sets name from; set is
// false if c does not set name, ref nil if it sets it from a literal.
func (c container) envFromSecret(name string) (ref *secretKeyRef, set bool) {
	for _, e := range c.Env {
		if e.Name == name {
			if e.ValueFrom != nil {
				return e.ValueFrom.SecretKeyRef, true
			}
			return nil, true
		}
	}
	return nil, false
}

// source is a configMap or secret volume, or one source of a projected one.
type source struct {
	Name        string `yaml:"name"`
	SecretName  string `yaml:"secretName"`
	DefaultMode *int   `yaml:"defaultMode"`
	Items       []struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
		Mode *int   `yaml:"mode"`
	} `yaml:"items"`
}

type volume struct {
	Name      string  `yaml:"name"`
	ConfigMap *source `yaml:"configMap"`
	Secret    *source `yaml:"secret"`
	Projected *struct {
		DefaultMode *int `yaml:"defaultMode"`
		Sources     []struct {
			ConfigMap *source `yaml:"configMap"`
			Secret    *source `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	PersistentVolumeClaim *struct{} `yaml:"persistentVolumeClaim"`
}

// file is what a volume puts at a path: a ConfigMap's or a Secret's key,
// with its file mode.
type file struct {
	kind, object, key string
	mode              int
}

// files lists the files a volume provides, by path in its mount.
func (v volume) files() map[string]file {
	out := map[string]file{}
	add := func(kind string, s *source, mode *int) {
		name := s.Name
		if s.SecretName != "" {
			name = s.SecretName
		}
		if s.DefaultMode != nil {
			mode = s.DefaultMode
		}
		for _, it := range s.Items {
			m := 0o644 // Kubernetes' default
			for _, set := range []*int{mode, it.Mode} {
				if set != nil {
					m = *set
				}
			}
			out[it.Path] = file{kind, name, it.Key, m}
		}
	}
	var projectedMode *int
	sources := []struct{ ConfigMap, Secret *source }{{v.ConfigMap, v.Secret}}
	if v.Projected != nil {
		projectedMode = v.Projected.DefaultMode
		for _, s := range v.Projected.Sources {
			sources = append(sources, struct{ ConfigMap, Secret *source }{s.ConfigMap, s.Secret})
		}
	}
	for _, s := range sources {
		if s.ConfigMap != nil {
			add("configMap", s.ConfigMap, projectedMode)
		}
		if s.Secret != nil {
			add("secret", s.Secret, projectedMode)
		}
	}
	return out
}

// pod is the pod template of the Deployment, with the fields the checks
// compare.
type pod struct {
	source      manifest
	labels      map[string]string
	annotations map[string]string
	replicas    int
	Spec        struct {
		TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               *struct {
			RunAsUser *int64 `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []volume    `yaml:"volumes"`
	}
}

func (p pod) container(name string) (c container, init, ok bool) {
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			return c, true, true
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return c, false, true
		}
	}
	return container{}, false, false
}

// fileAt returns what c sees at filePath: a file of a ConfigMap or Secret
// volume, or (pvc) a path on a PersistentVolumeClaim.
func (p pod) fileAt(c container, filePath string) (f file, pvc, ok bool) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, filePath)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") || m.SubPath != "" {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.PersistentVolumeClaim != nil {
				return file{}, true, true
			}
			f, ok := v.files()[rel]
			return f, false, ok
		}
	}
	return file{}, false, false
}

// setup is the tok sidecar of the Deployment and the config it loads,
// followed from its -config flag through its volume mount to the
// ConfigMap key.
type setup struct {
	pod        pod
	tok        container
	tokIsInit  bool
	configPath string
	cfg        *config.Config
	all        []manifest
}

func kubernetesSetup(t *testing.T) setup {
	t.Helper()
	all := manifests(t)
	deployments := ofKind(all, "Deployment")
	if len(deployments) != 1 {
		t.Fatalf("%d Deployments in %s, want 1", len(deployments), kubernetesDir)
	}
	var d struct {
		Spec struct {
			Replicas *int `yaml:"replicas"`
			Template struct {
				Metadata struct {
					Labels      map[string]string `yaml:"labels"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
				Spec yaml.Node `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	deployments[0].decode(t, &d)
	p := pod{source: deployments[0], labels: d.Spec.Template.Metadata.Labels, annotations: d.Spec.Template.Metadata.Annotations, replicas: 1}
	if d.Spec.Replicas != nil {
		p.replicas = *d.Spec.Replicas
	}
	if err := d.Spec.Template.Spec.Decode(&p.Spec); err != nil {
		t.Fatalf("%s: %v", p.source, err)
	}
	tok, init, ok := p.container(tokContainer)
	if !ok {
		t.Fatalf("%s: no container named %q", p.source, tokContainer)
	}
	args := tok.Args
	if len(tok.Command) == 0 && len(args) == 0 {
		args = imageCMD(t)
	}
	cfgPath, ok := configFlag(args)
	if !ok {
		t.Fatalf("%s: tok's args %q name no -config FILE", p.source, args)
	}
	f, _, ok := p.fileAt(tok, cfgPath)
	if !ok || f.kind != "configMap" {
		t.Fatalf("%s: -config %s is not a ConfigMap's file mounted into the tok container", p.source, cfgPath)
	}
	data, ok := configMapData(t, all)[f.object][f.key]
	if !ok {
		t.Fatalf("%s: -config %s is ConfigMap %s key %s, which is not in %s", p.source, cfgPath, f.object, f.key, kubernetesDir)
	}
	cfg, err := config.Parse([]byte(data), "ConfigMap "+f.object+" "+f.key)
	if err != nil {
		t.Fatalf("%s: %v", p.source, err)
	}
	return setup{p, tok, init, cfgPath, cfg, all}
}

func configMapData(t *testing.T, all []manifest) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, m := range ofKind(all, "ConfigMap") {
		var cm struct {
			Data map[string]string `yaml:"data"`
		}
		m.decode(t, &cm)
		out[m.Meta.Name] = cm.Data
	}
	return out
}

// netPort is a NetworkPolicy rule's port; nil means every port.
type netPort struct {
	Port *port `yaml:"port"`
}

// selects reports whether every selector label is among labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

// --- the other files ------------------------------------------------------------

// configFlag returns the FILE of "-config FILE" or "-config=FILE".
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

// finalStage returns the final stage's instructions of the Dockerfile, by
// upper-case name, each with its arguments (continued lines joined).
// BuildKit's parser checks the syntax in .ci/deploycheck; this reads only
// the values the image shares with the other files.
func finalStage(t *testing.T) map[string][]string {
	t.Helper()
	src := strings.ReplaceAll(mustRead(t, dockerfile), "\\\n", " ")
	var stage map[string][]string
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage = map[string][]string{}
		}
		if stage != nil {
			stage[cmd] = append(stage[cmd], strings.TrimSpace(args))
		}
	}
	if stage == nil {
		t.Fatalf("%s has no FROM", dockerfile)
	}
	return stage
}

// execForm decodes an instruction's JSON array form; nil if it is not one
// (BuildKit's linter flags a CMD in shell form).
func execForm(args string) []string {
	var out []string
	if json.Unmarshal([]byte(args), &out) != nil {
		return nil
	}
	return out
}

// imageCMD is the image's CMD.
func imageCMD(t *testing.T) []string {
	t.Helper()
	cmds := finalStage(t)["CMD"]
	if len(cmds) == 0 {
		t.Fatalf("%s: the final stage has no CMD", dockerfile)
	}
	return execForm(cmds[len(cmds)-1])
}

// unit reads the systemd unit's [Service] keys, each with its values in
// order. `systemd-analyze verify` checks the file in .ci/run.
func unit(t *testing.T) map[string][]string {
	t.Helper()
	svc, section := map[string][]string{}, ""
	for _, line := range strings.Split(mustRead(t, systemdUnit), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			k, v, _ := strings.Cut(line, "=")
			svc[k] = append(svc[k], v)
		}
	}
	return svc
}

// last is a systemd key's last value, which wins for single-valued keys.
func last(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	if err != nil || n <= 0 {
		t.Fatalf("listen address %q: want a fixed port", addr)
	}
	return n
}

// loopback reports whether addr listens on loopback only; an empty
// address (a listener turned off) is not reachable at all.
func loopback(addr string) bool {
	if addr == "" {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// --- tests -----------------------------------------------------------------------

// TestKustomizationListsEveryManifest: kustomization.yaml lists every
// manifest beside it (deploycheck checks the other way round).
func TestKustomizationListsEveryManifest(t *testing.T) {
	var k struct {
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal([]byte(mustRead(t, filepath.Join(kubernetesDir, kustomization))), &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(kubernetesDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if filepath.Base(f) != kustomization {
			want = append(want, filepath.Base(f))
		}
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources = %v, want every manifest: %v", got, want)
	}
}

// TestConfigsLoad loads every tok.yaml shipped here with tok's own config
// loader, and checks which listeners each exposes where it runs: the
// reveal paths (auth, egress) never leave the host or pod; the admin
// listener is on the pod's or container's IP for the probes, and on
// loopback under systemd.
func TestConfigsLoad(t *testing.T) {
	type shipped struct {
		name         string
		data         string
		adminExposed bool
	}
	ex := []shipped{
		{dockerConfig, mustRead(t, dockerConfig), true},
		{systemdConfig, mustRead(t, systemdConfig), false},
	}
	for name, data := range configMapData(t, manifests(t)) {
		for key, v := range data {
			if strings.HasSuffix(key, ".yaml") {
				ex = append(ex, shipped{"ConfigMap " + name + " " + key, v, true})
			}
		}
	}
	for _, e := range ex {
		t.Run(e.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(e.data), e.name)
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			for _, l := range []struct{ key, addr string }{{"listen.auth", cfg.Listen.Auth}, {"listen.egress", cfg.Listen.Egress}} {
				if !loopback(l.addr) {
					t.Errorf("%s = %q, want a loopback address: it reveals card numbers", l.key, l.addr)
				}
			}
			portOf(t, cfg.Listen.Public)
			portOf(t, cfg.Listen.Admin)
			if got := !loopback(cfg.Listen.Admin); got != e.adminExposed {
				t.Errorf("listen.admin = %q: beyond loopback = %v, want %v", cfg.Listen.Admin, got, e.adminExposed)
			}
		})
	}
}

// TestKubernetesMatchesConfig checks the pod, Service and NetworkPolicy
// against the config the pod mounts, and the pod against the image.
func TestKubernetesMatchesConfig(t *testing.T) {
	s := kubernetesSetup(t)
	public, admin := portOf(t, s.cfg.Listen.Public), portOf(t, s.cfg.Listen.Admin)

	t.Run("ports", func(t *testing.T) {
		if !s.tok.hasPort(public) || !s.tok.hasPort(admin) {
			t.Errorf("tok container ports %v, want listen.public's %d and listen.admin's %d", s.tok.Ports, public, admin)
		}
		for _, addr := range []string{s.cfg.Listen.Auth, s.cfg.Listen.Egress} {
			if addr != "" && s.tok.hasPort(portOf(t, addr)) {
				t.Errorf("tok container declares port %d of the loopback listener %s", portOf(t, addr), addr)
			}
		}
		if p := s.pod.annotations["prometheus.io/port"]; p != "" && p != strconv.Itoa(admin) {
			t.Errorf("prometheus.io/port = %s, want listen.admin's %d (/metrics)", p, admin)
		}
	})

	t.Run("probes", func(t *testing.T) {
		for _, p := range []struct {
			name  string
			probe *probe
			paths []string
		}{
			{"readinessProbe", s.tok.ReadinessProbe, []string{"/readyz"}},
			{"livenessProbe", s.tok.LivenessProbe, []string{"/healthz"}},
			{"startupProbe", s.tok.StartupProbe, []string{"/healthz", "/readyz"}},
		} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("tok has no httpGet %s", p.name)
				continue
			}
			g := p.probe.HTTPGet
			if !slices.Contains(p.paths, g.Path) || s.tok.portNumber(g.Port) != admin {
				t.Errorf("%s = %s on port %s, want one of %q on listen.admin's %d", p.name, g.Path, g.Port, p.paths, admin)
			}
		}
	})

	t.Run("service", func(t *testing.T) {
		matched := 0
		for _, m := range ofKind(s.all, "Service") {
			var svc struct {
				Spec struct {
					Selector map[string]string `yaml:"selector"`
					Ports    []struct {
						Port       int  `yaml:"port"`
						TargetPort port `yaml:"targetPort"`
					} `yaml:"ports"`
				} `yaml:"spec"`
			}
			m.decode(t, &svc)
			if !selects(svc.Spec.Selector, s.pod.labels) {
				continue
			}
			matched++
			for _, sp := range svc.Spec.Ports {
				target := sp.TargetPort
				if target == (port{}) {
					target.num = sp.Port
				}
				if n := s.tok.portNumber(target); n != public {
					t.Errorf("%s targets port %s = %d, want listen.public's %d and nothing else", m, target, n, public)
				}
			}
		}
		if matched == 0 {
			t.Errorf("no Service selects the pod (labels %v)", s.pod.labels)
		}
	})

	t.Run("networkpolicy", func(t *testing.T) {
		covered, publicOpen := false, false
		for _, m := range ofKind(s.all, "NetworkPolicy") {
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
			m.decode(t, &np)
			if !selects(np.Spec.PodSelector.MatchLabels, s.pod.labels) || !slices.Contains(np.Spec.PolicyTypes, "Ingress") {
				continue
			}
			covered = true
			for i, rule := range np.Spec.Ingress {
				allows := func(n int) bool {
					return len(rule.Ports) == 0 || slices.ContainsFunc(rule.Ports, func(p netPort) bool {
						return p.Port == nil || s.tok.portNumber(*p.Port) == n
					})
				}
				if allows(admin) && len(rule.From) == 0 {
					t.Errorf("%s ingress[%d] admits listen.admin's port %d from everywhere; restrict `from`", m, i, admin)
				}
				publicOpen = publicOpen || allows(public)
			}
		}
		if !covered {
			t.Errorf("listen.admin %q is on the pod IP but no Ingress NetworkPolicy selects the pod", s.cfg.Listen.Admin)
		} else if !publicOpen {
			t.Errorf("the NetworkPolicies admit nothing on listen.public's port %d", public)
		}
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
		if err != nil || !loopback(u.Host) || !strings.Contains(cmdline, u.Host) {
			t.Errorf("upstream %s: the app (%q) must listen on that loopback address", s.cfg.Upstream, cmdline)
		}
		if len(s.cfg.Egress) > 0 && !strings.Contains(cmdline, s.cfg.Listen.Egress) {
			t.Errorf("the app (%q) does not pay through the egress listener %s", cmdline, s.cfg.Listen.Egress)
		}
	})

	t.Run("secrets", func(t *testing.T) {
		if ref, set := s.tok.envFromSecret(config.EnvKeyring); set {
			if ref == nil {
				t.Errorf("%s is set from a literal; want a secretKeyRef", config.EnvKeyring)
			}
		} else if f, _, ok := s.pod.fileAt(s.tok, s.cfg.Vault.Keyring); !ok || f.kind != "secret" {
			t.Errorf("vault.keyring %s is not a Secret's file in the tok container, and %s is not set", s.cfg.Vault.Keyring, config.EnvKeyring)
		} else if f.mode&0o077 != 0 {
			t.Errorf("vault.keyring %s has mode %#o: want 0400 (owner only; fsGroup adds the group's read)", s.cfg.Vault.Keyring, f.mode)
		}
		if ref, set := s.tok.envFromSecret(config.EnvPostgresURL); set {
			if ref == nil || ref.Optional != nil && *ref.Optional {
				t.Errorf("%s must come from a required Secret: without it tok would open a bolt vault on the pod's disk", config.EnvPostgresURL)
			}
		} else if s.cfg.Vault.Postgres == "" {
			if _, pvc, ok := s.pod.fileAt(s.tok, s.cfg.Vault.Bolt); !ok || !pvc {
				t.Errorf("vault.bolt %s is not on a PersistentVolumeClaim", s.cfg.Vault.Bolt)
			}
			if s.pod.replicas != 1 {
				t.Errorf("replicas = %d with the bolt store: one process per vault file; use PostgreSQL", s.pod.replicas)
			}
		}
		for _, name := range envRefs(s.cfg) {
			if ref, set := s.tok.envFromSecret(name); !set || ref == nil {
				t.Errorf("the config reads env:%s; the tok container must set it from a Secret", name)
			}
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		if g := s.pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drainTimeout {
			t.Errorf("terminationGracePeriodSeconds must exceed tok's %v drain", drainTimeout)
		}
		if s.tokIsInit && s.tok.RestartPolicy != "Always" {
			t.Errorf("tok is an init container with restartPolicy %q: without Always it blocks the app", s.tok.RestartPolicy)
		}
		if cmd := imageCMD(t); len(s.tok.Args) > 0 && !slices.Equal(s.tok.Args, cmd) {
			t.Errorf("tok's args %q differ from the image's CMD %q", s.tok.Args, cmd)
		}
	})
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

// TestImageMatches checks the image against the config it ships and the
// pod that runs it: the CMD reads the file the image copies from
// docker/tok.yaml and the pod mounts its ConfigMap over, the public port
// is exposed, the vault and the audit log are in a VOLUME, and the USER is
// the numeric UID the pod runs as (runAsNonRoot can only verify a number).
func TestImageMatches(t *testing.T) {
	final := finalStage(t)
	cmd := imageCMD(t)
	cfgPath, ok := configFlag(cmd)
	if len(cmd) == 0 || cmd[0] != "serve" || !ok {
		t.Fatalf("CMD %q; want serve -config FILE", cmd)
	}
	if s := kubernetesSetup(t); s.configPath != cfgPath {
		t.Errorf("%s: tok reads %s, the image's CMD %s", s.pod.source, s.configPath, cfgPath)
	}
	var shipped bool
	for _, args := range final["COPY"] {
		f := strings.Fields(args)
		shipped = shipped || len(f) == 2 && f[0] == path.Join("examples/deploy", dockerConfig) && f[1] == cfgPath
	}
	if !shipped {
		t.Errorf("the image does not COPY examples/deploy/%s to %s, the CMD's config", dockerConfig, cfgPath)
	}

	cfg, err := config.Load(dockerConfig)
	if err != nil {
		t.Fatal(err)
	}
	exposed := strings.Fields(strings.Join(final["EXPOSE"], " "))
	if p := strconv.Itoa(portOf(t, cfg.Listen.Public)); !slices.Contains(exposed, p) && !slices.Contains(exposed, p+"/tcp") {
		t.Errorf("EXPOSE %v lacks listen.public's port %s", exposed, p)
	}
	var volumes []string
	for _, v := range final["VOLUME"] {
		volumes = append(volumes, execForm(v)...)
	}
	for _, p := range []string{cfg.Vault.Bolt, cfg.Audit.Path} {
		if !slices.Contains(volumes, path.Dir(p)) {
			t.Errorf("%s is not in a VOLUME (%v): the vault would die with the container", p, volumes)
		}
	}

	user, _, _ := strings.Cut(last(final["USER"]), ":")
	uid, err := strconv.ParseInt(user, 10, 64)
	if err != nil || uid == 0 {
		t.Fatalf("USER %q: want a numeric, non-zero UID", last(final["USER"]))
	}
	s := kubernetesSetup(t)
	for _, u := range []*int64{s.tok.SecurityContext.RunAsUser, s.pod.Spec.SecurityContext.RunAsUser} {
		if u != nil && *u != uid {
			t.Errorf("the pod runs tok as UID %d, the image's USER is %d (it owns /var/lib/tok)", *u, uid)
		}
	}
}

// TestSystemdUnit checks the unit against tok.yaml and tok's drain: the
// command lines read the config systemd installs, the state goes where
// ProtectSystem=strict lets it write, the keyring is a loaded credential,
// and a stop waits out the drain.
func TestSystemdUnit(t *testing.T) {
	u := unit(t)
	if got := last(u["KillSignal"]); got != "" && got != "SIGTERM" {
		t.Errorf("KillSignal = %s: tok drains on SIGTERM", got)
	}
	stop := last(u["TimeoutStopSec"])
	if n, err := strconv.Atoi(stop); err != nil || time.Duration(n)*time.Second <= drainTimeout {
		t.Errorf("TimeoutStopSec = %q, want seconds above tok's %v drain", stop, drainTimeout)
	}

	start := strings.Fields(last(u["ExecStart"]))
	if len(start) < 2 || start[1] != "serve" {
		t.Fatalf("ExecStart = %q, want /path/to/tok serve -config FILE", start)
	}
	cfgPath, _ := configFlag(start[2:])
	confDir := last(u["ConfigurationDirectory"])
	if want := path.Join("/etc", confDir, filepath.Base(systemdConfig)); confDir == "" || cfgPath != want {
		t.Errorf("ExecStart reads %q; the shipped %s installs as %s (ConfigurationDirectory=%s)", cfgPath, systemdConfig, want, confDir)
	}
	checked := slices.ContainsFunc(u["ExecStartPre"], func(pre string) bool {
		f := strings.Fields(strings.TrimLeft(pre, "-+!@:|"))
		p, ok := configFlag(f)
		return ok && len(f) >= 2 && f[0] == start[0] && f[1] == "check" && p == cfgPath
	})
	if !checked {
		t.Errorf("no ExecStartPre=%s check -config %s (got %q)", start[0], cfgPath, u["ExecStartPre"])
	}

	cfg, err := config.Load(systemdConfig)
	if err != nil {
		t.Fatal(err)
	}
	writable := []string{path.Join("/var/lib", last(u["StateDirectory"]))}
	if logs := last(u["LogsDirectory"]); logs != "" {
		writable = append(writable, path.Join("/var/log", logs))
	}
	for _, p := range []struct{ key, path string }{{"vault.bolt", cfg.Vault.Bolt}, {"audit.path", cfg.Audit.Path}} {
		if !slices.Contains(writable, path.Dir(p.path)) {
			t.Errorf("%s = %s is outside the writable directories %v", p.key, p.path, writable)
		}
	}
	credDir := "/run/credentials/" + filepath.Base(systemdUnit) + "/"
	name, ok := strings.CutPrefix(cfg.Vault.Keyring, credDir)
	loaded := slices.ContainsFunc(append(slices.Clone(u["LoadCredential"]), u["LoadCredentialEncrypted"]...), func(lc string) bool {
		id, _, _ := strings.Cut(lc, ":")
		return id == name
	})
	if !ok || !loaded {
		t.Errorf("vault.keyring = %s, want a credential of %s that a LoadCredential= line loads", cfg.Vault.Keyring, credDir)
	}
}
