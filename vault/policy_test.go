package vault_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/memory"
)

func TestPolicyEncoding(t *testing.T) {
	until := time.UnixMilli(1764226800123).UTC()
	for _, p := range []vault.RevealPolicy{
		{Routes: []string{"stripe"}},
		{Routes: []string{"@me", "adyen", "stripe"}, MaxReveals: 3, Until: until},
		{MaxReveals: 1},
		{Until: until},
	} {
		b := vault.MarshalPolicy(p)
		got, err := vault.UnmarshalPolicy(b)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("UnmarshalPolicy(MarshalPolicy(%+v)) = %+v, %v", p, got, err)
		}
		for cut := range len(b) {
			if _, err := vault.UnmarshalPolicy(b[:cut]); cut > 0 && err == nil {
				t.Errorf("UnmarshalPolicy of %+v cut to %d bytes = nil error", p, cut)
			}
		}
		if _, err := vault.UnmarshalPolicy(append(bytes.Clone(b), 0)); err == nil {
			t.Errorf("UnmarshalPolicy of %+v with a trailing byte = nil error", p)
		}
	}
	// One policy, one encoding: route order and repeats do not matter.
	a := vault.MarshalPolicy(vault.RevealPolicy{Routes: []string{"stripe", "adyen", "stripe"}})
	b := vault.MarshalPolicy(vault.RevealPolicy{Routes: []string{"adyen", "stripe"}})
	if !bytes.Equal(a, b) {
		t.Errorf("MarshalPolicy depends on route order: %x vs %x", a, b)
	}
	if got := vault.MarshalPolicy(vault.RevealPolicy{}); got != nil {
		t.Errorf("MarshalPolicy(zero) = %x, want nil", got)
	}
}

// TestPolicyRecordTamper edits each part of a sealed policy, as someone
// with write access to the store could, and checks that the record no
// longer opens; and that a policy record cannot be passed off as one with
// no policy.
func TestPolicyRecordTamper(t *testing.T) {
	keys := newTestKeyring(t)
	rec := vault.Record{Token: "tok_0123456789abcdefghijkl", Created: time.Now(), Format: vault.FormatOpaque,
		Policy: vault.RevealPolicy{Routes: []string{"stripe"}, MaxReveals: 3, Until: time.UnixMilli(1764226800000).UTC()}}
	keys.SealRecord(&rec, seedPAN)
	if rec.Version != vault.RecordV3 {
		t.Fatalf("SealRecord with a policy: version %d, want %d", rec.Version, vault.RecordV3)
	}
	back, err := vault.UnmarshalRecord(rec.Token, vault.MarshalRecord(rec))
	if err != nil || !reflect.DeepEqual(back.Policy, rec.Policy) || back.Version != vault.RecordV3 {
		t.Fatalf("UnmarshalRecord(MarshalRecord) = %+v, %v", back, err)
	}
	if v, err := keys.OpenRecord(back); err != nil || v != seedPAN {
		t.Fatalf("OpenRecord of the untouched record = %v", err)
	}
	for name, edit := range map[string]func(*vault.Record){
		"routes":      func(r *vault.Record) { r.Policy.Routes = []string{"adyen"} },
		"more routes": func(r *vault.Record) { r.Policy.Routes = []string{"@me", "stripe"} },
		"no routes":   func(r *vault.Record) { r.Policy.Routes = nil },
		"max":         func(r *vault.Record) { r.Policy.MaxReveals = 1000 },
		"no max":      func(r *vault.Record) { r.Policy.MaxReveals = 0 },
		"until":       func(r *vault.Record) { r.Policy.Until = r.Policy.Until.Add(24 * time.Hour) },
		"no policy":   func(r *vault.Record) { r.Policy = vault.RevealPolicy{} },
		"version 2":   func(r *vault.Record) { r.Policy, r.Version = vault.RevealPolicy{}, vault.RecordV2 },
	} {
		r := back
		edit(&r)
		// Through the store's encoding, as an edit of the stored bytes
		// would come back.
		r, err := vault.UnmarshalRecord(r.Token, vault.MarshalRecord(r))
		if err != nil {
			continue // refused before it is opened: as good
		}
		if _, err := keys.OpenRecord(r); !errors.Is(err, vault.ErrDecrypt) {
			t.Errorf("%s edited: OpenRecord = %v, want %v", name, err, vault.ErrDecrypt)
		}
	}
	// A record without a policy keeps the version 2 form, byte for byte.
	plain := vault.Record{Token: rec.Token, Created: rec.Created, Format: vault.FormatOpaque}
	keys.SealRecord(&plain, seedPAN)
	if plain.Version != vault.RecordV2 || vault.MarshalRecord(plain)[0] != vault.RecordV2 {
		t.Errorf("a record without a policy is sealed at version %d, want %d", plain.Version, vault.RecordV2)
	}
}

