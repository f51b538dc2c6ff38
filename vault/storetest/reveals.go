package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// policyRecord is a unique record of pan sealed the way the vault seals
// one with a reveal policy: at RecordV3, the policy bound.
func policyRecord(keys *vault.Keyring, pan string, p vault.RevealPolicy) vault.Record {
	rec := newRecord(keys, pan, true)
	rec.Policy = p
	keys.SealRecord(&rec, pan)
	return rec
}

// testPolicyRoundTrip checks that a record's reveal policy comes back from
// Insert, Get and Scan as it went in, and that the record still opens:
// every store keeps what the record binds.
func testPolicyRoundTrip(t *testing.T, s vault.Store) {
	ctx := context.Background()
	keys := keyring(t)
	pan := newPAN()
	p := vault.RevealPolicy{Routes: []string{"@me", "stripe"}, MaxReveals: 3, Until: time.Now().Add(time.Hour)}
	rec := policyRecord(keys, pan, p)
	if rec.Version != vault.RecordV3 {
		t.Fatalf("SealRecord with a policy: version %d, want %d", rec.Version, vault.RecordV3)
	}
	plain := newRecord(keys, newPAN(), false)
	outs := mustInsert(t, s, rec, plain)
	wantOutcome(t, 0, outs[0], vault.Stored, rec)
	wantOutcome(t, 1, outs[1], vault.Stored, plain)
	wantGet(t, s, rec)
	got, err := s.Get(ctx, rec.Token)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := keys.OpenRecord(got); err != nil || v != pan {
		t.Errorf("OpenRecord of the stored policy record = %v, want the PAN", err)
	}
	recs, err := s.Scan(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Token == rec.Token {
			found = true
			if d := diffRecord(r, stored(rec)); d != "" {
				t.Errorf("Scan: %s", d)
			}
		}
	}
	if !found {
		t.Errorf("Scan did not return the policy record")
	}
	// Routes only (the policy a memory field may have).
	routes := policyRecord(keys, newPAN(), vault.RevealPolicy{Routes: []string{"adyen"}})
	mustInsert(t, s, routes)
	wantGet(t, s, routes)
}

// testPolicyReseal checks that Reseal keeps the policy, so a rekeyed
// record opens under the new key with its policy still bound.
func testPolicyReseal(t *testing.T, s vault.Store) {
	ctx := context.Background()
	old, keys := rotatedKeyrings(t)
	pan := newPAN()
	rec := policyRecord(old, pan, vault.RevealPolicy{Routes: []string{"stripe"}, MaxReveals: 2})
	mustInsert(t, s, rec)
	next := rec
	keys.SealRecord(&next, pan)
	if ok, err := s.Reseal(ctx, vault.Record{Token: rec.Token, KeyID: next.KeyID, Ciphertext: next.Ciphertext, Version: next.Version}, rec.KeyID); err != nil || !ok {
		t.Fatalf("Reseal = %v, %v; want true", ok, err)
	}
	got, err := s.Get(ctx, rec.Token)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRecord(got, stored(next)); d != "" {
		t.Errorf("Get after Reseal: %s", d)
	}
	if v, err := keys.OpenRecord(got); err != nil || v != pan {
		t.Errorf("OpenRecord after Reseal = %v, want the PAN", err)
	}
}

// counter returns s as a RevealCounter, or skips.
func counter(t *testing.T, s vault.Store) vault.RevealCounter {
	c, ok := s.(vault.RevealCounter)
	if !ok {
		t.Skip("the store counts no reveals")
	}
	return c
}

