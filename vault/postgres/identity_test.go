package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestVaultIdentity: a schema without a vault beside an older vault's
// audit log is refused (and nothing created); Init creates it with an id,
// which a reopening finds again.
func TestVaultIdentity(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	audit := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(audit, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), url, Options{Schema: schema, Traces: []string{audit}})
	if !errors.Is(err, ErrVaultMissing) {
		t.Fatalf("Open on an empty schema beside an audit log = %v, want ErrVaultMissing", err)
	}
	s := openStore(t, url, Options{Schema: schema, Traces: []string{audit}, Init: true})
	if !s.Created() || len(s.VaultID()) != 32 {
		t.Fatalf("Open with Init: created %v, vault id %q; want a new vault with a 16-byte id", s.Created(), s.VaultID())
	}
	again := openStore(t, url, Options{Schema: schema, Traces: []string{audit}})
	if again.Created() || again.VaultID() != s.VaultID() {
		t.Errorf("reopened: created %v, id %q; want the same vault %q", again.Created(), again.VaultID(), s.VaultID())
	}
}
