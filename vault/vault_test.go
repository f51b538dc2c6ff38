package vault_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
	"github.com/tokproxy/tok/vault/storetest"
)

const seedPAN = "555213321212161777"

// clock is a settable test clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(time.Date(2025, 11, 27, 6, 0, 0, 0, time.UTC))
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// faultStore wraps a Store to inject failures: the first collide records
// passed to Insert are reported as Collision and not written, and insertErr
// or findErr, when set, fail those calls. It counts what it forwards.
type faultStore struct {
	vault.Store
	mu        sync.Mutex
	collide   int
	insertErr error
	findErr   error
	short     bool // return one outcome too few
	inserts   int  // Insert calls
	records   int  // records passed to Insert
}

func (s *faultStore) Insert(ctx context.Context, recs []vault.Record) ([]vault.Outcome, error) {
	s.mu.Lock()
	s.inserts++
	s.records += len(recs)
	if s.insertErr != nil {
		s.mu.Unlock()
		return nil, s.insertErr
	}
	outs := make([]vault.Outcome, len(recs))
	var pass []vault.Record
	var at []int
	for i, r := range recs {
		if s.collide > 0 {
			s.collide--
			outs[i] = vault.Outcome{Status: vault.Collision}
			continue
		}
		pass = append(pass, r)
		at = append(at, i)
	}
	short := s.short
	s.mu.Unlock()
	if len(pass) > 0 {
		got, err := s.Store.Insert(ctx, pass)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			outs[i] = got[j]
		}
	}
	if short {
		outs = outs[:len(outs)-1]
	}
	return outs, nil
}

func (s *faultStore) Find(ctx context.Context, fp []byte) (vault.Record, error) {
	s.mu.Lock()
	err := s.findErr
	s.mu.Unlock()
	if err != nil {
		return vault.Record{}, err
	}
	return s.Store.Find(ctx, fp)
}

type fixture struct {
	v        *vault.Vault
	durable  *faultStore
	volatile *memory.Store
	keys     *vault.Keyring
	file     vault.KeyringFile
	clock    *clock
}

func newMemoryStore(t testing.TB, c *clock) *memory.Store {
	s := memory.New(memory.WithClock(c.now), memory.WithJanitorInterval(0))
	t.Cleanup(func() { s.Close() })
	return s
}

// newFixture returns a vault over memory stores (a durable one wrapped for
// fault injection and a volatile one) sharing one test clock.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), file: vault.NewKeyringFile()}
	keys, err := vault.NewKeyring(f.file)
	if err != nil {
		t.Fatal(err)
	}
	f.keys = keys
	f.durable = &faultStore{Store: newMemoryStore(t, f.clock)}
	f.volatile = newMemoryStore(t, f.clock)
	f.v, err = vault.New(f.durable, keys, vault.WithVolatile(f.volatile), vault.WithClock(f.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) tokenize(t testing.TB, reqs ...vault.Request) []string {
	t.Helper()
	toks, err := f.v.Tokenize(context.Background(), reqs)
	if err != nil {
		t.Fatalf("Tokenize(%d requests): %v", len(reqs), err)
	}
	if len(toks) != len(reqs) {
		t.Fatalf("Tokenize(%d requests) returned %d tokens", len(reqs), len(toks))
	}
	return toks
}

func (f *fixture) reveal(t testing.TB, token string) vault.Revealed {
	t.Helper()
	return revealAny(t, f.v, token)
}

// revealAny reveals token; an unbound short-value token, which Reveal
// refuses (checked here), is opened from its record as tests must.
func revealAny(t testing.TB, v *vault.Vault, token string) vault.Revealed {
	t.Helper()
	r, err := v.Reveal(context.Background(), token)
	if vault.IsShortToken(token) {
		if !errors.Is(err, vault.ErrUnbound) {
			t.Fatalf("Reveal(short %q) = %v, want ErrUnbound", token, err)
		}
		rec, err := v.Lookup(context.Background(), token)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", token, err)
		}
		val, err := v.Keyring().OpenRecord(rec)
		if err != nil {
			t.Fatalf("open %q: %v", token, err)
		}
		return vault.Revealed{Record: rec, Value: val}
	}
	if err != nil {
		t.Fatalf("Reveal(%q): %v", token, err)
	}
	return r
}

func pan(value string) vault.Request { return vault.Request{Value: value} }

