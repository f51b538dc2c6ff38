package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// gateStore holds every Reseal until gate is closed.
type gateStore struct {
	vault.Durable
	gate chan struct{}
}

func (g *gateStore) Reseal(ctx context.Context, rec vault.Record, from uint32) (bool, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	return g.Durable.Reseal(ctx, rec, from)
}

func TestKeysAndRekey(t *testing.T) {
	f := vault.NewKeyringFile()
	k1, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnvKeys(t, nil, k1)
	gs := &gateStore{Durable: e.store, gate: make(chan struct{})}
	// The admin handler of whichever generation is live, as Serve does.
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.srv.live.Load().handlers[ListenerAdmin].ServeHTTP(w, r)
	}))
	t.Cleanup(admin.Close)

	want := map[string]string{}
	for i := range 30 {
		pan := fmt.Sprintf("41111100%08d", i)
		want[e.handle(pan)] = pan
	}
	keys := func() map[string]any {
		t.Helper()
		r := do(t, nil, "GET", admin.URL+"/keys", "", "")
		if r.StatusCode != 200 {
			t.Fatalf("GET /keys = %d %s", r.StatusCode, r.body)
		}
		return r.json(t)
	}
	if got := fmt.Sprint(keys()); got != "map[primary:1 versions:[map[in_keyring:true records:30 sealed_by_this_process:30 version:1]]]" {
		t.Errorf("GET /keys = %s", got)
	}

	// Rotate and reload: version 2 is primary.
	f.Rotate()
	k2, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	k2.CarrySealed(k1)
	v2, err := vault.New(gs, k2)
	if err != nil {
		t.Fatal(err)
	}
	opts := e.srv.opts
	opts.Vault, opts.Store = v2, gs
	if err := e.srv.Reload(opts); err != nil {
		t.Fatal(err)
	}
	// A keyring without version 1 is refused: 30 records use it.
	f3 := f
	f3.DataKeys = map[uint32]string{2: f.DataKeys[2]}
	k3, err := vault.NewKeyring(f3)
	if err != nil {
		t.Fatal(err)
	}
	v3, _ := vault.New(gs, k3)
	bad := opts
	bad.Vault = v3
	if err := e.srv.Reload(bad); err == nil || !strings.Contains(err.Error(), "version 1") {
		t.Errorf("Reload without version 1 = %v, want a refusal naming it", err)
	}

	r := do(t, nil, "POST", admin.URL+"/rekey", "", "", AdminHeader, "1")
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /rekey = %d %s, want 202", r.StatusCode, r.body)
	}
	wantError(t, do(t, nil, "POST", admin.URL+"/rekey", "", "", AdminHeader, "1"), http.StatusConflict, "rekey_running")
	if st := do(t, nil, "GET", admin.URL+"/rekey", "", "").json(t); st["running"] != true || st["done"] != false {
		t.Errorf("GET /rekey while running = %v", st)
	}
	// Traffic continues during the rekey, under version 2.
	pub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.srv.live.Load().handlers[ListenerPublic].ServeHTTP(w, r)
	}))
	t.Cleanup(pub.Close)
	for i := range 5 {
		pan := fmt.Sprintf("52222200%08d", i)
		r := do(t, nil, "POST", pub.URL+"/handle", "application/json", `{"pan_number": "`+pan+`"}`)
		if r.StatusCode != 200 {
			t.Fatalf("POST /handle during rekey = %d %s", r.StatusCode, r.body)
		}
		want[r.json(t)["token"].(string)] = pan
	}
	close(gs.gate)
	var st map[string]any
	for deadline := time.Now().Add(10 * time.Second); ; {
		st = do(t, nil, "GET", admin.URL+"/rekey", "", "").json(t)
		if st["running"] == false {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rekey still running: %v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st["done"] != true || st["resealed"] != float64(30) || st["cursor"] != "" {
		t.Errorf("GET /rekey after the rekey = %v, want done with 30 resealed", st)
	}
	got := keys()
	if fmt.Sprint(got["versions"]) != "[map[in_keyring:true records:0 sealed_by_this_process:30 version:1] map[in_keyring:true records:35 sealed_by_this_process:35 version:2]]" {
		t.Errorf("GET /keys after the rekey = %v", got)
	}
	for tok, pan := range want {
		rv, err := v2.Reveal(context.Background(), tok)
		if err != nil || rv.Value != pan || rv.KeyID != 2 {
			t.Errorf("Reveal(%s) = %v, key %d; want its PAN under version 2", tok, err, rv.KeyID)
		}
	}
	m := do(t, nil, "GET", admin.URL+"/metrics", "", "")
	for _, s := range []string{`tok_key_encryptions_total{version="2"} 35`, `tok_key_records{version="2"} 35`} {
		if !strings.Contains(string(m.body), s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	// Now version 1 can go.
	if err := e.srv.Reload(bad); err != nil {
		t.Errorf("Reload without version 1 after the rekey = %v", err)
	}

	if n := strings.Count(e.audit.String(), `"event":"rekey"`); n != 3 {
		t.Errorf("audit has %d rekey lines, want 3 (start, the refused second POST, end):\n%s", n, e.audit.String())
	}

	// The nonce-limit warning, with a tiny threshold.
	if strings.Contains(e.log.String(), "nonce limit") {
		t.Fatal("nonce-limit warning before the threshold was lowered")
	}
	e.srv.keys.mu.Lock()
	e.srv.keys.usageWarn = 20
	e.srv.keys.mu.Unlock()
	keys()
	if !strings.Contains(e.log.String(), "nonce limit") {
		t.Errorf("no nonce-limit warning with 35 records over a threshold of 20; log:\n%s", e.log.String())
	}
}
