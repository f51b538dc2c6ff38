package vault

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func mustKeyring(t testing.TB, f KeyringFile) *Keyring {
	t.Helper()
	k, err := NewKeyring(f)
	if err != nil {
		t.Fatalf("NewKeyring: %v", err)
	}
	return k
}

func TestNewKeyringFile(t *testing.T) {
	a, b := NewKeyringFile(), NewKeyringFile()
	if a.Primary != 1 || len(a.DataKeys) != 1 || a.DataKeys[1] == "" {
		t.Fatalf("NewKeyringFile() = primary %d with %d data keys, want primary 1 with key 1", a.Primary, len(a.DataKeys))
	}
	for name, s := range map[string]string{"fingerprint_key": a.FingerprintKey, "data_keys[1]": a.DataKeys[1]} {
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != KeySize {
			t.Errorf("%s: %d bytes, %v, want %d bytes of base64", name, len(raw), err, KeySize)
		}
	}
	if a.FingerprintKey == b.FingerprintKey || a.DataKeys[1] == b.DataKeys[1] {
		t.Errorf("two fresh keyrings share a key")
	}
	if a.FingerprintKey == a.DataKeys[1] {
		t.Errorf("fingerprint key equals the data key")
	}
	mustKeyring(t, a)
}

func TestKeyringFileRoundTrip(t *testing.T) {
	f := NewKeyringFile()
	f.Rotate()
	f.Rotate()
	b, err := f.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("#")) {
		t.Errorf("Marshal output does not start with the warning comment:\n%s", b)
	}
	got, err := ParseKeyringFile(b)
	if err != nil {
		t.Fatalf("ParseKeyringFile(Marshal()) error: %v", err)
	}
	if !reflect.DeepEqual(got, f) {
		t.Errorf("ParseKeyringFile(Marshal(f)) = %+v, want %+v", got, f)
	}
}

func TestParseKeyringFileRejects(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, KeySize))
	tests := []struct{ name, yaml string }{
		{"unknown key", "primary: 1\nfingerprint_key: " + key + "\ndata_keys: {1: " + key + "}\nextra: 1\n"},
		{"typo", "primary: 1\nfingerprint_keys: " + key + "\ndata_keys: {1: " + key + "}\n"},
		{"negative version", "primary: 1\nfingerprint_key: " + key + "\ndata_keys: {-1: " + key + "}\n"},
		{"not a mapping", "- 1\n- 2\n"},
		{"empty", ""},
		{"bad yaml", "primary: [\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f, err := ParseKeyringFile([]byte(tt.yaml)); err == nil {
				t.Errorf("ParseKeyringFile(%q) = %+v, want error", tt.yaml, f)
			}
		})
	}
}

// TestNewKeyringErrors checks that every problem is reported at once and
// that no key material reaches the error.
func TestNewKeyringErrors(t *testing.T) {
	good := NewKeyringFile()
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	f := KeyringFile{
		Primary:        3,
		FingerprintKey: "not base64!!" + good.FingerprintKey,
		DataKeys:       map[uint32]string{1: good.DataKeys[1], 2: short},
	}
	k, err := NewKeyring(f)
	if err == nil {
		t.Fatalf("NewKeyring(bad) = %v, want error", k)
	}
	msg := err.Error()
	for _, want := range []string{"fingerprint_key", "base64", "data_keys[2]", "16 bytes", "primary", "version 3"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NewKeyring error %q does not mention %q", msg, want)
		}
	}
	for _, secret := range []string{good.FingerprintKey, good.DataKeys[1], short} {
		if strings.Contains(msg, secret) {
			t.Errorf("NewKeyring error contains key material: %q", msg)
		}
	}

	for name, f := range map[string]KeyringFile{
		"zero value":        {},
		"no data keys":      {Primary: 1, FingerprintKey: good.FingerprintKey},
		"long key":          {Primary: 1, FingerprintKey: good.FingerprintKey, DataKeys: map[uint32]string{1: base64.StdEncoding.EncodeToString(make([]byte, 33))}},
		"url base64":        {Primary: 1, FingerprintKey: strings.NewReplacer("+", "-", "/", "_").Replace(good.FingerprintKey) + "-_", DataKeys: good.DataKeys},
		"missing primary 0": {Primary: 0, FingerprintKey: good.FingerprintKey, DataKeys: good.DataKeys},
	} {
		if _, err := NewKeyring(f); err == nil {
			t.Errorf("NewKeyring(%s) succeeded, want error", name)
		}
	}
}

