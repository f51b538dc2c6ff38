// Package deploy holds tok's deployment examples: a Dockerfile, Kubernetes
// manifests with tok as a sidecar, and a systemd unit, each with the
// tok.yaml it runs. The package has no code; its test checks that the
// manifests parse and that their ports and paths match those configs.
package deploy
