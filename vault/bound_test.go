package vault_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// cvcSpec is the README's CVC field: a 3-digit digits value held in memory
// for 15 minutes, bound to the card number.
var cvcSpec = vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: 15 * time.Minute, Bound: true}

// checkout tokenizes a card and its CVC as the inbound proxy does, and
// returns their tokens.
func (f *fixture) checkout(t testing.TB, card, cvc string) (cardTok, cvcTok string) {
	t.Helper()
	toks, err := f.v.Tokenize(context.Background(), []vault.Request{
		{Value: cvc, Spec: cvcSpec, BindTo: 1}, // bound values may come first
		pan(card),
	})
	if err != nil {
		t.Fatalf("Tokenize(card %s, cvc): %v", vault.Mask(card), err)
	}
	return toks[1], toks[0]
}

// testCard returns the i-th of a run of distinct 16-digit card numbers.
func testCard(i int) string { return fmt.Sprintf("411111%06d1111", i) }

func randomCVC(r *rand.Rand) string { return fmt.Sprintf("%03d", r.IntN(1000)) }

// TestBoundNeverRunsOut: 20,000 checkouts of distinct cards inside one ttl
// all get a 3-digit CVC token (an unbound 3-digit field has 900), each
// reveals its own CVC only with its own card token, and never touches the
// durable store. The binary runs the 100,000 of the issue (examples/e2e).
func TestBoundNeverRunsOut(t *testing.T) {
	f := newFixture(t)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20_000
	cards, cvcs, cvcToks := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		cvcs[i] = randomCVC(r)
		cards[i], cvcToks[i] = f.checkout(t, testCard(i), cvcs[i])
		if len(cvcToks[i]) != 3 || !vault.IsShortToken(cvcToks[i]) || cvcToks[i] == cvcs[i] {
			t.Fatalf("checkout %d: CVC token %q for CVC %q; want 3 other digits", i, cvcToks[i], cvcs[i])
		}
	}
	if d, v := f.durable.Store.(*memory.Store).Len(), f.volatile.Len(); d != n || v != n {
		t.Errorf("durable store holds %d records and volatile %d, want the %d cards and the %d CVCs", d, v, n, n)
	}
	f.clock.advance(14 * time.Minute)
	ctx := context.Background()
	for i := range n {
		rv, err := f.v.RevealBound(ctx, cards[i], cvcToks[i])
		if err != nil || rv.Value != cvcs[i] || rv.Token != cvcToks[i] {
			t.Fatalf("RevealBound(card %d, %s) = %q (token %q), %v; want its CVC", i, cvcToks[i], rv.Value, rv.Token, err)
		}
		// Another card's CVC token, with this card's token: either this
		// card has no CVC under it, or it is this card's own.
		j := (i + 1) % n
		if cvcToks[j] == cvcToks[i] {
			continue
		}
		if rv, err := f.v.RevealBound(ctx, cards[i], cvcToks[j]); !errors.Is(err, vault.ErrNotFound) {
			t.Fatalf("RevealBound(card %d, card %d's CVC token) = %q, %v; want ErrNotFound", i, j, rv.Value, err)
		}
	}
	// Lone, the CVC token reveals nothing.
	if _, err := f.v.Reveal(ctx, cvcToks[0]); !errors.Is(err, vault.ErrUnbound) {
		t.Errorf("Reveal(lone CVC token) = %v, want ErrUnbound", err)
	}
	f.clock.advance(time.Minute)
	if _, err := f.v.RevealBound(ctx, cards[0], cvcToks[0]); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("RevealBound after the ttl = %v, want ErrNotFound", err)
	}
}

// TestBoundEqualCVCsLookUnrelated: the same card checked out with the same
// CVC again and again gets a different CVC token each time while the
// earlier ones live, so an observer of tokens cannot tell equal CVCs.
func TestBoundEqualCVCsLookUnrelated(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	var card string
	for range 300 {
		c, tok := f.checkout(t, seedPAN, "737")
		if card != "" && c != card {
			t.Fatalf("card token changed: %s then %s; want the convergent one", card, c)
		}
		card = c
		if seen[tok] {
			t.Fatalf("CVC token %s handed out twice to live values of one card", tok)
		}
		seen[tok] = true
	}
}

// TestBoundNamespaceFull: one card's namespace holds 900 live 3-digit CVC
// tokens. A card checked out more often than that within the ttl (a load
// test on one test card) is never refused: one of its oldest CVCs gives up
// its token, and the newer ones still reveal their own values.
func TestBoundNamespaceFull(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 2000
	var card string
	cvcToks, cvcs := make([]string, n), make([]string, n)
	for i := range n {
		cvcs[i] = fmt.Sprintf("%03d", 100+i%900)
		card, cvcToks[i] = f.checkout(t, seedPAN, cvcs[i])
		f.clock.advance(time.Millisecond) // an order among the records' times
	}
	if got := f.volatile.Len(); got != 900 {
		t.Errorf("the volatile store holds %d CVCs of the card, want its whole namespace, 900", got)
	}
	// An eviction takes the oldest of 16 random live values: a value among
	// the newest third is taken about once in 14 million evictions, so the
	// newest 300 all reveal their own CVC.
	for i := n - 300; i < n; i++ {
		rv, err := f.v.RevealBound(ctx, card, cvcToks[i])
		if err != nil || rv.Value != cvcs[i] {
			t.Fatalf("checkout %d of %d: RevealBound = %q, %v; want its CVC %s", i, n, rv.Value, err, cvcs[i])
		}
	}
	// Another card is untouched by the first one's churn.
	other, otherCVC := f.checkout(t, testCard(1), "737")
	if rv, err := f.v.RevealBound(ctx, other, otherCVC); err != nil || rv.Value != "737" {
		t.Errorf("another card's CVC = %q, %v", rv.Value, err)
	}
}

