package zoo

import (
	"testing"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy/rewrite"
)

// TestConfig keeps tok.yaml loadable and silent as written: the zoo must
// test a config an operator could run.
func TestConfig(t *testing.T) {
	cfg, err := config.Load("tok.yaml")
	if err != nil {
		t.Fatalf("examples/zoo/tok.yaml: %v", err)
	}
	if len(cfg.Inbound) != 1 || cfg.Inbound[0].Name != "checkout" || len(cfg.Inbound[0].Fields) != 4 {
		t.Errorf("examples/zoo/tok.yaml: want the one checkout route with its four fields, got %+v", cfg.Inbound)
	}
	if ws := cfg.Warnings(); len(ws) != 0 {
		t.Errorf("examples/zoo/tok.yaml warns: %q", ws)
	}
	if cfg.Guard.Mode != rewrite.GuardReject {
		t.Errorf("examples/zoo/tok.yaml: guard mode %q, want reject", cfg.Guard.Mode)
	}
}
