package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"
)

// KeySize is the size of every key in a keyring: AES-256 data keys and the
// HMAC-SHA256 fingerprint key.
const KeySize = 32

// nonceSize is AES-GCM's standard 96-bit nonce.
const nonceSize = 12

// KeyringFile is the on-disk (and TOK_KEYRING) form of a keyring. Keys are
// standard base64 of 32 random bytes.
type KeyringFile struct {
	Primary        uint32            `yaml:"primary"`
	FingerprintKey string            `yaml:"fingerprint_key"`
	DataKeys       map[uint32]string `yaml:"data_keys"`
}

// Keyring holds the versioned AES-256-GCM data keys (one primary, used for
// new records) and the HMAC key for fingerprints. It lives outside the store.
// A Keyring is safe for concurrent use; its AEADs are built once.
type Keyring struct {
	primary uint32
	aeads   map[uint32]cipher.AEAD
	// checks are the key check values (see CheckValues), computed once.
	checks map[string][]byte
	// fpKey is the fingerprint key, kept to derive keys from (DeriveKey).
	fpKey []byte
	macs  sync.Pool // of hash.Hash (HMAC-SHA256 under the fingerprint key)
	// sealed counts encryptions per key version in this process.
	sealed map[uint32]*atomic.Uint64
	// sealWarnEvery and onSealMilestone: see SetSealWarning.
	sealWarnEvery   uint64
	onSealMilestone func(version uint32, sealed uint64)
}

// SetSealWarning makes Seal call fn each time this process's encryptions
// under one version reach a multiple of every (the default is
// [SealWarnInterval], logging a warning with slog's default logger). Call
// it before the keyring is shared; tests use a tiny every.
func (k *Keyring) SetSealWarning(every uint64, fn func(version uint32, sealed uint64)) {
	k.sealWarnEvery, k.onSealMilestone = max(every, 1), fn
}

// warnSealed is the default seal milestone: a warning to rotate.
func warnSealed(version uint32, sealed uint64) {
	slog.Warn("many encryptions under one data key: rotate the keyring (tok keys rotate, then SIGHUP and a rekey)",
		"version", version, "sealed_by_this_process", sealed, "nonce_limit", uint64(NonceLimit))
}

// CarrySealed adds old's per-version encryption counts to k's for the
// versions both hold, so that a reloaded keyring keeps counting where the
// last one stopped. Call it before k is shared.
func (k *Keyring) CarrySealed(old *Keyring) {
	if old == nil {
		return
	}
	for v, c := range k.sealed {
		if o := old.sealed[v]; o != nil {
			c.Add(o.Load())
		}
	}
}

// NewKeyringFile returns a fresh keyring with one data key (version 1).
func NewKeyringFile() KeyringFile {
	return KeyringFile{
		Primary:        1,
		FingerprintKey: randomKey(),
		DataKeys:       map[uint32]string{1: randomKey()},
	}
}

func randomKey() string {
	k := make([]byte, KeySize)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// Rotate adds a data key version one above the highest and makes it primary.
// It returns the new version.
func (f *KeyringFile) Rotate() uint32 {
	next := uint32(1)
	for v := range f.DataKeys {
		next = max(next, v+1)
	}
	if f.DataKeys == nil {
		f.DataKeys = map[uint32]string{}
	}
	f.DataKeys[next] = randomKey()
	f.Primary = next
	return next
}

// Marshal returns the YAML form of f.
func (f KeyringFile) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(f)
	if err != nil {
		return nil, err
	}
	return append([]byte("# tok keyring: secret. Keep it outside the vault's backups, mode 0600.\n"), b...), nil
}

// ParseKeyringFile decodes a keyring from YAML, rejecting unknown keys.
func ParseKeyringFile(b []byte) (KeyringFile, error) {
	var f KeyringFile
	if err := decodeStrict(b, &f); err != nil {
		return f, fmt.Errorf("parse keyring: %w", err)
	}
	return f, nil
}