func TestBoundDelete(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	card, first := f.checkout(t, seedPAN, "123")
	_, second := f.checkout(t, seedPAN, "456")
	other, otherCVC := f.checkout(t, testCard(7), "789")
	if err := f.v.DeleteBound(ctx, card, first); err != nil {
		t.Fatalf("DeleteBound: %v", err)
	}
	if _, err := f.v.RevealBound(ctx, card, first); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("RevealBound after DeleteBound = %v, want ErrNotFound", err)
	}
	if err := f.v.DeleteBound(ctx, card, first); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("DeleteBound twice = %v, want ErrNotFound", err)
	}
	if rv, err := f.v.RevealBound(ctx, card, second); err != nil || rv.Value != "456" {
		t.Fatalf("RevealBound(second) = %q, %v", rv.Value, err)
	}
	// Erasing the card erases what is bound to it, and nothing else.
	if err := f.v.Delete(ctx, card); err != nil {
		t.Fatalf("Delete(card): %v", err)
	}
	if _, err := f.v.RevealBound(ctx, card, second); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("RevealBound after Delete(card) = %v, want ErrNotFound", err)
	}
	if rv, err := f.v.RevealBound(ctx, other, otherCVC); err != nil || rv.Value != "789" {
		t.Errorf("another card's CVC after Delete(card) = %q, %v; want it kept", rv.Value, err)
	}
	if n := f.volatile.Len(); n != 1 {
		t.Errorf("volatile store holds %d records, want the other card's CVC only", n)
	}
}

func TestBoundErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bad := []struct {
		name string
		reqs []vault.Request
	}{
		{"bound to itself", []vault.Request{{Value: "123", Spec: cvcSpec, BindTo: 0}}},
		{"bound out of range", []vault.Request{pan(seedPAN), {Value: "123", Spec: cvcSpec, BindTo: 2}}},
		{"bound to a bound value", []vault.Request{pan(seedPAN), {Value: "123", Spec: cvcSpec, BindTo: 2}, {Value: "456", Spec: cvcSpec, BindTo: 0}}},
		{"bound and durable", []vault.Request{pan(seedPAN), {Value: "123", Spec: vault.Spec{Format: vault.FormatDigits, Bound: true}, BindTo: 0}}},
		{"bound pan", []vault.Request{pan(seedPAN), {Value: seedPAN, Spec: vault.Spec{Volatile: true, TTL: time.Minute, Bound: true}, BindTo: 0}}},
	}
	for _, tt := range bad {
		if _, err := f.v.Tokenize(ctx, tt.reqs); err == nil {
			t.Errorf("Tokenize(%s) succeeded", tt.name)
		}
	}
	if f.durable.records != 0 || f.volatile.Len() != 0 {
		t.Errorf("refused calls wrote %d durable and %d volatile records", f.durable.records, f.volatile.Len())
	}
	card, cvc := f.checkout(t, seedPAN, "123")
	for _, p := range [][2]string{{cvc, cvc}, {"not-a-token", cvc}, {card, "tok_0123456789abcdefABCDEF"}, {card, card + "/" + cvc}} {
		if _, err := f.v.RevealBound(ctx, p[0], p[1]); !errors.Is(err, vault.ErrInvalidToken) {
			t.Errorf("RevealBound(%q, %q) = %v, want ErrInvalidToken", p[0], p[1], err)
		}
	}
	// The composite key is not a token anyone can ask for.
	if _, err := f.v.Reveal(ctx, vault.BoundKey(card, cvc)); !errors.Is(err, vault.ErrInvalidToken) {
		t.Errorf("Reveal(bound key) = %v, want ErrInvalidToken", err)
	}
}

// BenchmarkBoundCheckout is a checkout's card and CVC, with the volatile
// store holding 100,000 other cards' CVCs: the CVC unbound (one global
// 4-digit space, so it does not run out during the run), bound with
// distinct cards (the usual case: one random draw), and one card checked
// out again and again past its 900 tokens (each checkout then samples 16 of
// that card's CVCs and evicts the oldest).
func BenchmarkBoundCheckout(b *testing.B) {
	for _, mode := range []string{"unbound", "distinct-cards", "one-card-full"} {
		b.Run(mode, func(b *testing.B) {
			f := newFixture(b)
			for i := range 100_000 {
				f.checkout(b, testCard(i), "123")
			}
			if mode == "one-card-full" {
				for i := range 1000 {
					f.checkout(b, seedPAN, fmt.Sprintf("%03d", 100+i%900))
				}
			}
			unbound := cvcSpec
			unbound.Bound = false
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				switch mode {
				case "unbound":
					if _, err := f.v.Tokenize(ctx, []vault.Request{pan(testCard(200_000 + i)), {Value: "7373", Spec: unbound}}); err != nil {
						b.Fatal(err)
					}
				case "distinct-cards":
					f.checkout(b, testCard(200_000+i), "737")
				default:
					f.checkout(b, seedPAN, "737")
				}
			}
		})
	}
}