func TestSealOpen(t *testing.T) {
	k := mustKeyring(t, NewKeyringFile())
	const token, pan = "4111114821931111", "4111111111111111"
	v, ct := k.Seal(token, pan)
	if v != 1 {
		t.Errorf("Seal version = %d, want 1", v)
	}
	if want := nonceSize + len(pan) + 16; len(ct) != want {
		t.Errorf("len(Seal()) = %d, want %d", len(ct), want)
	}
	if bytes.Contains(ct, []byte(pan)) || bytes.Contains(ct, []byte(pan[6:12])) {
		t.Errorf("ciphertext contains plaintext digits")
	}
	got, err := k.Open(v, token, ct)
	if err != nil || got != pan {
		t.Fatalf("Open(Seal()) = %q, %v, want the PAN", Mask(got), err)
	}
	_, ct2 := k.Seal(token, pan)
	if bytes.Equal(ct[:nonceSize], ct2[:nonceSize]) || bytes.Equal(ct, ct2) {
		t.Errorf("two seals of the same value share a nonce or ciphertext")
	}

	// The token is the associated data: a record moved to another token
	// must not decrypt.
	for _, other := range []string{"4111114821931112", "", token + "0", token[:15]} {
		if got, err := k.Open(v, other, ct); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Open with token %q = %q, %v, want ErrDecrypt", other, Mask(got), err)
		}
	}
}

func TestOpenTampered(t *testing.T) {
	k := mustKeyring(t, NewKeyringFile())
	const token = "tok_0123456789abcdefABCDEF"
	v, ct := k.Seal(token, "4111111111111111")
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if got, err := k.Open(v, token, bad); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open with byte %d flipped = %q, %v, want ErrDecrypt", i, Mask(got), err)
		}
	}
	for n := 0; n < len(ct); n++ {
		if got, err := k.Open(v, token, ct[:n]); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Open of %d-byte prefix = %q, %v, want ErrDecrypt", n, Mask(got), err)
		}
	}
	if _, err := k.Open(v, token, append(bytes.Clone(ct), 0)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open with a trailing byte: %v, want ErrDecrypt", err)
	}
	if _, err := k.Open(v, token, nil); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open(nil): %v, want ErrDecrypt", err)
	}
	if _, err := k.Open(v+1, token, ct); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open with version %d: %v, want ErrUnknownKey", v+1, err)
	}
	if _, err := k.Open(0, token, ct); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Open with version 0: %v, want ErrUnknownKey", err)
	}
}

