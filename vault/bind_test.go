package vault_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// swapFingerprints rewrites the records of tokens a and b with each
// other's fingerprints, as someone editing the store would.
func swapFingerprints(t *testing.T, s vault.Store, a, b string) {
	t.Helper()
	ctx := context.Background()
	ra, err := s.Get(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Get(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{a, b} {
		if err := s.Delete(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	ra.Fingerprint, rb.Fingerprint = rb.Fingerprint, ra.Fingerprint
	if _, err := s.Insert(ctx, []vault.Record{ra, rb}); err != nil {
		t.Fatal(err)
	}
}

// TestFindRefusesSwappedFingerprint: after two records' fingerprints are
// swapped in the store, tokenizing one card must not hand out the other
// card's token (another BIN), for new (version 2) and old (version 1)
// records alike; both tokens then fail to reveal, as tampered records.
func TestFindRefusesSwappedFingerprint(t *testing.T) {
	const panA, panB = "4111111111111111", "5555555555554444"
	ctx := context.Background()
	for _, version := range []uint8{vault.RecordV1, vault.RecordV2} {
		f := newFixture(t)
		var toks []string
		if version == vault.RecordV2 {
			toks = f.tokenize(t, pan(panA), pan(panB))
		} else {
			for _, p := range []string{panA, panB} {
				toks = append(toks, insertV1(t, f.durable, f.keys, p, p[:6]+"000000"+p[12:]))
			}
		}
		swapFingerprints(t, f.durable, toks[0], toks[1])
		got, err := f.v.Tokenize(ctx, []vault.Request{pan(panA)})
		if !errors.Is(err, vault.ErrMismatch) {
			t.Errorf("version %d: Tokenize(card A) after the swap = %v, %v; want ErrMismatch, not card B's token %s", version, got, err, toks[1])
		}
		if version == vault.RecordV2 {
			if _, err := f.v.Reveal(ctx, toks[0]); !errors.Is(err, vault.ErrDecrypt) {
				t.Errorf("Reveal of a record whose fingerprint was changed = %v, want ErrDecrypt", err)
			}
		}
	}
}

// insertV1 stores a version 1 record (token-only associated data), as tok
// wrote before records were bound to their fingerprint, and returns its
// token.
func insertV1(t *testing.T, s vault.Store, keys *vault.Keyring, pan, token string) string {
	t.Helper()
	kid, ct := keys.Seal(token, pan)
	rec := vault.Record{Token: token, KeyID: kid, Ciphertext: ct, Fingerprint: keys.Fingerprint("pan:6:4", pan),
		Created: time.Now(), Format: vault.FormatPAN, Version: vault.RecordV1}
	if _, err := s.Insert(context.Background(), []vault.Record{rec}); err != nil {
		t.Fatal(err)
	}
	return token
}

// TestRekeyUpgradesRecordVersion: a rekey reseals version 1 records under
// the same primary key at version 2, after which they still reveal and
// converge, and a changed fingerprint makes them fail to open.
func TestRekeyUpgradesRecordVersion(t *testing.T) {
	ctx := context.Background()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(store, keys)
	if err != nil {
		t.Fatal(err)
	}
	const p = "4111111111111111"
	tok := insertV1(t, store, keys, p, "411111000000"+"1111")
	n := 0
	for after := ""; ; {
		next, c, err := v.Rekey(ctx, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		n += c
		if next == "" {
			break
		}
		after = next
	}
	if n != 1 {
		t.Errorf("Rekey resealed %d records, want 1 (the version 1 record)", n)
	}
	rec, err := store.Get(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Version != vault.RecordV2 || rec.KeyID != keys.Primary() {
		t.Errorf("after the rekey the record is version %d under key %d; want %d under %d", rec.Version, rec.KeyID, vault.RecordV2, keys.Primary())
	}
	if rv, err := v.Reveal(ctx, tok); err != nil || rv.Value != p {
		t.Errorf("Reveal after the upgrade = %s, %v", vault.Mask(rv.Value), err)
	}
	if got, err := v.Tokenize(ctx, []vault.Request{pan(p)}); err != nil || got[0] != tok {
		t.Errorf("Tokenize after the upgrade = %v, %v; want the same token %s", got, err, tok)
	}
	// A second rekey has nothing left to do.
	if _, c, err := v.Rekey(ctx, "", 10); err != nil || c != 0 {
		t.Errorf("second Rekey resealed %d, %v; want 0", c, err)
	}
}