func TestNew(t *testing.T) {
	keys, _ := vault.NewKeyring(vault.NewKeyringFile())
	if _, err := vault.New(nil, keys); err == nil {
		t.Errorf("New(nil store) succeeded")
	}
	s := newMemoryStore(t, newClock())
	if _, err := vault.New(s, nil); err == nil {
		t.Errorf("New(nil keyring) succeeded")
	}
	v, err := vault.New(s, keys)
	if err != nil || v.Keyring() != keys {
		t.Errorf("New = %v, %v; Keyring() not the one given", v, err)
	}
}

func TestTokenizeReveal(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, value, want string
		spec              vault.Spec
	}{
		{"visa", "4111111111111111", "4111111111111111", vault.Spec{}},
		{"seed fails luhn", seedPAN, seedPAN, vault.Spec{}},
		{"spaces", "5555 5555 5555 4444", "5555555555554444", vault.Spec{}},
		{"12 digits", "123456789012", "123456789012", vault.Spec{}},
		{"19 digits", "6011-1111-1111-1111-117", "6011111111111111117", vault.Spec{}},
		{"digits", "4242424242424242", "4242424242424242", vault.Spec{Format: vault.FormatDigits}},
		{"opaque", "378282246310005", "378282246310005", vault.Spec{Format: vault.FormatOpaque}},
		{"unique", "4000056655665556", "4000056655665556", vault.Spec{Unique: true}},
		{"with ttl", "4000002500003155", "4000002500003155", vault.Spec{TTL: time.Hour}},
		{"cvv volatile", "123", "123", vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := f.tokenize(t, vault.Request{Value: tt.value, Spec: tt.spec})[0]
			if !vault.ValidToken(tok) {
				t.Errorf("Tokenize(%q) = %q, not a valid token", vault.Mask(tt.want), tok)
			}
			if tok == tt.want {
				t.Errorf("Tokenize(%q) returned the value", vault.Mask(tt.want))
			}
			if tt.spec.Format == vault.FormatPAN && vault.Luhn(tok) {
				t.Errorf("Tokenize(%q) = %q passes Luhn", vault.Mask(tt.want), tok)
			}
			r := f.reveal(t, tok)
			if r.Value != tt.want {
				t.Errorf("Reveal(Tokenize(%q)).Value = %q, want %q", vault.Mask(tt.want), vault.Mask(r.Value), vault.Mask(tt.want))
			}
			if r.Token != tok || r.Format != tt.spec.Format || r.KeyID != 1 {
				t.Errorf("Reveal(%q) record = {Token %q, Format %v, KeyID %d}, want {%q, %v, 1}", tok, r.Token, r.Format, r.KeyID, tok, tt.spec.Format)
			}
			if !r.Created.Equal(f.clock.now()) {
				t.Errorf("Reveal(%q).Created = %v, want %v", tok, r.Created, f.clock.now())
			}
			wantFP := !tt.spec.Unique && !tt.spec.Volatile && tt.spec.TTL == 0
			if got := len(r.Fingerprint) > 0; got != wantFP {
				t.Errorf("Reveal(%q) has fingerprint = %v, want %v", tok, got, wantFP)
			}
			var wantExp time.Time
			if tt.spec.TTL > 0 {
				wantExp = f.clock.now().Add(tt.spec.TTL)
			}
			if !r.Expires.Equal(wantExp) {
				t.Errorf("Reveal(%q).Expires = %v, want %v", tok, r.Expires, wantExp)
			}
			lr, err := f.v.Lookup(context.Background(), tok)
			if err != nil || lr.Token != tok {
				t.Errorf("Lookup(%q) = %q, %v", tok, lr.Token, err)
			}
		})
	}
}

