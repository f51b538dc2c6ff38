package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// checkPodSecurity evaluates the pod an object runs against the Pod
// Security Standards' restricted level, with the Kubernetes API server's
// own admission checks (k8s.io/pod-security-admission): non-root, no
// privilege escalation, every capability dropped, a seccomp profile, no
// host namespaces or paths. Objects that run no pod pass.
func checkPodSecurity(obj any) error {
	meta, spec := podOf(obj)
	if spec == nil {
		return nil
	}
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return err
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	var problems []string
	for _, r := range eval.EvaluatePod(lv, meta, spec) {
		if !r.Allowed {
			problems = append(problems, r.ForbiddenReason+" ("+r.ForbiddenDetail+")")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("violates the restricted Pod Security Standard: %s", strings.Join(problems, "; "))
	}
	return checkBeyondRestricted(spec)
}

// checkBeyondRestricted holds a pod to what the restricted level leaves
// out and a card-handling pod needs: no service account token (tok needs
// no API access), a read-only root file system, and CPU and memory
// requests and a memory limit for every container.
func checkBeyondRestricted(spec *corev1.PodSpec) error {
	var problems []string
	if a := spec.AutomountServiceAccountToken; a == nil || *a {
		problems = append(problems, "automountServiceAccountToken is not false")
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			problems = append(problems, "container "+c.Name+": readOnlyRootFilesystem is not true")
		}
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			problems = append(problems, "container "+c.Name+": want cpu and memory requests and a memory limit")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// podOf returns the pod metadata and spec an object runs, or a nil spec.
func podOf(obj any) (*metav1.ObjectMeta, *corev1.PodSpec) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.ObjectMeta, &o.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case *batchv1.Job:
		return &o.Spec.Template.ObjectMeta, &o.Spec.Template.Spec
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec.Template.ObjectMeta, &o.Spec.JobTemplate.Spec.Template.Spec
	}
	return nil, nil
}