func TestRotate(t *testing.T) {
	f := NewKeyringFile()
	k1 := mustKeyring(t, f)
	const token, pan = "5552131234561777", seedPAN
	v1, ct1 := k1.Seal(token, pan)

	if got := f.Rotate(); got != 2 {
		t.Fatalf("Rotate() = %d, want 2", got)
	}
	if f.Primary != 2 || len(f.DataKeys) != 2 || f.DataKeys[1] == f.DataKeys[2] {
		t.Fatalf("after Rotate: primary %d, %d keys", f.Primary, len(f.DataKeys))
	}
	k2 := mustKeyring(t, f)
	if k2.Primary() != 2 {
		t.Errorf("Primary() = %d, want 2", k2.Primary())
	}
	if got := k2.Versions(); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("Versions() = %v, want [1 2]", got)
	}
	// A Keyring is a snapshot: rotating the file it was built from must not
	// change what it reports.
	if got := k1.Versions(); !slices.Equal(got, []uint32{1}) {
		t.Errorf("old keyring Versions() = %v after rotating its file, want [1]", got)
	}
	if got, err := k2.Open(v1, token, ct1); err != nil || got != pan {
		t.Errorf("rotated keyring Open(old record) = %q, %v, want the PAN", Mask(got), err)
	}
	v2, ct2 := k2.Seal(token, pan)
	if v2 != 2 {
		t.Errorf("Seal after rotation used version %d, want 2", v2)
	}
	if _, err := k1.Open(v2, token, ct2); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("old keyring Open(version 2): %v, want ErrUnknownKey", err)
	}
	// Another version's key must not open the record.
	if _, err := k2.Open(1, token, ct2); !errors.Is(err, ErrDecrypt) {
		t.Errorf("Open(version 1) of a version 2 record: %v, want ErrDecrypt", err)
	}
	if !bytes.Equal(k1.Fingerprint("pan:6:4", pan), k2.Fingerprint("pan:6:4", pan)) {
		t.Errorf("rotation changed the fingerprint: convergence would break")
	}

	// Versions above a gap, and a file with no data keys.
	g := KeyringFile{DataKeys: map[uint32]string{1: "a", 5: "b"}}
	if got := g.Rotate(); got != 6 || g.Primary != 6 {
		t.Errorf("Rotate over versions {1, 5} = %d (primary %d), want 6", got, g.Primary)
	}
	var empty KeyringFile
	if got := empty.Rotate(); got != 1 || len(empty.DataKeys) != 1 {
		t.Errorf("Rotate on an empty file = %d with %d keys, want 1 with 1", got, len(empty.DataKeys))
	}
}

func TestFingerprint(t *testing.T) {
	f := NewKeyringFile()
	k := mustKeyring(t, f)
	const pan = "4111111111111111"
	fp := k.Fingerprint("pan:6:4", pan)
	if len(fp) != sha256.Size {
		t.Fatalf("len(Fingerprint) = %d, want %d", len(fp), sha256.Size)
	}
	if !bytes.Equal(fp, k.Fingerprint("pan:6:4", pan)) {
		t.Errorf("Fingerprint is not deterministic")
	}
	key, _ := base64.StdEncoding.DecodeString(f.FingerprintKey)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("pan:6:4\x00" + pan))
	if want := mac.Sum(nil); !bytes.Equal(fp, want) {
		t.Errorf("Fingerprint = %x, want HMAC-SHA256(key, domain||0||value) = %x", fp, want)
	}
	// Never a bare hash, which could be brute-forced over the PAN space.
	for _, bare := range [][]byte{[]byte(pan), []byte("pan:6:4\x00" + pan), []byte("pan:6:4" + pan)} {
		if h := sha256.Sum256(bare); bytes.Equal(fp, h[:]) {
			t.Errorf("Fingerprint is a bare SHA-256 of %q", bare)
		}
	}

	other := NewKeyringFile()
	other.DataKeys = f.DataKeys // same data keys, different fingerprint key
	if bytes.Equal(fp, mustKeyring(t, other).Fingerprint("pan:6:4", pan)) {
		t.Errorf("Fingerprint does not depend on the fingerprint key")
	}
	sameFP := NewKeyringFile()
	sameFP.FingerprintKey = f.FingerprintKey // different data keys only
	if !bytes.Equal(fp, mustKeyring(t, sameFP).Fingerprint("pan:6:4", pan)) {
		t.Errorf("Fingerprint depends on the data keys")
	}

	// Domain separation: the domain and the value cannot slide into each other.
	distinct := map[string][2]string{}
	for _, dv := range [][2]string{
		{"pan:6:4", pan},
		{"pan:6:0", pan},
		{"digits", pan},
		{"opaque", pan},
		{"pan:6:4", "4111111111111112"},
		{"ab", "c"},
		{"a", "bc"},
		{"abc", ""},
		{"", "abc"},
	} {
		s := string(k.Fingerprint(dv[0], dv[1]))
		if prev, ok := distinct[s]; ok {
			t.Errorf("Fingerprint(%q, %q) = Fingerprint(%q, %q)", dv[0], Mask(dv[1]), prev[0], Mask(prev[1]))
		}
		distinct[s] = dv
	}
}