func TestTokenizeConvergent(t *testing.T) {
	f := newFixture(t)
	a := f.tokenize(t, pan("4111111111111111"))[0]
	b := f.tokenize(t, pan("4111 1111 1111 1111"))[0]
	c := f.tokenize(t, vault.Request{Value: "4111-1111-1111-1111", Spec: vault.Spec{KeepFirst: 6, KeepLast: 4}})[0]
	if a != b || a != c {
		t.Errorf("Tokenize of one PAN three times = %q, %q, %q, want one token", a, b, c)
	}
	recs := f.durable.records

	// Within one batch, and alongside a PAN seen before.
	batch := f.tokenize(t, pan(seedPAN), pan("4111111111111111"), pan(seedPAN), pan("5555-5555-5555-4444"), pan("555213 321212161777"))
	if batch[0] != batch[2] || batch[0] != batch[4] {
		t.Errorf("one batch tokenized the seed PAN as %q, %q, %q, want one token", batch[0], batch[2], batch[4])
	}
	if batch[1] != a {
		t.Errorf("batch Tokenize of a known PAN = %q, want %q", batch[1], a)
	}
	if batch[0] == batch[3] {
		t.Errorf("two PANs got the same token %q", batch[0])
	}
	if got := f.durable.records - recs; got != 4 {
		// Known PAN found by fingerprint (not sent); 3 seed + 1 other sent.
		t.Errorf("batch sent %d records to the store, want 4", got)
	}
	if n := f.durable.Store.(*memory.Store).Len(); n != 3 {
		t.Errorf("store holds %d records, want 3 (one per PAN)", n)
	}

	// Different formats and kept digits do not converge.
	digits := f.tokenize(t, vault.Request{Value: "4111111111111111", Spec: vault.Spec{Format: vault.FormatDigits}})[0]
	opaque := f.tokenize(t, vault.Request{Value: "4111111111111111", Spec: vault.Spec{Format: vault.FormatOpaque}})[0]
	keep4 := f.tokenize(t, vault.Request{Value: "4111111111111111", Spec: vault.Spec{KeepFirst: 4}})[0]
	seen := map[string]bool{a: true}
	for _, tok := range []string{digits, opaque, keep4} {
		if seen[tok] {
			t.Errorf("token %q reused across specs", tok)
		}
		seen[tok] = true
	}
	if again := f.tokenize(t, vault.Request{Value: "4111111111111111", Spec: vault.Spec{Format: vault.FormatOpaque}})[0]; again != opaque {
		t.Errorf("opaque Tokenize again = %q, want %q", again, opaque)
	}
}

func TestTokenizeUnique(t *testing.T) {
	f := newFixture(t)
	u := vault.Request{Value: "4111111111111111", Spec: vault.Spec{Unique: true}}
	conv := f.tokenize(t, pan("4111111111111111"))[0]
	toks := f.tokenize(t, u, u, u)
	toks = append(toks, f.tokenize(t, u)...)
	seen := map[string]bool{conv: true}
	for _, tok := range toks {
		if seen[tok] {
			t.Errorf("unique Tokenize repeated token %q", tok)
		}
		seen[tok] = true
		if r := f.reveal(t, tok); r.Value != "4111111111111111" || r.Fingerprint != nil {
			t.Errorf("Reveal(%q) = %q with fingerprint %x, want the PAN and none", tok, vault.Mask(r.Value), r.Fingerprint)
		}
	}
	// A unique token must not become the convergent one.
	if again := f.tokenize(t, pan("4111111111111111"))[0]; again != conv {
		t.Errorf("convergent Tokenize after unique ones = %q, want %q", again, conv)
	}
}

func TestTokenizeVolatile(t *testing.T) {
	cvv := vault.Request{Value: "737", Spec: vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: 10 * time.Minute}}

	t.Run("without volatile store", func(t *testing.T) {
		keys, _ := vault.NewKeyring(vault.NewKeyringFile())
		durable := &faultStore{Store: newMemoryStore(t, newClock())}
		v, _ := vault.New(durable, keys)
		toks, err := v.Tokenize(context.Background(), []vault.Request{pan("4111111111111111"), cvv})
		if err == nil {
			t.Fatalf("Tokenize(volatile) without a volatile store = %q, want error", toks)
		}
		if strings.Contains(err.Error(), "737") {
			t.Errorf("error %q contains the value", err)
		}
		if durable.inserts != 0 {
			t.Errorf("the PAN beside the refused CVV was written (%d inserts): fail closed means nothing stored", durable.inserts)
		}
	})

	t.Run("never durable", func(t *testing.T) {
		f := newFixture(t)
		toks := f.tokenize(t, pan("4111111111111111"), cvv, cvv)
		if toks[1] == toks[2] {
			t.Errorf("volatile Tokenize converged: %q twice", toks[1])
		}
		if f.durable.records != 1 {
			t.Errorf("durable store received %d records, want only the PAN", f.durable.records)
		}
		if n := f.volatile.Len(); n != 2 {
			t.Errorf("volatile store holds %d records, want 2", n)
		}
		for _, tok := range toks[1:] {
			if len(tok) != 3 {
				t.Errorf("CVV token %q, want 3 digits", tok)
			}
			if r := f.reveal(t, tok); r.Value != "737" || r.Fingerprint != nil {
				t.Errorf("Reveal(%q) = %q, fingerprint %x", tok, r.Value, r.Fingerprint)
			}
		}
		f.clock.advance(10 * time.Minute)
		for _, tok := range toks[1:] {
			if _, err := f.v.Lookup(context.Background(), tok); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("Lookup(%q) after the TTL: %v, want ErrNotFound", tok, err)
			}
		}
		f.reveal(t, toks[0])
	})
}

