package examples

import (
	"net/url"
	"slices"
	"testing"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
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
	if cfg.Guard.Mode != rewrite.GuardReject {
		t.Errorf("guard.mode = %q, want %q", cfg.Guard.Mode, rewrite.GuardReject)
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
	if f, ok := fields["json:card.number"]; !ok || f.Format != vault.FormatPAN || f.Store != config.StoreDisk {
		t.Errorf("json:card.number = %+v, want a pan token on disk", f)
	}
	if f, ok := fields["json:card.cvc"]; !ok || f.Format != vault.FormatDigits || f.Store != config.StoreMemory || f.TTL <= 0 || f.Bind != "card.number" {
		t.Errorf("json:card.cvc = %+v, want digits in memory with a ttl, bound to card.number", f)
	}
	if f, ok := fields["form:card[cvc]"]; !ok || f.Bind != "card[number]" {
		t.Errorf("form:card[cvc] = %+v, want it bound to card[number]", f)
	}
	// The README's example must not walk into a warning (an
	// unbound CVC ran out of tokens after ~900 checkouts).
	if ws := cfg.Warnings(); len(ws) != 0 {
		t.Errorf("examples/tok.yaml warns: %q", ws)
	}
}

// TestTokYAMLEgress keeps the egress route the merchant app charges
// through (-egress http://127.0.0.1:8081/psp) and the provider stand-in
// listens behind (127.0.0.1:4000).
func TestTokYAMLEgress(t *testing.T) {
	cfg, err := config.Load("tok.yaml")
	if err != nil {
		t.Fatalf("examples/tok.yaml: %v", err)
	}
	if cfg.Listen.Egress != "127.0.0.1:8081" {
		t.Errorf("listen.egress = %q, want 127.0.0.1:8081", cfg.Listen.Egress)
	}
	if len(cfg.Egress) != 1 {
		t.Fatalf("got %d egress routes, want the psp route alone", len(cfg.Egress))
	}
	r := cfg.Egress[0]
	if r.Name != "psp" || r.Match.Method != "POST" || r.Match.Path != "/psp/*" || r.StripPrefix != "/psp" {
		t.Errorf("route = %s %s %s strip %s, want psp POST /psp/* strip /psp", r.Name, r.Match.Method, r.Match.Path, r.StripPrefix)
	}
	if u, err := url.Parse(r.Upstream); err != nil || u.Host != "127.0.0.1:4000" {
		t.Errorf("upstream = %q, want the provider stand-in at http://127.0.0.1:4000", r.Upstream)
	}
	var sel []string
	for _, f := range r.Fields {
		sel = append(sel, f.Selector())
	}
	for _, want := range []string{"form:card[number]", "form:card[cvc]", "json:source.card.number"} {
		if !slices.Contains(sel, want) {
			t.Errorf("fields %v lack %s", sel, want)
		}
	}
	if r.Headers["Authorization"] != "env:PSP_API_KEY" || r.EgressKey != "env:TOK_EGRESS_KEY" {
		t.Errorf("headers %v, egress_key %q: want the provider key and the egress key from the environment", r.Headers, r.EgressKey)
	}
}
