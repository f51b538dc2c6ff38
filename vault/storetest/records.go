package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

func testInsertStored(t *testing.T, s vault.Store) {
	keys := keyring(t)
	conv := newRecord(keys, newPAN(), false)
	uniq := newRecord(keys, newPAN(), true)
	exp := newRecord(keys, newPAN(), false)
	exp.Expires = exp.Created.Add(time.Hour)
	recs := []vault.Record{conv, uniq, exp}
	outs := mustInsert(t, s, recs...)
	for i, rec := range recs {
		wantOutcome(t, i, outs[i], vault.Stored, rec)
		wantGet(t, s, rec)
	}
}

func testInsertEmpty(t *testing.T, s vault.Store) {
	outs, err := s.Insert(context.Background(), nil)
	if err != nil || len(outs) != 0 {
		t.Errorf("Insert(nil) = %d outcomes, %v; want 0, nil", len(outs), err)
	}
}

func testInsertExisting(t *testing.T, s vault.Store) {
	keys := keyring(t)
	pan := newPAN()
	first := newRecord(keys, pan, false)
	mustInsert(t, s, first)
	again := newRecord(keys, pan, false) // same fingerprint, new token
	outs := mustInsert(t, s, again)
	wantOutcome(t, 0, outs[0], vault.Existing, first)
	wantGetErr(t, s, again.Token, vault.ErrNotFound)
	wantFind(t, s, first)
}

func testInsertExistingInOneCall(t *testing.T, s vault.Store) {
	keys := keyring(t)
	pan := newPAN()
	first, second := newRecord(keys, pan, false), newRecord(keys, pan, false)
	other := newRecord(keys, newPAN(), false)
	outs := mustInsert(t, s, first, second, other)
	wantOutcome(t, 0, outs[0], vault.Stored, first)
	wantOutcome(t, 1, outs[1], vault.Existing, first)
	wantOutcome(t, 2, outs[2], vault.Stored, other)
	wantGetErr(t, s, second.Token, vault.ErrNotFound)
	wantFind(t, s, first)
}

func testInsertCollision(t *testing.T, s vault.Store) {
	keys := keyring(t)
	taken := newRecord(keys, newPAN(), false)
	mustInsert(t, s, taken)
	clash := newRecord(keys, newPAN(), false)
	clash.Token = taken.Token
	free := newRecord(keys, newPAN(), false)
	outs := mustInsert(t, s, clash, free)
	wantOutcome(t, 0, outs[0], vault.Collision, clash)
	wantOutcome(t, 1, outs[1], vault.Stored, free)
	wantGet(t, s, taken)
	wantGet(t, s, free)
	wantFindErr(t, s, clash.Fingerprint, vault.ErrNotFound)

	// A unique record collides the same way.
	uniq := newRecord(keys, newPAN(), true)
	uniq.Token = taken.Token
	outs = mustInsert(t, s, uniq)
	wantOutcome(t, 0, outs[0], vault.Collision, uniq)
}

func testInsertCollisionInOneCall(t *testing.T, s vault.Store) {
	keys := keyring(t)
	first := newRecord(keys, newPAN(), false)
	clash := newRecord(keys, newPAN(), false)
	clash.Token = first.Token
	after := newRecord(keys, newPAN(), true)
	outs := mustInsert(t, s, first, clash, after)
	wantOutcome(t, 0, outs[0], vault.Stored, first)
	wantOutcome(t, 1, outs[1], vault.Collision, clash)
	wantOutcome(t, 2, outs[2], vault.Stored, after)
	wantGet(t, s, first)
	wantFindErr(t, s, clash.Fingerprint, vault.ErrNotFound)
}

// testInsertInvalid checks "on error nothing is written": a record with an
// empty token cannot be stored, and its valid neighbours are not written.
func testInsertInvalid(t *testing.T, s vault.Store) {
	keys := keyring(t)
	good := newRecord(keys, newPAN(), false)
	bad := newRecord(keys, newPAN(), false)
	bad.Token = ""
	if _, err := s.Insert(context.Background(), []vault.Record{good, bad}); err == nil {
		t.Fatalf("Insert(record with empty token) = nil, want an error")
	}
	wantGetErr(t, s, good.Token, vault.ErrNotFound)
	wantFindErr(t, s, good.Fingerprint, vault.ErrNotFound)
}

