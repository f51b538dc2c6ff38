package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// testResealUpgrade: Reseal moves a version 1 record to version 2 under
// the same key id (the rekey's upgrade), once: a second upgrade
// from the same key id, or one of a record already at version 2, does
// nothing.
func testResealUpgrade(t *testing.T, s vault.Store) {
	ctx := context.Background()
	keys := keyring(t)
	pan := newPAN()
	rec := newRecord(keys, pan, false)
	rec.Version = vault.RecordV1
	mustInsert(t, s, rec)
	next := rec
	keys.SealRecord(&next, pan)
	if next.KeyID != rec.KeyID {
		t.Fatalf("test keyring: primary %d, record under %d", next.KeyID, rec.KeyID)
	}
	if ok, err := s.Reseal(ctx, vault.Record{Token: rec.Token, KeyID: next.KeyID, Ciphertext: next.Ciphertext, Version: next.Version}, rec.KeyID); err != nil || !ok {
		t.Fatalf("Reseal (version 1 to 2 under key %d) = %v, %v; want true", rec.KeyID, ok, err)
	}
	got, err := s.Get(ctx, rec.Token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != vault.RecordV2 {
		t.Errorf("Version after the upgrade = %d, want %d", got.Version, vault.RecordV2)
	}
	if v, err := keys.OpenRecord(got); err != nil || v != pan {
		t.Errorf("OpenRecord after the upgrade: %v", err)
	}
	again := next
	keys.SealRecord(&again, pan)
	if ok, err := s.Reseal(ctx, vault.Record{Token: rec.Token, KeyID: again.KeyID, Ciphertext: again.Ciphertext, Version: again.Version}, rec.KeyID); err != nil || ok {
		t.Errorf("second upgrade Reseal = %v, %v; want false", ok, err)
	}
	wantGet(t, s, got)
}

// testKeyChecks runs stores that keep key check values (vault.KeyCheckStore)
// through record, keep-first, delete and VerifyKeyring's refusals.
func testKeyChecks(t *testing.T, s vault.Store) {
	ks, ok := s.(vault.KeyCheckStore)
	if !ok {
		t.Skip("the store keeps no key check values")
	}
	ctx := context.Background()
	if got, err := ks.KeyChecks(ctx); err != nil || len(got) != 0 {
		t.Fatalf("KeyChecks of a new store = %v, %v; want none", got, err)
	}
	a, b := []byte("value a"), []byte("value b")
	got, err := ks.AddKeyChecks(ctx, map[string][]byte{"data:1": a, "fingerprint": b})
	if err != nil || len(got) != 2 || !bytes.Equal(got["data:1"], a) || !bytes.Equal(got["fingerprint"], b) {
		t.Fatalf("AddKeyChecks = %q, %v; want both", got, err)
	}
	// A recorded value is never replaced.
	got, err = ks.AddKeyChecks(ctx, map[string][]byte{"data:1": b, "data:2": a})
	if err != nil || !bytes.Equal(got["data:1"], a) || !bytes.Equal(got["data:2"], a) || len(got) != 3 {
		t.Fatalf("AddKeyChecks over a recorded name = %q, %v; want the first value kept and data:2 added", got, err)
	}
	if err := ks.DeleteKeyCheck(ctx, "data:2"); err != nil {
		t.Fatal(err)
	}
	if err := ks.DeleteKeyCheck(ctx, "data:9"); err != nil {
		t.Errorf("DeleteKeyCheck of an absent name: %v", err)
	}
	if got, err := ks.KeyChecks(ctx); err != nil || len(got) != 2 || got["data:2"] != nil {
		t.Errorf("KeyChecks after a delete = %q, %v", got, err)
	}
	for _, name := range []string{"data:1", "fingerprint"} {
		if err := ks.DeleteKeyCheck(ctx, name); err != nil {
			t.Fatal(err)
		}
	}

	// VerifyKeyring: the first keyring is recorded, a rotation adds its
	// version, and a foreign keyring or one lacking a version is refused.
	f := vault.NewKeyringFile()
	k1, _ := vault.NewKeyring(f)
	if err := vault.VerifyKeyring(ctx, s, k1); err != nil {
		t.Fatalf("VerifyKeyring on a new vault: %v", err)
	}
	stale := f
	stale.DataKeys = map[uint32]string{1: f.DataKeys[1]}
	f.Rotate()
	k2, _ := vault.NewKeyring(f)
	if err := vault.VerifyKeyring(ctx, s, k2); err != nil {
		t.Fatalf("VerifyKeyring after a rotation: %v", err)
	}
	stale.Rotate() // another key under version 2
	k2stale, _ := vault.NewKeyring(stale)
	if err := vault.VerifyKeyring(ctx, s, k2stale); !errors.Is(err, vault.ErrKeyCheck) {
		t.Errorf("VerifyKeyring(stale copy rotated to another version 2) = %v; want ErrKeyCheck", err)
	}
	if k, _ := vault.NewKeyring(vault.NewKeyringFile()); vault.VerifyKeyring(ctx, s, k) == nil {
		t.Error("VerifyKeyring(a foreign keyring) passed")
	}
	lacking := f
	lacking.DataKeys = map[uint32]string{2: f.DataKeys[2]}
	k3, _ := vault.NewKeyring(lacking)
	if err := vault.VerifyKeyring(ctx, s, k3); !errors.Is(err, vault.ErrKeyCheck) {
		t.Errorf("VerifyKeyring(keyring lacking version 1) = %v; want ErrKeyCheck", err)
	}
	if err := vault.ForgetKeyVersion(ctx, s, 1); err != nil {
		t.Fatal(err)
	}
	if err := vault.VerifyKeyring(ctx, s, k3); err != nil {
		t.Errorf("VerifyKeyring(keyring without version 1, after ForgetKeyVersion(1)): %v", err)
	}

	// A closed store fails, never passes.
	s.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := ks.KeyChecks(ctx); err == nil {
		t.Error("KeyChecks on a closed store succeeded")
	}
}
