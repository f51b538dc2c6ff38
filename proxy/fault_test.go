package proxy

import (
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tokproxy/tok/vault/bolt"
)

// TestStoreFaultFailsClosedAndRecovers drives tok with a real bbolt vault
// whose disk fails (injected into WAL writes, then syncs; checkpoint faults
// are tested in vault/bolt, since a checkpoint takes 10 s to come due), end to
// end: while the fault lasts a checkout and /handle get 503
// vault_unavailable, nothing reaches the upstream and /readyz is 503; when
// it clears, the same requests succeed and /readyz is 200, with no restart.
func TestStoreFaultFailsClosedAndRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		on   func(*bolt.Faults)
	}{
		{"disk full on WAL write", func(f *bolt.Faults) { f.FailWALWrites(syscall.ENOSPC) }},
		{"WAL fdatasync fails", func(f *bolt.Faults) { f.FailWALSyncs(syscall.EIO) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			faults := &bolt.Faults{}
			store, err := bolt.Open(filepath.Join(t.TempDir(), "tok.db"), bolt.Options{Faults: faults})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
			e := newInboundEnv(t, inboundConfig{store: store})
			admin := httptest.NewServer(e.srv.AdminHandler())
			t.Cleanup(admin.Close)
			checkout := func() response {
				t.Helper()
				return e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`","cvc":"123"}}`))
			}
			readyz := func() response {
				t.Helper()
				return do(t, nil, "GET", admin.URL+"/readyz", "", "")
			}
			handle := func() response {
				t.Helper()
				return do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number":"`+seedPAN+`"}`)
			}
			if r := readyz(); r.StatusCode != 200 {
				t.Fatalf("GET /readyz before the fault = %d %s, want 200", r.StatusCode, r.body)
			}

			tc.on(faults)
			n := e.up.count()
			wantError(t, checkout(), 503, "vault_unavailable")
			wantError(t, handle(), 503, "vault_unavailable")
			if got := e.up.count(); got != n {
				t.Errorf("the upstream received %d requests during the fault, want none", got-n)
			}
			wantError(t, readyz(), 503, "not_ready")
			wantError(t, checkout(), 503, "vault_unavailable") // still failing, still closed
			if got := e.up.count(); got != n {
				t.Errorf("the upstream received %d requests during the fault, want none", got-n)
			}

			faults.Clear()
			if r := readyz(); r.StatusCode != 200 {
				t.Errorf("GET /readyz after the fault cleared = %d %s, want 200", r.StatusCode, r.body)
			}
			if r := checkout(); r.StatusCode != 200 {
				t.Fatalf("POST /checkout after the fault cleared = %d %s, want 200", r.StatusCode, r.body)
			}
			if got := e.up.count(); got != n+1 {
				t.Errorf("the upstream received %d requests after recovery, want 1", got-n)
			}
			if r := handle(); r.StatusCode != 200 {
				t.Errorf("POST /handle after the fault cleared = %d %s, want 200", r.StatusCode, r.body)
			}
			if r := readyz(); r.StatusCode != 200 {
				t.Errorf("GET /readyz after recovery = %d %s, want 200", r.StatusCode, r.body)
			}
		})
	}
}
