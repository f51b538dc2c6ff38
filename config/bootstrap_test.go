package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy/auth"
	"github.com/tokproxy/tok/vault"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestBootstrap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	noEnv := func(string) string { return "" }
	c, d, err := Bootstrap(dir, noEnv)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if !d.KeyringCreated || !d.SecretCreated {
		t.Errorf("first run: Demo = %+v, want keyring and secret created", d)
	}
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("data dir mode = %#o, want 0700", got)
	}
	for _, p := range []string{d.Keyring, d.SecretFile} {
		if got := mode(t, p); got != 0o600 {
			t.Errorf("%s mode = %#o, want 0600", p, got)
		}
	}
	if c.Vault.Bolt != filepath.Join(dir, "tok.db") || c.Vault.Keyring != d.Keyring || c.Audit.Path != filepath.Join(dir, "audit.log") {
		t.Errorf("paths not under %s: %+v, %+v", dir, c.Vault, c.Audit)
	}
	if _, _, err := c.LoadKeyring(noEnv); err != nil {
		t.Errorf("bootstrapped keyring does not load: %v", err)
	}
	secret, err := os.ReadFile(d.SecretFile)
	if err != nil {
		t.Fatal(err)
	}
	secret = bytes.TrimSuffix(secret, []byte("\n"))
	if len(c.Clients) != 1 || c.Clients[0].Name != DemoClient || !c.Clients[0].Reveal {
		t.Fatalf("Clients = %+v, want the demo client with reveal", c.Clients)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(c.Clients[0].SecretHash), secret); err != nil {
		t.Errorf("demo client's hash does not match the secret file: %v", err)
	}
	if cost, _ := bcrypt.Cost([]byte(c.Clients[0].SecretHash)); cost != auth.BcryptCost {
		t.Errorf("bcrypt cost = %d, want %d", cost, auth.BcryptCost)
	}
	keyring, _ := os.ReadFile(d.Keyring)

	// A second run reuses the secret and the keyring.
	c2, d2, err := Bootstrap(dir, noEnv)
	if err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	if d2.KeyringCreated || d2.SecretCreated {
		t.Errorf("second run: Demo = %+v, want nothing created", d2)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(c2.Clients[0].SecretHash), secret); err != nil {
		t.Errorf("second run did not reuse the secret: %v", err)
	}
	if again, _ := os.ReadFile(d.Keyring); !bytes.Equal(again, keyring) {
		t.Error("second run rewrote the keyring")
	}
}

func TestBootstrapKeyringFromEnv(t *testing.T) {
	dir := t.TempDir()
	b, _ := vault.NewKeyringFile().Marshal()
	env := func(k string) string {
		if k == EnvKeyring {
			return string(b)
		}
		return ""
	}
	_, d, err := Bootstrap(dir, env)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if d.Keyring != "" || d.KeyringCreated {
		t.Errorf("Demo = %+v, want no keyring file with %s set", d, EnvKeyring)
	}
	if _, err := os.Stat(filepath.Join(dir, "keyring.yaml")); !os.IsNotExist(err) {
		t.Errorf("keyring file written although %s is set: %v", EnvKeyring, err)
	}
}

func TestBootstrapRefusesBadSecretFile(t *testing.T) {
	noEnv := func(string) string { return "" }
	for name, tc := range map[string]struct {
		content string
		mode    os.FileMode
	}{
		"world-readable": {"abc\n", 0o644},
		"empty":          {"\n", 0o600},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "demo-secret")
			if err := os.WriteFile(p, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, tc.mode)
			if _, _, err := Bootstrap(dir, noEnv); err == nil {
				t.Errorf("Bootstrap accepted a %s secret file", name)
			}
		})
	}
}

func TestKeyringModeProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.yaml")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := KeyringModeProblem(path); got != "" {
		t.Errorf("mode 0600: %q, want no problem", got)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := KeyringModeProblem(path); !strings.Contains(got, "0644") {
		t.Errorf("mode 0644: %q, want the mode named", got)
	}
}