// testRevealCount runs a counter through its limit, a give-back, a token
// it does not hold, and a delete, which must take the count with it.
func testRevealCount(t *testing.T, s vault.Store) {
	c := counter(t, s)
	ctx := context.Background()
	keys := keyring(t)
	rec := policyRecord(keys, newPAN(), vault.RevealPolicy{MaxReveals: 2})
	mustInsert(t, s, rec)
	if n, err := c.Reveals(ctx, rec.Token); n != 0 || err != nil {
		t.Errorf("Reveals of a fresh token = %d, %v; want 0, nil", n, err)
	}
	for want := uint32(1); want <= 2; want++ {
		if n, err := c.CountReveal(ctx, rec.Token, 2); n != want || err != nil {
			t.Fatalf("CountReveal #%d = %d, %v; want %d, nil", want, n, err, want)
		}
	}
	if n, err := c.CountReveal(ctx, rec.Token, 2); n != 2 || !errors.Is(err, vault.ErrRevealsExhausted) {
		t.Fatalf("CountReveal past max = %d, %v; want 2, %v", n, err, vault.ErrRevealsExhausted)
	}
	if err := c.UncountReveal(ctx, rec.Token); err != nil {
		t.Fatalf("UncountReveal = %v", err)
	}
	if n, err := c.Reveals(ctx, rec.Token); n != 1 || err != nil {
		t.Errorf("Reveals after a give-back = %d, %v; want 1, nil", n, err)
	}
	if n, err := c.CountReveal(ctx, rec.Token, 2); n != 2 || err != nil {
		t.Errorf("CountReveal after a give-back = %d, %v; want 2, nil", n, err)
	}
	missing := newRecord(keys, newPAN(), true)
	if _, err := c.CountReveal(ctx, missing.Token, 2); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("CountReveal of an unknown token = %v, want %v", err, vault.ErrNotFound)
	}
	if err := c.UncountReveal(ctx, missing.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("UncountReveal of an unknown token = %v, want %v", err, vault.ErrNotFound)
	}
	if _, err := c.Reveals(ctx, missing.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Reveals of an unknown token = %v, want %v", err, vault.ErrNotFound)
	}
	// A give-back never goes below zero.
	other := policyRecord(keys, newPAN(), vault.RevealPolicy{MaxReveals: 1})
	mustInsert(t, s, other)
	if err := c.UncountReveal(ctx, other.Token); err != nil {
		t.Errorf("UncountReveal at 0 = %v, want nil", err)
	}
	if n, err := c.Reveals(ctx, other.Token); n != 0 || err != nil {
		t.Errorf("Reveals after a give-back at 0 = %d, %v; want 0, nil", n, err)
	}
	// Deleting the token deletes its count: the same token written again
	// starts at zero.
	if err := s.Delete(ctx, rec.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CountReveal(ctx, rec.Token, 2); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("CountReveal of a deleted token = %v, want %v", err, vault.ErrNotFound)
	}
	mustInsert(t, s, rec)
	if n, err := c.Reveals(ctx, rec.Token); n != 0 || err != nil {
		t.Errorf("Reveals of a token written again after a delete = %d, %v; want 0, nil", n, err)
	}
}

// testRevealConcurrent counts one token from many goroutines at once:
// exactly max of them may win.
func testRevealConcurrent(t *testing.T, s vault.Store) {
	c := counter(t, s)
	ctx := context.Background()
	keys := keyring(t)
	const max, callers = 5, 24
	rec := policyRecord(keys, newPAN(), vault.RevealPolicy{MaxReveals: max})
	mustInsert(t, s, rec)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won, lost int
		seen      = map[uint32]bool{}
	)
	for range callers {
		wg.Go(func() {
			n, err := c.CountReveal(ctx, rec.Token, max)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
				if seen[n] {
					t.Errorf("CountReveal returned count %d twice", n)
				}
				seen[n] = true
			case errors.Is(err, vault.ErrRevealsExhausted):
				lost++
			default:
				t.Errorf("CountReveal = %v", err)
			}
		})
	}
	wg.Wait()
	if won != max || lost != callers-max {
		t.Errorf("%d concurrent CountReveal: %d counted, %d exhausted; want %d and %d", callers, won, lost, max, callers-max)
	}
	if n, err := c.Reveals(ctx, rec.Token); n != max || err != nil {
		t.Errorf("Reveals = %d, %v; want %d", n, err, max)
	}
}
