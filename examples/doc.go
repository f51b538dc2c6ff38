// Package examples holds tok's runnable examples: an annotated config
// (tok.yaml) that fronts the demo merchant app (./merchant) and lets it pay
// through tok's egress listener to a stand-in payment provider (./psp), the
// request cases `tok test` runs against that config (./cases), and the load
// harness (./bench). The package itself only tests: that the
// config is valid, and (TestDemoLoop, skipped with -short) that the whole
// demo works, card in, token at the app, card at the provider.
package examples
