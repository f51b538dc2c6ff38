package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// TestKeysRetire rotates the keyring of a running tok, checks that `keys
// retire` refuses the primary and a version records still use, rekeys
// through the admin listener, and then retires the old version.
func TestKeysRetire(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg := writeBoltConfig(t, dir, keyring, "")
	s := startTok(t, dir, cfg)
	waitLog := func(msg string) {
		t.Helper()
		for m := range s.logs {
			if m["msg"] == msg {
				return
			}
		}
		t.Fatalf("tok exited before logging %q", msg)
	}
	for i := range 5 {
		s.handle(t, fmt.Sprintf("41111100%08d", i))
	}
	admin := "http://" + s.addrs["admin"]
	retire := func(v string) (int, string) {
		code, _, errOut := tok(t, dir, "", "keys", "retire", "-keyring", keyring, "-version", v, "-admin", admin)
		return code, errOut
	}

	if code, _, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", keyring); code != 0 {
		t.Fatalf("keys rotate: %s", errOut)
	}
	s.p.Signal(syscall.SIGHUP)
	waitLog("keyring reloaded")

	if code, errOut := retire("2"); code != 1 || !strings.Contains(errOut, "primary") {
		t.Errorf("retire the primary = %d %q, want 1 and a refusal", code, errOut)
	}
	if code, errOut := retire("1"); code != 1 || !strings.Contains(errOut, "5 records still use version 1") {
		t.Errorf("retire a used version = %d %q, want 1 and a refusal", code, errOut)
	}

	req, _ := http.NewRequest("POST", admin+"/rekey", nil)
	req.Header.Set("X-Tok-Admin", "1") // admin POSTs must carry it (a cross-site form cannot)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /rekey = %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(admin + "/rekey")
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Running, Done bool }
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if st.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rekey did not finish within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code, errOut := retire("1"); code != 0 {
		t.Fatalf("retire after the rekey = %d %q, want 0", code, errOut)
	}
	fi, err := os.Stat(keyring)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(keyring)
	f, err := vault.ParseKeyringFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.DataKeys[1]; ok || f.Primary != 2 || len(f.DataKeys) != 1 {
		t.Errorf("keyring after retire: primary %d, versions %v; want only 2", f.Primary, f.DataKeys)
	}
	s.p.Signal(syscall.SIGHUP)
	waitLog("keyring reloaded")
	s.handle(t, "4111110000009999")
	s.stop(t)
}
