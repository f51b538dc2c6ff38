// Package examples holds tok's runnable examples: an annotated config
// (tok.yaml) that fronts the demo merchant app (./merchant), and the load
// harness (./bench). The package itself only tests that the config is valid.
package examples
