package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// The tokens below are all 16 ASCII digits, which every collation orders
// as bytes, so one expected order holds for every store.

func testScan(t *testing.T, s vault.Store) {
	ctx := context.Background()
	if recs, err := s.Scan(ctx, "", 10); err != nil || len(recs) != 0 {
		t.Fatalf("Scan of an empty store = %d records, %v; want 0, nil", len(recs), err)
	}
	keys := keyring(t)
	want := map[string]vault.Record{}
	var batch []vault.Record
	for i := range 23 {
		r := newRecord(keys, newPAN(), i%3 == 0)
		batch = append(batch, r)
		want[r.Token] = r
	}
	// Two commits, so that bolt holds some in bbolt and some in memtables.
	mustInsert(t, s, batch[:11]...)
	mustInsert(t, s, batch[11:]...)
	sorted := slices.Sorted(func(yield func(string) bool) {
		for tok := range want {
			if !yield(tok) {
				return
			}
		}
	})

	// All in one page.
	all, err := s.Scan(ctx, "", 100)
	if err != nil {
		t.Fatalf("Scan = %v", err)
	}
	if got := tokens(all); !slices.Equal(got, sorted) {
		t.Fatalf("Scan(\"\", 100) tokens = %v, want %v", got, sorted)
	}
	for _, r := range all {
		if d := diffRecord(r, stored(want[r.Token])); d != "" {
			t.Errorf("Scan record %s: %s", r.Token, d)
		}
	}

	// Pages of 5, each resuming after the last token of the one before.
	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		page, err := s.Scan(ctx, after, 5)
		if err != nil {
			t.Fatalf("Scan(%q, 5) = %v", after, err)
		}
		if len(page) > 5 {
			t.Fatalf("Scan(%q, 5) returned %d records", after, len(page))
		}
		paged = append(paged, tokens(page)...)
		if len(page) < 5 {
			break
		}
		after = page[len(page)-1].Token
	}
	if !slices.Equal(paged, sorted) {
		t.Errorf("paged tokens = %v, want %v", paged, sorted)
	}

	// after need not be a stored token; the last token gives nothing.
	mid := sorted[10]
	page, err := s.Scan(ctx, mid[:len(mid)-1]+"/", 3) // '/' sorts just before '0'
	if err != nil {
		t.Fatal(err)
	}
	if got := tokens(page); !slices.Equal(got, sorted[10:13]) {
		t.Errorf("Scan(before %s, 3) = %v, want %v", mid, got, sorted[10:13])
	}
	if page, err := s.Scan(ctx, sorted[len(sorted)-1], 5); err != nil || len(page) != 0 {
		t.Errorf("Scan(last token) = %d records, %v; want 0, nil", len(page), err)
	}

	// Deleted records are not scanned.
	if err := s.Delete(ctx, sorted[0]); err != nil {
		t.Fatal(err)
	}
	all, err = s.Scan(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := tokens(all); !slices.Equal(got, sorted[1:]) {
		t.Errorf("Scan after Delete = %v, want %v", got, sorted[1:])
	}
}

func tokens(recs []vault.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Token
	}
	return out
}

func testReseal(t *testing.T, s vault.Store) {
	ctx := context.Background()
	old, keys := rotatedKeyrings(t)
	pan := newPAN()
	rec := newRecord(old, pan, false)
	mustInsert(t, s, rec)

	kid, ct := keys.Seal(rec.Token, pan)
	next := vault.Record{Token: rec.Token, KeyID: kid, Ciphertext: ct}
	// Wrong from-version: nothing changes.
	if ok, err := s.Reseal(ctx, next, kid); err != nil || ok {
		t.Fatalf("Reseal(from %d) of a record under %d = %v, %v; want false, nil", kid, rec.KeyID, ok, err)
	}
	wantGet(t, s, rec)

	if ok, err := s.Reseal(ctx, next, rec.KeyID); err != nil || !ok {
		t.Fatalf("Reseal = %v, %v; want true, nil", ok, err)
	}
	want := rec
	want.KeyID, want.Ciphertext = kid, ct
	wantGet(t, s, want)
	wantFind(t, s, want)
	got, err := s.Get(ctx, rec.Token)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := keys.Open(got.KeyID, got.Token, got.Ciphertext); err != nil || v != pan {
		t.Errorf("Open after Reseal = %v; want the PAN", err)
	}

	// Already resealed: a second swap from the old version fails.
	kid2, ct2 := keys.Seal(rec.Token, pan)
	if ok, err := s.Reseal(ctx, vault.Record{Token: rec.Token, KeyID: kid2, Ciphertext: ct2}, rec.KeyID); err != nil || ok {
		t.Errorf("second Reseal from %d = %v, %v; want false, nil", rec.KeyID, ok, err)
	}
	wantGet(t, s, want)

	// Deleted (or never stored): false, and nothing appears.
	if err := s.Delete(ctx, rec.Token); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reseal(ctx, next, kid); err != nil || ok {
		t.Errorf("Reseal of a deleted record = %v, %v; want false, nil", ok, err)
	}
	wantGetErr(t, s, rec.Token, vault.ErrNotFound)

	// Expiry and creation time are kept.
	exp := newRecord(old, newPAN(), true)
	exp.Expires = exp.Created.Add(time.Hour)
	mustInsert(t, s, exp)
	kid3, ct3 := keys.Seal(exp.Token, "x")
	if ok, err := s.Reseal(ctx, vault.Record{Token: exp.Token, KeyID: kid3, Ciphertext: ct3}, exp.KeyID); err != nil || !ok {
		t.Fatalf("Reseal of an expiring unique record = %v, %v", ok, err)
	}
	exp.KeyID, exp.Ciphertext = kid3, ct3
	wantGet(t, s, exp)
}

// rotatedKeyrings returns a keyring and the same keyring after a
// rotation: old seals under the first key, keys under the second.
func rotatedKeyrings(t *testing.T) (old, keys *vault.Keyring) {
	t.Helper()
	f := vault.NewKeyringFile()
	old, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Rotate()
	if keys, err = vault.NewKeyring(f); err != nil {
		t.Fatal(err)
	}
	return old, keys
}
