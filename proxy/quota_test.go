package proxy

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// TestVaultFull: past limits.vault_bytes, /handle and inbound
// routes refuse cards without a token with 507 vault_full and forward
// nothing, and /metrics shows the size against the quota.
func TestVaultFull(t *testing.T) {
	var size atomic.Int64
	size.Store(2000)
	q := vault.NewQuota(1000, func(context.Context) (int64, error) { return size.Load(), nil })
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		m := memory.New()
		t.Cleanup(func() { m.Close() })
		v, err := vault.New(m, o.Vault.Keyring(), vault.WithVolatile(o.Volatile.(*memory.Store)), vault.WithQuota(q))
		if err != nil {
			t.Fatal(err)
		}
		o.Vault, o.Store, o.Quota = v, m, q
	}})
	r := e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`","cvc":"737"}}`))
	if r.StatusCode != http.StatusInsufficientStorage || !strings.Contains(string(r.body), `"vault_full"`) {
		t.Errorf("checkout past the quota = %d %s; want 507 vault_full", r.StatusCode, r.body)
	}
	if n := e.up.count(); n != 0 {
		t.Errorf("the app received %d requests", n)
	}
	mfs, err := e.srv.opts.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "tok_vault_bytes") {
			got += mf.GetName() + "=" + strings.TrimSpace(mf.GetMetric()[0].GetGauge().String()) + " "
		}
	}
	if !strings.Contains(got, "tok_vault_bytes=value:2000") || !strings.Contains(got, "tok_vault_bytes_max=value:1000") {
		t.Errorf("metrics: %s; want tok_vault_bytes 2000 and tok_vault_bytes_max 1000", got)
	}
}