// TestKeyringConcurrent runs under -race: the keyring is shared by every
// request.
func TestKeyringConcurrent(t *testing.T) {
	k := mustKeyring(t, NewKeyringFile())
	want := k.Fingerprint("pan:6:4", seedPAN)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if got := k.Fingerprint("pan:6:4", seedPAN); !bytes.Equal(got, want) {
					t.Errorf("goroutine %d: Fingerprint changed", g)
					return
				}
				tok := Spec{}.newToken(seedPAN)
				v, ct := k.Seal(tok, seedPAN)
				if got, err := k.Open(v, tok, ct); err != nil || got != seedPAN {
					t.Errorf("goroutine %d, iteration %d: Open(Seal()) = %q, %v", g, i, Mask(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := k.Sealed(1); got != 8*200 {
		t.Errorf("Sealed(1) = %d, want %d", got, 8*200)
	}
}

func TestSealed(t *testing.T) {
	f := NewKeyringFile()
	f.Rotate()
	k := mustKeyring(t, f)
	for range 3 {
		k.Seal("123456", "123")
	}
	if got := k.Sealed(2); got != 3 {
		t.Errorf("Sealed(2) = %d, want 3", got)
	}
	if got := k.Sealed(1); got != 0 {
		t.Errorf("Sealed(1) = %d, want 0 (not primary)", got)
	}
	if got := k.Sealed(99); got != 0 {
		t.Errorf("Sealed(99) = %d, want 0", got)
	}
}

func TestWriteKeyringFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.yaml")
	f := NewKeyringFile()
	if err := WriteKeyringFile(path, f, false); err != nil {
		t.Fatalf("WriteKeyringFile: %v", err)
	}
	checkMode(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseKeyringFile(b); err != nil || !reflect.DeepEqual(got, f) {
		t.Errorf("ParseKeyringFile(written file) = %+v, %v, want %+v", got, err, f)
	}

	g := NewKeyringFile()
	if err := WriteKeyringFile(path, g, false); !errors.Is(err, os.ErrExist) {
		t.Errorf("WriteKeyringFile over an existing file: %v, want os.ErrExist", err)
	}
	if b2, _ := os.ReadFile(path); !bytes.Equal(b, b2) {
		t.Errorf("a refused write changed the file")
	}
	if err := WriteKeyringFile(path, g, true); err != nil {
		t.Fatalf("WriteKeyringFile(overwrite): %v", err)
	}
	checkMode(t, path)
	b, _ = os.ReadFile(path)
	if got, err := ParseKeyringFile(b); err != nil || !reflect.DeepEqual(got, g) {
		t.Errorf("after overwrite the file holds %+v, %v, want %+v", got, err, g)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after writing, want only the keyring", len(entries))
	}

	if err := WriteKeyringFile(filepath.Join(dir, "missing", "keyring.yaml"), f, false); err == nil {
		t.Errorf("WriteKeyringFile into a missing directory succeeded")
	}
}

// TestWriteKeyringFileStaleTemp: a leftover world-readable temporary file
// (a crash, or another user's planted file) must not give the keyring its
// permissions.
func TestWriteKeyringFileStaleTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.yaml")
	if err := os.WriteFile(path+".tmp", []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path+".tmp", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyringFile(path, NewKeyringFile(), false); err != nil {
		t.Fatalf("WriteKeyringFile: %v", err)
	}
	checkMode(t, path)
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("%s has mode %v, want 0600", filepath.Base(path), m)
	}
}