func TestTokenizeInvalidValue(t *testing.T) {
	f := newFixture(t)
	bad := "4111 1111 1111 111x"
	tests := []struct {
		name string
		reqs []vault.Request
		idx  int
	}{
		{"first", []vault.Request{pan(bad)}, 0},
		{"third", []vault.Request{pan("4111111111111111"), pan(seedPAN), pan(bad)}, 2},
		{"too short", []vault.Request{pan("4111111111111111"), pan("41111111111")}, 1},
		{"too long", []vault.Request{pan("41111111111111111111")}, 0},
		{"cvv as pan", []vault.Request{pan("4111111111111111"), pan("737")}, 1},
		{"unicode digits", []vault.Request{pan("٤١١١١١١١١١١١١١١١")}, 0},
		{"short digits", []vault.Request{{Value: "12", Spec: vault.Spec{Format: vault.FormatDigits}}}, 0},
		{"before a volatile", []vault.Request{pan(bad), {Value: "737", Spec: vault.Spec{Volatile: true, Format: vault.FormatDigits, TTL: time.Minute}}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.durable.inserts
			toks, err := f.v.Tokenize(context.Background(), tt.reqs)
			if !errors.Is(err, vault.ErrInvalidValue) {
				t.Fatalf("Tokenize = %q, %v, want ErrInvalidValue", toks, err)
			}
			if toks != nil {
				t.Errorf("Tokenize returned tokens %q with an error", toks)
			}
			if want := fmt.Sprintf("value %d:", tt.idx); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("Tokenize error %q does not start with %q", err, want)
			}
			msg := err.Error()
			for _, r := range tt.reqs {
				if strings.Contains(msg, r.Value) {
					t.Errorf("Tokenize error %q contains a request value", msg)
				}
			}
			if hasDigitRun(msg, 4) {
				t.Errorf("Tokenize error %q has a run of 4 digits", msg)
			}
			if f.durable.inserts != before {
				t.Errorf("an invalid batch reached the store")
			}
		})
	}
}

