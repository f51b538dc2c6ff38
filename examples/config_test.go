package examples

import (
	"net/url"
	"testing"

	"github.com/tokproxy/tok/config"
)

// TestTokYAMLIsValid keeps examples/tok.yaml loadable, and fronting the
// demo merchant app the way the README says.
func TestTokYAMLIsValid(t *testing.T) {
	cfg, err := config.Load("tok.yaml")
	if err != nil {
		t.Fatalf("examples/tok.yaml: %v", err)
	}
	if u, err := url.Parse(cfg.Upstream); err != nil || u.Host != "127.0.0.1:3000" {
		t.Errorf("upstream = %q, want the merchant app at http://127.0.0.1:3000", cfg.Upstream)
	}
	if cfg.Guard.Mode != config.GuardReject {
		t.Errorf("guard.mode = %q, want %q", cfg.Guard.Mode, config.GuardReject)
	}
	if len(cfg.Inbound) != 1 {
		t.Fatalf("got %d inbound routes, want the checkout route alone", len(cfg.Inbound))
	}
	rt := cfg.Inbound[0]
	if rt.Name != "checkout" || rt.Match.Method != "POST" || rt.Match.Path != "/checkout" {
		t.Errorf("route = %s %s %s, want checkout POST /checkout", rt.Name, rt.Match.Method, rt.Match.Path)
	}
	fields := map[string]config.Field{}
	for _, f := range rt.Fields {
		fields[f.Selector()] = f
	}
	if f, ok := fields["json:card.number"]; !ok || f.Format != "pan" || f.Store != config.StoreDisk {
		t.Errorf("json:card.number = %+v, want a pan token on disk", f)
	}
	if f, ok := fields["json:card.cvc"]; !ok || f.Format != "digits" || f.Store != config.StoreMemory || f.TTL <= 0 {
		t.Errorf("json:card.cvc = %+v, want digits in memory with a ttl", f)
	}
}
