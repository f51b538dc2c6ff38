package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// testPANs returns n distinct 16-digit Luhn-valid Visa-range PANs.
func testPANs(n int) []string {
	pans := make([]string, n)
	for i := range pans {
		base := fmt.Sprintf("4%014d", 271828182+i*7919)
		for c := '0'; c <= '9'; c++ {
			if vault.Luhn(base + string(c)) {
				pans[i] = base + string(c)
				break
			}
		}
	}
	return pans
}

// TestBoltRestart tokenizes over HTTP into a real bbolt file, closes tok,
// reopens the file in a new tok and finds every token; meanwhile a second
// opener of the file is refused; and neither the file nor the logs hold a
// PAN from the run.
func TestBoltRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "tok.db")
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lift := func(o *Options) { o.Budgets.Reveal = 1000 } // every token is revealed below
	e := newTestEnvKeys(t, store, keys, lift)
	// Minted through the convergent path, so that the restart can be
	// checked to keep each card's token.
	c := e.login("cih")

	pans := append(testPANs(200), seedPAN)
	tokens := make([]string, len(pans))
	var wg sync.WaitGroup
	for i, p := range pans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := do(t, c, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number":"`+p+`"}`)
			if r.StatusCode == 200 {
				tokens[i], _ = r.json(t)["token"].(string)
			}
		}()
	}
	wg.Wait()
	for i, tk := range tokens {
		if tk == "" {
			t.Fatalf("POST /handle for PAN %d failed", i)
		}
	}

	// A second process (here a second opener) is refused quickly and clearly.
	start := time.Now()
	_, err = bolt.Open(path, bolt.Options{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open = %v, want ErrLocked saying the file is in use", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v: it must fail fast", d)
	}

	e.public.Close()
	e.auth.Close()
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: a new store on the same file, a new server, the same keys.
	store2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store2.Close() })
	e2 := newTestEnvKeys(t, store2, keys, lift)
	c2 := e2.login("cih")
	for i, tk := range tokens {
		r := do(t, c2, "GET", e2.auth.URL+"/@me?token="+tk, "", "")
		if r.StatusCode != 200 || r.json(t)["pan"] != pans[i] {
			t.Fatalf("after restart GET /@me token %d = %d, want 200 revealing %s", i, r.StatusCode, vault.Mask(pans[i]))
		}
	}
	if got := e2.clientHandle(c2, pans[0]); got != tokens[0] {
		t.Errorf("after restart POST /handle (client) = %q, want the token from before %q", got, tokens[0])
	}

	// Nothing from the run is readable in clear: not in the vault file,
	// nor in the logs or audit lines of either server.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := e.log.String() + e.audit.String() + e2.log.String() + e2.audit.String()
	for _, p := range pans {
		if bytes.Contains(raw, []byte(p)) {
			t.Fatalf("vault file holds PAN %s in clear", vault.Mask(p))
		}
		if strings.Contains(logs, p) {
			t.Fatalf("logs hold PAN %s", vault.Mask(p))
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("vault file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
