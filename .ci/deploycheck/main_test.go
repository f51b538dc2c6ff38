package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples checks the repository's own manifests, as CI does.
func TestExamples(t *testing.T) {
	n, err := checkDirs([]string{"../../examples/deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Errorf("checked %d files, want every manifest of examples/deploy/kubernetes and the Dockerfile", n)
	}
}

func TestRefuses(t *testing.T) {
	const svc = "apiVersion: v1\nkind: Service\nmetadata: {name: tok}\n"
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", svc + "spec: {portz: []}\n", "unknown field"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: tok}\nspec:\n  replicas: 2\n  containers: []\n", "unknown field"},
		{"wrong type", svc + "spec: {ports: [{port: eighty}]}\n", "port"},
		{"duplicate key", svc + "spec: {type: ClusterIP, type: NodePort}\n", "type"},
		{"unknown kind", "apiVersion: v1\nkind: Nonsense\nmetadata: {name: x}\n", "no type for"},
		{"no name", "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n", "metadata.name"},
		{"second document", svc + "---\n" + svc + "spec: {bogus: 1}\n", "document 2"},
		{"pod security", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x}]}\n", "restricted Pod Security Standard"},
		{"privileged sidecar", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}\n      containers:\n        - {name: c, image: x, securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}\n      initContainers:\n        - {name: s, image: x, restartPolicy: Always, securityContext: {privileged: true}}\n", "privileged"},
		{"writable root", strings.Replace(restrictedPod, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", 1), "readOnlyRootFilesystem"},
		{"no memory limit", strings.Replace(restrictedPod, ", limits: {memory: 64Mi}", "", 1), "memory limit"},
		{"service account token", strings.Replace(restrictedPod, "automountServiceAccountToken: false", "automountServiceAccountToken: true", 1), "automountServiceAccountToken"},
		{"missing resource", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [gone.yaml]\n", "gone.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := checkDirs([]string{dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkDirs(%q) = %v, want an error with %q", tc.doc, err, tc.want)
			}
		})
	}
}

func TestSkipsNonManifests(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok.yaml"), []byte("listen: {public: ':8080'}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ok.yml"), []byte("# a service\n---\napiVersion: v1\nkind: Service\nmetadata: {name: tok}\n"), 0o600)
	if n, err := checkDirs([]string{dir}); err != nil || n != 1 {
		t.Errorf("checkDirs = %d, %v; want 1 manifest, no error", n, err)
	}
}

func TestDockerfileLint(t *testing.T) {
	for _, tc := range []struct{ name, dockerfile, want string }{
		{"casing", "from golang:1.26 AS build\nRUN true\n", "ConsistentInstructionCasing"},
		{"shell form", "FROM scratch\nCMD tok serve\n", "JSONArgsRecommended"},
		{"syntax", "FROM scratch\nNOPE x\n", "unknown instruction"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tc.dockerfile), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := checkDirs([]string{dir})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dockerfile %q: %v, want an error with %q", tc.dockerfile, err, tc.want)
			}
		})
	}
	if isDockerfile("Dockerfile.dockerignore") || !isDockerfile("Dockerfile") || !isDockerfile("app.Dockerfile") {
		t.Error("isDockerfile misnames files")
	}
}

// restrictedPod passes every check deploycheck makes of a pod.
const restrictedPod = `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: c
      image: x
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}
`

func TestPodSecurityPasses(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(restrictedPod), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := checkDirs([]string{dir}); err != nil {
		t.Errorf("a restricted pod: %v", err)
	}
}