// WriteKeyringFile writes f to path with mode 0600, failing if path exists
// unless overwrite is set. The write goes through a temporary file and a
// rename so a crash never leaves a half-written keyring.
func WriteKeyringFile(path string, f KeyringFile, overwrite bool) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	if !overwrite {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("write keyring %q: %w", path, os.ErrExist)
		}
	}
	// CreateTemp makes a new file with mode 0600 (O_EXCL): reusing a fixed
	// name with O_TRUNC would keep the mode of a stale file left there.
	w, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	tmp := w.Name()
	_, err = w.Write(b)
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil:
	case overwrite:
		err = os.Rename(tmp, path)
	default:
		// Link refuses an existing name atomically: of two processes
		// creating a keyring at once, one wins and the other fails
		// instead of silently replacing the winner's keys.
		err = os.Link(tmp, path)
	}
	os.Remove(tmp) // after a rename this is a no-op; after a link, the spare name
	if err != nil {
		return fmt.Errorf("write keyring %q: %w", path, err)
	}
	return nil
}

// NewKeyring builds the ciphers of f. It checks that every key is 32 bytes
// and that the primary version exists.
func NewKeyring(f KeyringFile) (*Keyring, error) {
	var errs []error
	fp, err := decodeKey(f.FingerprintKey)
	if err != nil {
		errs = append(errs, fmt.Errorf("fingerprint_key: %w", err))
	}
	k := &Keyring{primary: f.Primary, aeads: map[uint32]cipher.AEAD{}, sealed: map[uint32]*atomic.Uint64{},
		sealWarnEvery: SealWarnInterval, onSealMilestone: warnSealed, checks: map[string][]byte{}}
	for _, v := range slices.Sorted(maps.Keys(f.DataKeys)) {
		raw, err := decodeKey(f.DataKeys[v])
		if err != nil {
			errs = append(errs, fmt.Errorf("data_keys[%d]: %w", v, err))
			continue
		}
		block, _ := aes.NewCipher(raw) // 32 bytes: cannot fail
		aead, _ := cipher.NewGCM(block)
		k.aeads[v] = aead
		k.sealed[v] = new(atomic.Uint64)
		k.checks[DataKeyCheckName(v)] = checkValue(raw)
	}
	if _, ok := f.DataKeys[f.Primary]; !ok {
		errs = append(errs, fmt.Errorf("primary: version %d is not in data_keys", f.Primary))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k.macs.New = func() any { return hmac.New(sha256.New, fp) }
	k.fpKey = fp
	k.checks[FingerprintCheckName] = checkValue(fp)
	return k, nil
}

func decodeKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not valid base64")
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), KeySize)
	}
	return b, nil
}

// Primary returns the version new records are encrypted under.
func (k *Keyring) Primary() uint32 { return k.primary }

// Versions returns the data key versions, ascending.
// It reads the ciphers built by [NewKeyring], never the file's map, which
// the caller may go on changing (KeyringFile.Rotate).
func (k *Keyring) Versions() []uint32 { return slices.Sorted(maps.Keys(k.aeads)) }

// Sealed returns how many values this process has encrypted under version v.
func (k *Keyring) Sealed(v uint32) uint64 {
	if c := k.sealed[v]; c != nil {
		return c.Load()
	}
	return 0
}

// Fingerprint returns HMAC-SHA256(fingerprint key, domain || 0 || value).
// It is keyed: a bare hash of a PAN can be brute-forced.
func (k *Keyring) Fingerprint(domain, value string) []byte {
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(domain))
	h.Write([]byte{0})
	h.Write([]byte(value))
	sum := h.Sum(make([]byte, 0, sha256.Size))
	k.macs.Put(h)
	return sum
}

// Seal encrypts value under the primary key with a random nonce and the
// token as associated data (the [RecordV1] form; new records use
// [Keyring.SealRecord]), and returns the key version and nonce||ciphertext.
func (k *Keyring) Seal(token, value string) (uint32, []byte) {
	aead := k.aeads[k.primary]
	out := make([]byte, nonceSize, nonceSize+len(value)+aead.Overhead())
	rand.Read(out)
	out = aead.Seal(out, out[:nonceSize], []byte(value), []byte(token))
	if n := k.sealed[k.primary].Add(1); n%k.sealWarnEvery == 0 && k.onSealMilestone != nil {
		k.onSealMilestone(k.primary, n)
	}
	return k.primary, out
}