// testInsertConcurrent races many goroutines inserting records for the same
// values: exactly one token per fingerprint may win, and every caller must
// be told that token.
func testInsertConcurrent(t *testing.T, s vault.Store) {
	const goroutines, values = 16, 20
	keys := keyring(t)
	pans := make([]string, values)
	for i := range pans {
		pans[i] = newPAN()
	}
	outs := make([][]vault.Outcome, goroutines)
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		recs := make([]vault.Record, values)
		for i, pan := range pans {
			recs[(i+g)%values] = newRecord(keys, pan, false) // vary the order
		}
		wg.Go(func() {
			// Half insert one record per call, half the whole batch.
			if g%2 == 0 {
				outs[g], errs[g] = s.Insert(context.Background(), recs)
				return
			}
			for _, r := range recs {
				o, err := s.Insert(context.Background(), []vault.Record{r})
				if err != nil {
					errs[g] = err
					return
				}
				outs[g] = append(outs[g], o...)
			}
		})
	}
	wg.Wait()
	winner := map[string]string{} // fingerprint → token
	stores := map[string]int{}
	for g := range goroutines {
		if errs[g] != nil {
			t.Fatalf("goroutine %d: Insert = %v, want nil", g, errs[g])
		}
		for _, o := range outs[g] {
			if o.Status == vault.Collision {
				t.Fatalf("goroutine %d: unexpected Collision", g)
			}
			fp := string(o.Record.Fingerprint)
			if w, ok := winner[fp]; ok && w != o.Record.Token {
				t.Fatalf("fingerprint %x has tokens %q and %q, want one", fp, w, o.Record.Token)
			}
			winner[fp] = o.Record.Token
			if o.Status == vault.Stored {
				stores[fp]++
			}
		}
	}
	if len(winner) != values {
		t.Fatalf("%d fingerprints have tokens, want %d", len(winner), values)
	}
	for fp, n := range stores {
		if n != 1 {
			t.Errorf("fingerprint %x was Stored %d times, want 1", fp, n)
		}
	}
	for _, pan := range pans {
		fp := keys.Fingerprint(panDomain, pan)
		got, err := s.Find(context.Background(), fp)
		if err != nil || got.Token != winner[string(fp)] {
			t.Errorf("Find(%x) = %q, %v; want %q, nil", fp, got.Token, err, winner[string(fp)])
		}
	}
}

func testRoundTrip(t *testing.T, s vault.Store) {
	keys := keyring(t)
	rec := newRecord(keys, newPAN(), false)
	rec.Token = "tok_" + randomDigits(22)
	rec.Format = vault.FormatOpaque
	rec.KeyID = 1<<32 - 1
	rec.Created = time.Date(2031, 4, 5, 6, 7, 8, 987654321, time.FixedZone("X", 3600))
	rec.Expires = rec.Created.Add(90*time.Second + 1234567*time.Nanosecond)
	mustInsert(t, s, rec)
	wantGet(t, s, rec)
	wantFind(t, s, rec)
}

// testRoundTripUnique checks that unique records (nil fingerprint) are not
// indexed, and that an empty non-nil fingerprint is treated like nil.
func testRoundTripUnique(t *testing.T, s vault.Store) {
	keys := keyring(t)
	a := newRecord(keys, newPAN(), true)
	b := newRecord(keys, newPAN(), true)
	b.Fingerprint = []byte{}
	c := newRecord(keys, newPAN(), true)
	c.Format = vault.FormatDigits
	c.Token = randomDigits(3)
	outs := mustInsert(t, s, a, b, c)
	for i, rec := range []vault.Record{a, b, c} {
		wantOutcome(t, i, outs[i], vault.Stored, rec)
		wantGet(t, s, rec)
	}
	wantFindErr(t, s, nil, vault.ErrNotFound)
	wantFindErr(t, s, []byte{}, vault.ErrNotFound)
}

// testNoAliasing checks that the store copies what it is given and what it
// returns: neither the caller's nor a later reader's slices are shared.
func testNoAliasing(t *testing.T, s vault.Store) {
	keys := keyring(t)
	rec := newRecord(keys, newPAN(), false)
	want := stored(rec)
	want.Ciphertext = append([]byte(nil), rec.Ciphertext...)
	want.Fingerprint = append([]byte(nil), rec.Fingerprint...)
	outs := mustInsert(t, s, rec)
	rec.Ciphertext[0] ^= 0xff
	rec.Fingerprint[0] ^= 0xff
	outs[0].Record.Ciphertext[1] ^= 0xff
	got, err := s.Get(context.Background(), want.Token)
	if err != nil {
		t.Fatalf("Get(%q) = %v, want nil", want.Token, err)
	}
	if d := diffRecord(got, want); d != "" {
		t.Fatalf("Get after mutating the inserted record: %s", d)
	}
	got.Ciphertext[2] ^= 0xff
	wantGet(t, s, want)
	wantFind(t, s, want)
}

func testNotFound(t *testing.T, s vault.Store) {
	keys := keyring(t)
	mustInsert(t, s, newRecord(keys, newPAN(), false))
	wantGetErr(t, s, "4111110000001111", vault.ErrNotFound)
	wantGetErr(t, s, "", vault.ErrNotFound)
	wantFindErr(t, s, keys.Fingerprint(panDomain, newPAN()), vault.ErrNotFound)
}

