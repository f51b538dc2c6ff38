package vault

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckValues(t *testing.T) {
	f := NewKeyringFile()
	k := mustKeyring(t, f)
	again := mustKeyring(t, f)
	got, want := k.CheckValues(), again.CheckValues()
	if len(got) != 2 || got[FingerprintCheckName] == nil || got[DataKeyCheckName(1)] == nil {
		t.Fatalf("CheckValues = %d values %v, want the fingerprint key's and version 1's", len(got), got)
	}
	for name := range want {
		if !bytes.Equal(got[name], want[name]) {
			t.Errorf("CheckValues()[%s] differs between two keyrings built from one file", name)
		}
	}
	// Another key under the same version gives another value.
	other := f
	other.DataKeys = map[uint32]string{1: randomKey()}
	if bytes.Equal(mustKeyring(t, other).CheckValues()[DataKeyCheckName(1)], got[DataKeyCheckName(1)]) {
		t.Error("two different version 1 keys have one check value")
	}
	// The map is a copy.
	got[FingerprintCheckName][0] ^= 1
	if bytes.Equal(k.CheckValues()[FingerprintCheckName], got[FingerprintCheckName]) {
		t.Error("CheckValues returned the keyring's own slice")
	}
}

func TestDeriveKey(t *testing.T) {
	f := NewKeyringFile()
	k := mustKeyring(t, f)
	a := k.DeriveKey("audit chain v1")
	if len(a) != KeySize || !bytes.Equal(a, mustKeyring(t, f).DeriveKey("audit chain v1")) {
		t.Fatalf("DeriveKey is not a stable 32-byte key")
	}
	if bytes.Equal(a, k.DeriveKey("other")) {
		t.Error("two purposes derive one key")
	}
	f.Rotate() // data keys do not enter it
	if !bytes.Equal(a, mustKeyring(t, f).DeriveKey("audit chain v1")) {
		t.Error("a rotation changed the derived key")
	}
	if bytes.Equal(a, mustKeyring(t, NewKeyringFile()).DeriveKey("audit chain v1")) {
		t.Error("another fingerprint key derived the same key")
	}
}

func TestLockKeyringFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.yaml")
	unlock, err := LockKeyringFile(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder is refused once the wait is over (a zero wait: at once).
	if _, err := LockKeyringFile(path, 0); err == nil || !strings.Contains(err.Error(), "another tok keys command") {
		t.Errorf("second LockKeyringFile = %v, want a refusal naming the holder", err)
	}
	unlock()
	unlock2, err := LockKeyringFile(path, 0)
	if err != nil {
		t.Fatalf("LockKeyringFile after unlock: %v", err)
	}
	unlock2()
}