func newTestKeyring(t *testing.T) *vault.Keyring {
	t.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPolicyDomain checks convergence under reveal routes: the same card
// converges only under the same routes, and the domain of a spec with no
// routes is what it always was.
func TestPolicyDomain(t *testing.T) {
	if got := (vault.Spec{}).Domain(); got != "pan:6:4" {
		t.Errorf("Domain of the default spec = %q, want pan:6:4 (fingerprints of existing vaults)", got)
	}
	if a, b := (vault.Spec{RevealTo: []string{"stripe", "adyen"}}).Domain(), (vault.Spec{RevealTo: []string{"adyen", "stripe"}}).Domain(); a != b {
		t.Errorf("Domain depends on route order: %q vs %q", a, b)
	}
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	v, err := vault.New(s, newTestKeyring(t))
	if err != nil {
		t.Fatal(err)
	}
	tok := func(routes ...string) string {
		t.Helper()
		got, err := v.Tokenize(context.Background(), []vault.Request{{Value: seedPAN, Spec: vault.Spec{RevealTo: routes}}})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	none, stripe, both := tok(), tok("stripe"), tok("stripe", "adyen")
	if none == stripe || stripe == both || none == both {
		t.Errorf("tokens under different routes converged: none %s, stripe %s, stripe+adyen %s", none, stripe, both)
	}
	if again := tok("stripe"); again != stripe {
		t.Errorf("same card under the same routes: %s then %s, want one token", stripe, again)
	}
	if again := tok("adyen", "stripe"); again != both {
		t.Errorf("same routes in another order: %s then %s, want one token", both, again)
	}
	if again := tok(); again != none {
		t.Errorf("same card without routes: %s then %s, want one token", none, again)
	}
}

// TestPolicyRefusesBadSpecs checks that the vault refuses a count or a
// window on a value whose token is shared or volatile.
func TestPolicyRefusesBadSpecs(t *testing.T) {
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	vol := memory.New()
	t.Cleanup(func() { vol.Close() })
	v, err := vault.New(s, newTestKeyring(t), vault.WithVolatile(vol))
	if err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]vault.Spec{
		"max convergent":    {MaxReveals: 1},
		"window convergent": {RevealWindow: time.Hour},
		"max volatile":      {Unique: true, Volatile: true, TTL: time.Hour, MaxReveals: 1},
		"negative window":   {Unique: true, RevealWindow: -time.Hour},
		"empty route":       {RevealTo: []string{""}},
	} {
		if _, err := v.Tokenize(context.Background(), []vault.Request{{Value: seedPAN, Spec: spec}}); err == nil {
			t.Errorf("%s: Tokenize = nil error", name)
		}
	}
}

// openBolt opens a bolt store in a temporary directory.
func openBolt(t *testing.T, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRevealFor runs a token with every policy part through RevealFor on
// a real bolt store: the route, then the count, then the window, each
// refusal spending nothing; a give-back; and the count surviving a
// reopen of the store.
func TestRevealFor(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vault.db")
	s := openBolt(t, path)
	keys := newTestKeyring(t)
	clk := newClock()
	v, err := vault.New(s, keys, vault.WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	spec := vault.Spec{Unique: true, RevealTo: []string{"stripe"}, MaxReveals: 2, RevealWindow: time.Hour}
	toks, err := v.Tokenize(ctx, []vault.Request{{Value: seedPAN, Spec: spec}})
	if err != nil {
		t.Fatal(err)
	}
	tok := toks[0]
	if _, err := v.RevealFor(ctx, tok, "adyen"); !errors.Is(err, vault.ErrRevealNotAllowed) {
		t.Fatalf("RevealFor(adyen) = %v, want %v", err, vault.ErrRevealNotAllowed)
	}
	if _, err := v.RevealFor(ctx, tok, vault.RevealToMe); !errors.Is(err, vault.ErrRevealNotAllowed) {
		t.Fatalf("RevealFor(@me) = %v, want %v", err, vault.ErrRevealNotAllowed)
	}
	rv, err := v.RevealFor(ctx, tok, "stripe")
	if err != nil || rv.Value != seedPAN || rv.Reveals != 1 {
		t.Fatalf("RevealFor(stripe) = %d reveals, %v; want the PAN, 1 reveal", rv.Reveals, err)
	}
	if err := v.UncountReveal(ctx, tok); err != nil {
		t.Fatalf("UncountReveal = %v", err)
	}
	for want := uint32(1); want <= 2; want++ {
		if rv, err := v.RevealFor(ctx, tok, "stripe"); err != nil || rv.Reveals != want {
			t.Fatalf("RevealFor(stripe) #%d = %d, %v", want, rv.Reveals, err)
		}
	}
	if _, err := v.RevealFor(ctx, tok, "stripe"); !errors.Is(err, vault.ErrRevealsExhausted) {
		t.Fatalf("third RevealFor(stripe) = %v, want %v", err, vault.ErrRevealsExhausted)
	}
	// The count is durable: a reopened store still holds it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openBolt(t, path)
	t.Cleanup(func() { s.Close() })
	if v, err = vault.New(s, keys, vault.WithClock(clk.now)); err != nil {
		t.Fatal(err)
	}
	rec, err := v.Lookup(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.Reveals(ctx, rec); n != 2 || err != nil {
		t.Errorf("Reveals after reopening = %d, %v; want 2", n, err)
	}
	if _, err := v.RevealFor(ctx, tok, "stripe"); !errors.Is(err, vault.ErrRevealsExhausted) {
		t.Errorf("RevealFor after reopening = %v, want %v", err, vault.ErrRevealsExhausted)
	}

	// The window: a fresh token reveals until its end, and not from it,
	// without spending its count.
	toks, err = v.Tokenize(ctx, []vault.Request{{Value: seedPAN, Spec: spec}})
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Hour)
	if _, err := v.RevealFor(ctx, toks[0], "stripe"); !errors.Is(err, vault.ErrRevealWindowClosed) {
		t.Fatalf("RevealFor at the window's end = %v, want %v", err, vault.ErrRevealWindowClosed)
	}
	rec, err = v.Lookup(ctx, toks[0])
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.Reveals(ctx, rec); n != 0 || err != nil {
		t.Errorf("Reveals after refusals = %d, %v; want 0 (a refusal spends nothing)", n, err)
	}
}

// TestRevealPolicyRekey rotates the keyring and rekeys a vault holding a
// policy token: the resealed record is under the new key, still carries
// its policy (refused on another route, counted on its own) and keeps the
// reveals counted before the rekey.
func TestRevealPolicyRekey(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "vault.db"))
	t.Cleanup(func() { s.Close() })
	f := vault.NewKeyringFile()
	k1, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := vault.New(s, k1)
	if err != nil {
		t.Fatal(err)
	}
	spec := vault.Spec{Unique: true, RevealTo: []string{"stripe"}, MaxReveals: 2}
	toks, err := v1.Tokenize(ctx, []vault.Request{{Value: seedPAN, Spec: spec}})
	if err != nil {
		t.Fatal(err)
	}
	tok := toks[0]
	if _, err := v1.RevealFor(ctx, tok, "stripe"); err != nil {
		t.Fatal(err)
	}
	f.Rotate()
	k2, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := vault.New(s, k2)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for after := ""; ; {
		next, done, err := v2.Rekey(ctx, after, 0)
		if err != nil {
			t.Fatal(err)
		}
		n += done
		if after = next; after == "" {
			break
		}
	}
	if n != 1 {
		t.Fatalf("Rekey resealed %d records, want 1", n)
	}
	rec, err := v2.Lookup(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if rec.KeyID != k2.Primary() || rec.Version != vault.RecordV3 || !reflect.DeepEqual(rec.Policy.Routes, []string{"stripe"}) || rec.Policy.MaxReveals != 2 {
		t.Fatalf("record after rekey: key %d, version %d, policy %+v; want key %d, version 3, the policy", rec.KeyID, rec.Version, rec.Policy, k2.Primary())
	}
	if _, err := v2.RevealFor(ctx, tok, "adyen"); !errors.Is(err, vault.ErrRevealNotAllowed) {
		t.Errorf("RevealFor(adyen) after rekey = %v, want %v", err, vault.ErrRevealNotAllowed)
	}
	if rv, err := v2.RevealFor(ctx, tok, "stripe"); err != nil || rv.Reveals != 2 || rv.Value != seedPAN {
		t.Errorf("RevealFor(stripe) after rekey = %d reveals, %v; want the PAN, 2 reveals", rv.Reveals, err)
	}
	if _, err := v2.RevealFor(ctx, tok, "stripe"); !errors.Is(err, vault.ErrRevealsExhausted) {
		t.Errorf("RevealFor(stripe) past max after rekey = %v, want %v", err, vault.ErrRevealsExhausted)
	}
}