func testDelete(t *testing.T, s vault.Store) {
	ctx := context.Background()
	keys := keyring(t)
	pan := newPAN()
	rec := newRecord(keys, pan, false)
	keep := newRecord(keys, newPAN(), false)
	mustInsert(t, s, rec, keep)
	if err := s.Delete(ctx, rec.Token); err != nil {
		t.Fatalf("Delete(%q) = %v, want nil", rec.Token, err)
	}
	wantGetErr(t, s, rec.Token, vault.ErrNotFound)
	wantFindErr(t, s, rec.Fingerprint, vault.ErrNotFound)
	wantGet(t, s, keep)
	if err := s.Delete(ctx, rec.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Delete(%q) again = %v, want %v", rec.Token, err, vault.ErrNotFound)
	}
	// The value can be tokenized afresh once its record is gone.
	again := newRecord(keys, pan, false)
	outs := mustInsert(t, s, again)
	wantOutcome(t, 0, outs[0], vault.Stored, again)
	// Deleting a unique record works too.
	uniq := newRecord(keys, newPAN(), true)
	mustInsert(t, s, uniq)
	if err := s.Delete(ctx, uniq.Token); err != nil {
		t.Fatalf("Delete(%q) = %v, want nil", uniq.Token, err)
	}
	wantGetErr(t, s, uniq.Token, vault.ErrNotFound)
	wantFind(t, s, again)
}

// testContext checks that writes with a context already done fail with its
// error and write nothing. Reads may answer or fail with the context error.
func testContext(t *testing.T, s vault.Store) {
	keys := keyring(t)
	live := newRecord(keys, newPAN(), false)
	mustInsert(t, s, live)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := newRecord(keys, newPAN(), false)
	if _, err := s.Insert(ctx, []vault.Record{rec}); !errors.Is(err, context.Canceled) {
		t.Errorf("Insert(canceled ctx) = %v, want %v", err, context.Canceled)
	}
	wantGetErr(t, s, rec.Token, vault.ErrNotFound)
	if err := s.Delete(ctx, live.Token); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete(canceled ctx) = %v, want %v", err, context.Canceled)
	}
	wantGet(t, s, live)
	for name, err := range map[string]error{
		"Get":  func() error { _, err := s.Get(ctx, live.Token); return err }(),
		"Find": func() error { _, err := s.Find(ctx, live.Fingerprint); return err }(),
	} {
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("%s(canceled ctx) = %v, want nil or %v", name, err, context.Canceled)
		}
	}
}

func testPing(t *testing.T, s vault.Store) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("Ping() = %v, want nil", err)
	}
}

// testClose checks that every method of a closed store returns ErrClosed.
func testClose(t *testing.T, s vault.Store) {
	ctx := context.Background()
	keys := keyring(t)
	rec := newRecord(keys, newPAN(), false)
	mustInsert(t, s, rec)
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	calls := map[string]func() error{
		"Insert": func() error {
			_, err := s.Insert(ctx, []vault.Record{newRecord(keys, newPAN(), false)})
			return err
		},
		"Get":    func() error { _, err := s.Get(ctx, rec.Token); return err },
		"Find":   func() error { _, err := s.Find(ctx, rec.Fingerprint); return err },
		"Delete": func() error { return s.Delete(ctx, rec.Token) },
		"Ping":   func() error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, vault.ErrClosed) {
			t.Errorf("%s after Close = %v, want %v", name, err, vault.ErrClosed)
		}
	}
	if err := s.Close(); err != nil && !errors.Is(err, vault.ErrClosed) {
		t.Errorf("second Close() = %v, want nil or %v", err, vault.ErrClosed)
	}
}

// testVault drives the store through the real vault: convergent tokens,
// unique tokens and reveal.
func testVault(t *testing.T, s vault.Store) {
	ctx := context.Background()
	v, err := vault.New(s, keyring(t))
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	pan := newPAN()
	reqs := []vault.Request{{Value: pan}, {Value: pan}, {Value: pan, Spec: vault.Spec{Unique: true}}}
	toks, err := v.Tokenize(ctx, reqs)
	if err != nil {
		t.Fatalf("Tokenize = %v, want nil", err)
	}
	if toks[0] != toks[1] || toks[0] == toks[2] {
		t.Errorf("Tokenize(same PAN twice, then unique) = %q, want the first two equal and the third different", toks)
	}
	again, err := v.Tokenize(ctx, reqs[:1])
	if err != nil || again[0] != toks[0] {
		t.Errorf("Tokenize(same PAN later) = %q, %v; want %q", again, err, toks[0])
	}
	for _, tok := range toks {
		r, err := v.Reveal(ctx, tok)
		if err != nil || r.Value != pan {
			// Never print the PAN, even a test one: keep the habit.
			t.Errorf("Reveal(%q) = %s, %v; want the original value", tok, vault.Mask(r.Value), err)
		}
	}
	// Many PANs in one call: one batched insert.
	var many []vault.Request
	for range 50 {
		many = append(many, vault.Request{Value: newPAN()})
	}
	toks, err = v.Tokenize(ctx, many)
	if err != nil {
		t.Fatalf("Tokenize(50 values) = %v, want nil", err)
	}
	for i, tok := range toks {
		if _, err := s.Get(ctx, tok); err != nil {
			t.Fatal(fmt.Errorf("Get(token of value %d) = %w, want nil", i, err))
		}
	}
}