func hasDigitRun(s string, n int) bool {
	run := 0
	for _, c := range s {
		if c >= '0' && c <= '9' {
			if run++; run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func TestTokenizeEmpty(t *testing.T) {
	f := newFixture(t)
	toks, err := f.v.Tokenize(context.Background(), nil)
	if err != nil || len(toks) != 0 {
		t.Errorf("Tokenize(nil) = %q, %v, want no tokens", toks, err)
	}
	if f.durable.inserts != 0 {
		t.Errorf("Tokenize(nil) called Insert")
	}
}

func TestRevealExpired(t *testing.T) {
	f := newFixture(t)
	start := f.clock.now()
	tok := f.tokenize(t, vault.Request{Value: seedPAN, Spec: vault.Spec{TTL: time.Hour}})[0]

	f.clock.set(start.Add(time.Hour - time.Millisecond))
	if r := f.reveal(t, tok); r.Value != seedPAN {
		t.Errorf("Reveal just before expiry = %q", vault.Mask(r.Value))
	}
	for _, at := range []time.Duration{time.Hour, time.Hour + time.Millisecond, 48 * time.Hour} {
		f.clock.set(start.Add(at))
		if r, err := f.v.Reveal(context.Background(), tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Reveal %v after tokenizing with a 1h TTL = %q, %v, want ErrNotFound", at, vault.Mask(r.Value), err)
		}
		if _, err := f.v.Lookup(context.Background(), tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Lookup %v after tokenizing with a 1h TTL: %v, want ErrNotFound", at, err)
		}
	}
	// An expiring record is never handed out again: a new request for the
	// same PAN gets a fresh token.
	if again := f.tokenize(t, vault.Request{Value: seedPAN, Spec: vault.Spec{TTL: time.Hour}})[0]; again == tok {
		t.Errorf("Tokenize after expiry returned the expired token")
	}
}

// TestLookupExpiredInStore checks that the vault judges expiry itself, even
// if a store hands back an expired record.
func TestLookupExpiredInStore(t *testing.T) {
	c := newClock()
	storeClock := newClock() // the store believes it is still the start
	keys, _ := vault.NewKeyring(vault.NewKeyringFile())
	v, _ := vault.New(newMemoryStore(t, storeClock), keys, vault.WithClock(c.now))
	toks, err := v.Tokenize(context.Background(), []vault.Request{{Value: seedPAN, Spec: vault.Spec{TTL: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	c.advance(time.Minute)
	if _, err := v.Reveal(context.Background(), toks[0]); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Reveal of an expired record the store still returns: %v, want ErrNotFound", err)
	}
}

func TestLookupErrors(t *testing.T) {
	f := newFixture(t)
	for _, tok := range []string{"", "12", "4111 1111 1111 1111", "tok_short", "tok_!!!!!!!!!!!!!!!!!!!!!!", "' OR 1=1 --", strings.Repeat("9", 20)} {
		if _, err := f.v.Lookup(context.Background(), tok); !errors.Is(err, vault.ErrInvalidToken) {
			t.Errorf("Lookup(%q): %v, want ErrInvalidToken", tok, err)
		}
		if _, err := f.v.Reveal(context.Background(), tok); !errors.Is(err, vault.ErrInvalidToken) {
			t.Errorf("Reveal(%q): %v, want ErrInvalidToken", tok, err)
		}
	}
	for _, tok := range []string{"4111119999991111", "tok_0123456789abcdefABCDEF"} {
		if _, err := f.v.Reveal(context.Background(), tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Reveal(unknown %q): %v, want ErrNotFound", tok, err)
		}
	}
	// A short-value token never reveals alone, known or not.
	if _, err := f.v.Reveal(context.Background(), "123"); !errors.Is(err, vault.ErrUnbound) {
		t.Errorf("Reveal(short %q): %v, want ErrUnbound", "123", err)
	}
}

func TestTokenizeCollisionRetry(t *testing.T) {
	t.Run("retries until free", func(t *testing.T) {
		f := newFixture(t)
		f.durable.collide = 5
		toks := f.tokenize(t, pan("4111111111111111"), pan(seedPAN), vault.Request{Value: "4111111111111111", Spec: vault.Spec{Unique: true}})
		if f.durable.inserts < 2 {
			t.Errorf("%d Insert calls, want retries", f.durable.inserts)
		}
		if n := f.durable.Store.(*memory.Store).Len(); n != 3 {
			t.Errorf("store holds %d records after retries, want 3", n)
		}
		for i, want := range []string{"4111111111111111", seedPAN, "4111111111111111"} {
			if r := f.reveal(t, toks[i]); r.Value != want {
				t.Errorf("Reveal(token %d) = %q, want %q", i, vault.Mask(r.Value), vault.Mask(want))
			}
		}
		// Retried convergent records keep their fingerprint.
		if again := f.tokenize(t, pan(seedPAN))[0]; again != toks[1] {
			t.Errorf("Tokenize after a retried insert = %q, want %q", again, toks[1])
		}
	})

	t.Run("retried batch converges", func(t *testing.T) {
		f := newFixture(t)
		f.durable.collide = 1 // the first copy collides, the second is stored
		toks := f.tokenize(t, pan(seedPAN), pan(seedPAN))
		if toks[0] != toks[1] {
			t.Errorf("Tokenize of one PAN twice with a collision = %q, %q, want one token", toks[0], toks[1])
		}
		if n := f.durable.Store.(*memory.Store).Len(); n != 1 {
			t.Errorf("store holds %d records, want 1", n)
		}
	})

	t.Run("gives up", func(t *testing.T) {
		f := newFixture(t)
		f.durable.collide = 1 << 30
		toks, err := f.v.Tokenize(context.Background(), []vault.Request{pan("4111111111111111")})
		if !errors.Is(err, vault.ErrCollision) {
			t.Fatalf("Tokenize with every token taken = %q, %v, want ErrCollision", toks, err)
		}
		if f.durable.inserts < 2 || f.durable.inserts > 20 {
			t.Errorf("%d Insert calls before giving up, want a small retry budget", f.durable.inserts)
		}
	})
}

func TestTokenizeStoreErrors(t *testing.T) {
	t.Run("insert", func(t *testing.T) {
		f := newFixture(t)
		f.durable.insertErr = fmt.Errorf("disk full: %w", vault.ErrUnavailable)
		toks, err := f.v.Tokenize(context.Background(), []vault.Request{pan("4111111111111111")})
		if !errors.Is(err, vault.ErrUnavailable) || toks != nil {
			t.Errorf("Tokenize with a failing store = %q, %v, want ErrUnavailable", toks, err)
		}
	})
	t.Run("find", func(t *testing.T) {
		f := newFixture(t)
		f.durable.findErr = vault.ErrClosed
		toks, err := f.v.Tokenize(context.Background(), []vault.Request{pan("4111111111111111")})
		if !errors.Is(err, vault.ErrClosed) || toks != nil {
			t.Errorf("Tokenize with a failing Find = %q, %v, want ErrClosed", toks, err)
		}
		if f.durable.inserts != 0 {
			t.Errorf("Tokenize inserted after Find failed")
		}
		// Unique values skip the lookup.
		if _, err := f.v.Tokenize(context.Background(), []vault.Request{{Value: "4111111111111111", Spec: vault.Spec{Unique: true}}}); err != nil {
			t.Errorf("unique Tokenize with a failing Find: %v", err)
		}
	})
	t.Run("short outcomes", func(t *testing.T) {
		f := newFixture(t)
		f.durable.short = true
		if toks, err := f.v.Tokenize(context.Background(), []vault.Request{pan("4111111111111111"), pan(seedPAN)}); err == nil {
			t.Errorf("Tokenize with too few outcomes = %q, want error", toks)
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := newFixture(t)
		tok := f.tokenize(t, pan("4111111111111111"))[0]
		f.durable.Store.Close()
		if _, err := f.v.Tokenize(context.Background(), []vault.Request{pan(seedPAN)}); !errors.Is(err, vault.ErrClosed) {
			t.Errorf("Tokenize on a closed store: %v, want ErrClosed", err)
		}
		if _, err := f.v.Reveal(context.Background(), tok); !errors.Is(err, vault.ErrClosed) {
			t.Errorf("Reveal on a closed store: %v, want ErrClosed", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		f := newFixture(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if toks, err := f.v.Tokenize(ctx, []vault.Request{pan("4111111111111111")}); !errors.Is(err, context.Canceled) {
			t.Errorf("Tokenize with a canceled context = %q, %v, want context.Canceled", toks, err)
		}
	})
}

// TestRevealTampered: a record whose ciphertext or token was changed in the
// store fails to open rather than revealing anything.
func TestRevealTampered(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	toks := f.tokenize(t, pan("4111111111111111"), pan(seedPAN))
	a, _ := f.durable.Get(ctx, toks[0])
	b, _ := f.durable.Get(ctx, toks[1])
	// Move b's ciphertext under a fresh token: the token is the AD.
	moved := b
	moved.Token = "4111110000001111"
	moved.Fingerprint = nil
	flipped := a
	flipped.Token = "4111110000002222"
	flipped.Fingerprint = nil
	flipped.Ciphertext = append([]byte(nil), a.Ciphertext...)
	flipped.Ciphertext[len(flipped.Ciphertext)-1] ^= 1
	if _, err := f.durable.Store.Insert(ctx, []vault.Record{moved, flipped}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{moved.Token, flipped.Token} {
		r, err := f.v.Reveal(ctx, tok)
		if !errors.Is(err, vault.ErrDecrypt) {
			t.Errorf("Reveal(tampered %q) = %q, %v, want ErrDecrypt", tok, vault.Mask(r.Value), err)
		}
		if r.Value != "" {
			t.Errorf("Reveal(tampered %q) returned a value", tok)
		}
	}
}

// TestRotation: records sealed before a rotation still reveal and still
// converge; new records use the new primary.
func TestRotation(t *testing.T) {
	f := newFixture(t)
	old := f.tokenize(t, pan(seedPAN))[0]

	f.file.Rotate()
	keys2, err := vault.NewKeyring(f.file)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := vault.New(f.durable, keys2, vault.WithClock(f.clock.now))
	if r, err := v2.Reveal(context.Background(), old); err != nil || r.Value != seedPAN || r.KeyID != 1 {
		t.Errorf("Reveal(old token) after rotation = %q (key %d), %v", vault.Mask(r.Value), r.KeyID, err)
	}
	toks, err := v2.Tokenize(context.Background(), []vault.Request{pan(seedPAN), pan("4111111111111111")})
	if err != nil {
		t.Fatal(err)
	}
	if toks[0] != old {
		t.Errorf("Tokenize(seed) after rotation = %q, want the old token %q", toks[0], old)
	}
	if r, err := v2.Reveal(context.Background(), toks[1]); err != nil || r.KeyID != 2 {
		t.Errorf("new record after rotation: key %d, %v, want key 2", r.KeyID, err)
	}
	// The old keyring cannot open what the new primary sealed.
	if _, err := f.v.Reveal(context.Background(), toks[1]); !errors.Is(err, vault.ErrUnknownKey) {
		t.Errorf("old keyring Reveal(new record): %v, want ErrUnknownKey", err)
	}

	// A different fingerprint key means no convergence with this store.
	keys3, _ := vault.NewKeyring(vault.NewKeyringFile())
	v3, _ := vault.New(f.durable, keys3)
	if toks3, err := v3.Tokenize(context.Background(), []vault.Request{pan(seedPAN)}); err != nil || toks3[0] == old {
		t.Errorf("Tokenize under a foreign fingerprint key = %q, %v, want a new token", toks3, err)
	}
}

// TestTokenizeConcurrent: concurrent requests for one PAN converge on one
// token (the store's Insert reports Existing to all but one).
func TestTokenizeConcurrent(t *testing.T) {
	f := newFixture(t)
	const n = 16
	toks := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			got, err := f.v.Tokenize(context.Background(), []vault.Request{pan(seedPAN), pan(fmt.Sprintf("41111111%08d", i))})
			if err != nil {
				t.Errorf("Tokenize: %v", err)
				return
			}
			toks[i] = got[0]
		})
	}
	wg.Wait()
	for i, tok := range toks {
		if tok != toks[0] {
			t.Errorf("goroutine %d got %q, goroutine 0 got %q", i, tok, toks[0])
		}
	}
	if got := f.durable.Store.(*memory.Store).Len(); got != n+1 {
		t.Errorf("store holds %d records, want %d", got, n+1)
	}
}

// TestStoresShareTokenSpace: durable and volatile values of one digits
// format draw tokens from the same space; a token the other store holds is
// a collision, so every token reveals its own value.
func TestStoresShareTokenSpace(t *testing.T) {
	f := newFixture(t)
	durable := vault.Spec{Format: vault.FormatDigits, Unique: true}
	volatile := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: 15 * time.Minute}
	want := map[string]string{}
	// 3,000 durable 4-digit values fill a third of the 4-digit token space.
	for i := range 3000 {
		v := fmt.Sprintf("%04d", i)
		want[f.tokenize(t, vault.Request{Value: v, Spec: durable})[0]] = v
	}
	// Without the cross-store check about 100 of these would collide.
	for i := range 300 {
		v := fmt.Sprintf("%04d", 5000+i)
		tok := f.tokenize(t, vault.Request{Value: v, Spec: volatile})[0]
		if _, dup := want[tok]; dup {
			t.Fatalf("volatile value %d got token %s, which a durable value holds", i, tok)
		}
		want[tok] = v
	}
	for tok, v := range want {
		if rv := f.reveal(t, tok); rv.Value != v {
			t.Fatalf("Reveal(%s) = %q; want %q", tok, rv.Value, v)
		}
	}
}

// TestAmbiguousTokenRefused: a token both stores hold (a race the insert
// check cannot close) is refused on reveal and on delete, never answered
// with either value, and both records stay.
func TestAmbiguousTokenRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, s := range []vault.Store{f.durable, f.volatile} {
		rec := storetest.NewRecord(f.keys, false)
		rec.Token = "424242424242"
		if _, err := s.Insert(ctx, []vault.Record{rec}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.v.Reveal(ctx, "424242424242"); !errors.Is(err, vault.ErrAmbiguous) {
		t.Errorf("Reveal(ambiguous) = %v, want ErrAmbiguous", err)
	}
	if err := f.v.Delete(ctx, "424242424242"); !errors.Is(err, vault.ErrAmbiguous) {
		t.Errorf("Delete(ambiguous) = %v, want ErrAmbiguous", err)
	}
	for _, s := range []vault.Store{f.durable, f.volatile} {
		if _, err := s.Get(ctx, "424242424242"); err != nil {
			t.Errorf("a record was deleted: %v", err)
		}
	}
}