// SealRecord encrypts value for r under the primary key at
// [RecordVersion], or at [RecordV3] if r has a reveal policy: it sets
// r.KeyID, r.Version and r.Ciphertext, binding r's token, format, expiry,
// fingerprint and policy (set them first) as the associated data.
func (k *Keyring) SealRecord(r *Record, value string) {
	r.KeyID, r.Version = k.primary, RecordVersion
	if !r.Policy.IsZero() {
		r.Version = RecordV3
	}
	aead := k.aeads[k.primary]
	out := make([]byte, nonceSize, nonceSize+len(value)+aead.Overhead())
	rand.Read(out)
	r.Ciphertext = aead.Seal(out, out[:nonceSize], []byte(value), r.AssociatedData())
	if n := k.sealed[k.primary].Add(1); n%k.sealWarnEvery == 0 && k.onSealMilestone != nil {
		k.onSealMilestone(k.primary, n)
	}
}

// OpenRecord decrypts r's ciphertext with the associated data of its
// version ([Record.AssociatedData]): a record whose token, or (from
// RecordV2) format, key id, expiry or fingerprint, or (RecordV3) reveal
// policy was changed in the store fails with [ErrDecrypt].
func (k *Keyring) OpenRecord(r Record) (string, error) {
	aead, ok := k.aeads[r.KeyID]
	if !ok {
		return "", fmt.Errorf("%w: %d", ErrUnknownKey, r.KeyID)
	}
	ct := r.Ciphertext
	if len(ct) < nonceSize+aead.Overhead() {
		return "", ErrDecrypt
	}
	pt, err := aead.Open(nil, ct[:nonceSize], ct[nonceSize:], r.AssociatedData())
	if err != nil {
		return "", ErrDecrypt
	}
	return string(pt), nil
}

// Open decrypts a RecordV1 ciphertext. A record moved to another token fails
// authentication, because the token is the associated data.
func (k *Keyring) Open(version uint32, token string, ct []byte) (string, error) {
	aead, ok := k.aeads[version]
	if !ok {
		return "", fmt.Errorf("%w: %d", ErrUnknownKey, version)
	}
	if len(ct) < nonceSize+aead.Overhead() {
		return "", ErrDecrypt
	}
	pt, err := aead.Open(nil, ct[:nonceSize], ct[nonceSize:], []byte(token))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(pt), nil
}

// Key check values: a vault records, per data key
// version and for the fingerprint key, HMAC-SHA256(key, checkLabel), and
// refuses a keyring whose keys give other values. The value proves which
// key was used without revealing it (HMAC is a PRF).
const checkLabel = "tok key check value v1"

// FingerprintCheckName is the name of the fingerprint key's check value.
const FingerprintCheckName = "fingerprint"

// DataKeyCheckName is the name of data key version v's check value.
func DataKeyCheckName(v uint32) string { return "data:" + strconv.FormatUint(uint64(v), 10) }

func checkValue(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(checkLabel))
	return m.Sum(nil)
}

// CheckValues returns the key check value of every key in k, by name
// ([FingerprintCheckName], [DataKeyCheckName]). The map and its values
// are copies.
func (k *Keyring) CheckValues() map[string][]byte {
	out := make(map[string][]byte, len(k.checks))
	for name, v := range k.checks {
		out[name] = bytes.Clone(v)
	}
	return out
}

// DeriveKey returns a 32-byte key for purpose, derived from the
// fingerprint key (HMAC-SHA256(fingerprint key, "\xfftok derive\x00" ||
// purpose)). The fingerprint key never rotates and its check value pins it
// to the vault, so a derived key is stable for the vault's life; whoever
// lacks the keyring cannot compute it. The audit log's chain key is one.
func (k *Keyring) DeriveKey(purpose string) []byte {
	m := hmac.New(sha256.New, k.fpKey)
	// 0xff never starts a fingerprint's domain (ASCII), so no derived key
	// equals a fingerprint.
	m.Write([]byte("\xfftok derive\x00"))
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func decodeStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	return dec.Decode(v)
}
