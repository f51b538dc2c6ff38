package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// TestBackupDownload downloads GET /backup over real HTTP from a real bbolt
// vault while clients keep tokenizing, opens the file with bolt.Open and
// reveals, through a vault with the same keyring, every token a client had
// received before the download began.
func TestBackupDownload(t *testing.T) {
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	store, err := bolt.Open(filepath.Join(t.TempDir(), "tok.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := newTestEnvKeys(t, store, keys, func(o *Options) { o.Backup = store.Backup })

	pans := testPANs(400)
	tokens := make([]string, len(pans))
	for i := range 100 { // acknowledged before the download
		tokens[i] = e.handle(pans[i])
	}
	var wg sync.WaitGroup
	for w := range 4 { // and more while it runs
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 100 + w; i < len(pans); i += 4 {
				r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number":"`+pans[i]+`"}`)
				if r.StatusCode != 200 {
					t.Errorf("POST /handle during the backup = %d %s", r.StatusCode, r.body)
					return
				}
			}
		}()
	}

	r := do(t, nil, "GET", e.admin.URL+"/backup", "", "")
	wg.Wait()
	if r.StatusCode != 200 {
		t.Fatalf("GET /backup = %d %s, want 200", r.StatusCode, r.body)
	}
	for h, want := range map[string]string{"Content-Type": "application/octet-stream", "Cache-Control": "no-store"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	cd := r.Header.Get("Content-Disposition")
	if !regexp.MustCompile(`^attachment; filename="tok-\d{8}T\d{6}Z\.db"$`).MatchString(cd) {
		t.Errorf("Content-Disposition = %q, want an attachment named tok-<UTC timestamp>.db", cd)
	}

	path := filepath.Join(t.TempDir(), "restored", "tok.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".backup", r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Restore(path+".backup", path, false); err != nil {
		t.Fatalf("bolt.Restore(the downloaded backup) = %v", err)
	}
	restored, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("bolt.Open(the downloaded backup) = %v", err)
	}
	defer restored.Close()
	v, err := vault.New(restored, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range tokens[:100] {
		rv, err := v.Reveal(t.Context(), tok)
		if err != nil || rv.Value != pans[i] {
			t.Fatalf("Reveal(%q) from the backup = %v; want its PAN", tok, err)
		}
	}
}

// TestBackupRefusals: no backup hook gives 404, a method other than GET
// 405, a failure before the first byte a JSON 503.
func TestBackupRefusals(t *testing.T) {
	e := newTestEnv(t, nil)
	wantError(t, do(t, nil, "GET", e.admin.URL+"/backup", "", ""), 404, "not_found")

	e = newTestEnv(t, nil, func(o *Options) {
		o.Backup = func(context.Context, io.Writer) (int64, error) {
			return 0, vault.ErrUnavailable
		}
	})
	r := do(t, nil, "POST", e.admin.URL+"/backup", "", "", AdminHeader, "1")
	wantError(t, r, 405, "method_not_allowed")
	if got := r.Header.Get("Allow"); got != "GET" {
		t.Errorf("Allow = %q, want GET", got)
	}
	wantError(t, do(t, nil, "GET", e.admin.URL+"/backup", "", ""), 503, "vault_unavailable")
}

// TestBackupAbortsMidway: when the snapshot fails after bytes were sent,
// the client sees a broken transfer, not a complete 200 body.
func TestBackupAbortsMidway(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) {
		o.Backup = func(_ context.Context, w io.Writer) (int64, error) {
			n, _ := w.Write(make([]byte, 64<<10))
			return int64(n), errors.New("disk read error")
		}
	})
	resp, err := http.Get(e.admin.URL + "/backup")
	if err != nil {
		return // aborted before the headers arrived: also not a complete file
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("GET /backup = %d with a complete body, want a broken transfer", resp.StatusCode)
	}
	if !regexp.MustCompile(`backup aborted midway`).MatchString(e.log.String()) {
		t.Errorf("the log does not record the aborted backup:\n%s", e.log)
	}
}
