// Command deploycheck checks the deployment examples with the real
// projects' own code, offline:
//
//   - every Kubernetes manifest is strictly decoded into the Kubernetes
//     API's Go types (k8s.io/api): an unknown or misspelt field, a value of
//     the wrong type, a duplicate key or a kind it has no type for is an
//     error naming the file and document (what kubeconform checks;
//     kubeconform is not packaged for Debian);
//   - every pod a manifest runs is evaluated against the restricted Pod
//     Security Standard by the API server's own admission checks
//     (k8s.io/pod-security-admission), as a namespace labelled
//     pod-security.kubernetes.io/enforce=restricted would, and beyond it
//     must not mount a service account token, must keep every root file
//     system read-only and must set resource requests and a memory limit;
//   - every Dockerfile goes through BuildKit's linter, the rules of
//     `docker build --check` (this machine's docker has no buildx, and
//     hadolint is not packaged for Debian).
//
// Usage: deploycheck DIR...   (below each DIR: every *.yaml and *.yml file
// with a "kind" is a manifest, and kustomization.yaml files have each listed
// resource checked to exist; Dockerfile, Dockerfile.NAME and NAME.Dockerfile
// are Dockerfiles.) systemd units are checked by `systemd-analyze verify`
// in .ci/run.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kinds maps "apiVersion kind" to a constructor of its Go type. A manifest
// of any other kind is refused: add its type here.
var kinds = map[string]func() any{
	"v1 ConfigMap":                                  func() any { return new(corev1.ConfigMap) },
	"v1 Secret":                                     func() any { return new(corev1.Secret) },
	"v1 Service":                                    func() any { return new(corev1.Service) },
	"v1 ServiceAccount":                             func() any { return new(corev1.ServiceAccount) },
	"v1 PersistentVolumeClaim":                      func() any { return new(corev1.PersistentVolumeClaim) },
	"v1 Pod":                                        func() any { return new(corev1.Pod) },
	"apps/v1 Deployment":                            func() any { return new(appsv1.Deployment) },
	"apps/v1 StatefulSet":                           func() any { return new(appsv1.StatefulSet) },
	"apps/v1 DaemonSet":                             func() any { return new(appsv1.DaemonSet) },
	"batch/v1 Job":                                  func() any { return new(batchv1.Job) },
	"batch/v1 CronJob":                              func() any { return new(batchv1.CronJob) },
	"networking.k8s.io/v1 NetworkPolicy":            func() any { return new(networkingv1.NetworkPolicy) },
	"networking.k8s.io/v1 Ingress":                  func() any { return new(networkingv1.Ingress) },
	"policy/v1 PodDisruptionBudget":                 func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2 HorizontalPodAutoscaler":        func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"rbac.authorization.k8s.io/v1 Role":             func() any { return new(rbacv1.Role) },
	"rbac.authorization.k8s.io/v1 RoleBinding":      func() any { return new(rbacv1.RoleBinding) },
	"kustomize.config.k8s.io/v1beta1 Kustomization": nil, // see checkKustomization
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck DIR...")
		os.Exit(2)
	}
	n, err := checkDirs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("deploycheck: %d Kubernetes manifests and Dockerfiles pass\n", n)
}

// checkDirs checks every manifest below dirs and returns how many it
// checked, with every problem joined in the error.
func checkDirs(dirs []string) (int, error) {
	var errs []error
	n := 0
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if isDockerfile(d.Name()) {
				n++
				errs = append(errs, checkDockerfile(context.Background(), path))
				return nil
			}
			if !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			m, err := checkFile(path, b)
			n += m
			errs = append(errs, err)
			return nil
		})
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// isDockerfile reports whether a file name is a Dockerfile's: Dockerfile,
// Dockerfile.NAME or NAME.Dockerfile, but not Dockerfile.dockerignore.
func isDockerfile(name string) bool {
	if strings.HasSuffix(name, ".dockerignore") {
		return false
	}
	return name == "Dockerfile" || strings.HasPrefix(name, "Dockerfile.") || strings.HasSuffix(name, ".Dockerfile")
}

// docSep splits a YAML stream into documents.
var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// checkFile checks each document of one file that has a kind, and
// returns how many it checked. Files without any (a tok config) are not
// manifests.
func checkFile(path string, b []byte) (int, error) {
	var errs []error
	n := 0
	for i, doc := range docSep.Split(string(b), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil || tm.Kind == "" {
			continue // not a Kubernetes object
		}
		where := fmt.Sprintf("%s (document %d, %s %s)", path, i+1, tm.APIVersion, tm.Kind)
		if err := checkDoc(path, tm, []byte(doc)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
		n++
	}
	return n, errors.Join(errs...)
}

// checkDoc strictly decodes one document into its kind's type.
func checkDoc(path string, tm metav1.TypeMeta, doc []byte) error {
	key := tm.APIVersion + " " + tm.Kind
	newObj, known := kinds[key]
	switch {
	case !known:
		return fmt.Errorf("no type for %q: deploycheck knows %s", key, strings.Join(knownKinds(), ", "))
	case newObj == nil:
		return checkKustomization(path, doc)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return err
	}
	if m, ok := obj.(metav1.Object); ok && m.GetName() == "" {
		return errors.New("metadata.name is empty")
	}
	return checkPodSecurity(obj)
}

// kustomization is the part of a Kustomization deploycheck checks.
type kustomization struct {
	Resources []string `json:"resources"`
}

// checkKustomization checks that every resource a kustomization lists
// exists beside it.
func checkKustomization(path string, doc []byte) error {
	var k kustomization
	if err := yaml.Unmarshal(doc, &k); err != nil {
		return err
	}
	var errs []error
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(filepath.Dir(path), r)); err != nil {
			errs = append(errs, fmt.Errorf("resource %s: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// stripComments drops YAML comment lines, so a file of comments only is
// empty.
func stripComments(doc string) string {
	var b bytes.Buffer
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// knownKinds lists the kinds deploycheck has types for.
func knownKinds() []string {
	var ks []string
	for k := range kinds {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
