package vault_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// boundRecords returns the keys of every bound record the volatile store
// holds.
func boundRecords(t *testing.T, s vault.Store) []string {
	t.Helper()
	recs, err := s.Scan(context.Background(), "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range recs {
		if strings.Contains(r.Token, "/") {
			keys = append(keys, r.Token)
		}
	}
	return keys
}

// TestEarlyBoundKeepsCardToken: a CVC inserted while its card commits ends
// bound to the token the card got, whatever happened to the token drawn
// first, and no record stays under another token.
func TestEarlyBoundKeepsCardToken(t *testing.T) {
	tests := []struct {
		name    string
		collide int // durable inserts reported as Collision first: the card's drawn token is not the one it gets
		known   bool
	}{
		{"new card", 0, false},
		{"drawn card token collides", 1, false},
		{"drawn card token collides three times", 3, false},
		{"known card", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			var first string
			if tt.known {
				first = f.tokenize(t, pan(seedPAN))[0]
			}
			f.durable.mu.Lock()
			f.durable.collide = tt.collide
			f.durable.mu.Unlock()
			card, cvc := f.checkout(t, seedPAN, "123")
			if tt.known && card != first {
				t.Errorf("card token = %s, want the known %s", card, first)
			}
			rv, err := f.v.RevealBound(ctx, card, cvc)
			if err != nil || rv.Value != "123" {
				t.Fatalf("RevealBound(%s, %s) = %q, %v; want 123", card, cvc, rv.Value, err)
			}
			if got := boundRecords(t, f.volatile); len(got) != 1 || got[0] != vault.BoundKey(card, cvc) {
				t.Errorf("bound records = %v, want only %s", got, vault.BoundKey(card, cvc))
			}
		})
	}
}

// TestEarlyBoundCardFails: when the card's commit fails, the checkout
// fails and the CVC inserted beside it is removed.
func TestEarlyBoundCardFails(t *testing.T) {
	f := newFixture(t)
	f.durable.insertErr = errors.New("disk on fire")
	_, err := f.v.Tokenize(context.Background(), []vault.Request{pan(seedPAN), {Value: "123", Spec: cvcSpec, BindTo: 0}})
	if err == nil {
		t.Fatal("Tokenize with a failing durable store = nil error")
	}
	if got := boundRecords(t, f.volatile); len(got) != 0 {
		t.Errorf("bound records after a failed checkout = %v, want none", got)
	}
}

// TestEarlyBoundConverger: on a store that converges on insert (no lookup
// first), a known card's CVC is bound to the card's existing token.
func TestEarlyBoundConverger(t *testing.T) {
	f := newFixture(t)
	s := &convergerStore{Store: f.durable}
	v, err := vault.New(s, f.keys, vault.WithVolatile(f.volatile), vault.WithClock(f.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		toks, err := v.Tokenize(ctx, []vault.Request{pan(seedPAN), {Value: "123", Spec: cvcSpec, BindTo: 0}})
		if err != nil {
			t.Fatal(err)
		}
		if rv, err := v.RevealBound(ctx, toks[0], toks[1]); err != nil || rv.Value != "123" {
			t.Fatalf("RevealBound(%s, %s) = %q, %v; want 123", toks[0], toks[1], rv.Value, err)
		}
	}
	if got := boundRecords(t, f.volatile); len(got) != 2 {
		t.Errorf("bound records = %v, want the two CVCs, both under the card's token", got)
	}
}
