package vault_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// getCounter wraps a Store and counts Get calls.
type getCounter struct {
	vault.Store
	gets atomic.Int64
}

func (s *getCounter) Get(ctx context.Context, token string) (vault.Record, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, token)
}

// TestVolatileFormatsSkipLookup: with the volatile store's formats declared,
// a durable token of another format is not looked up in the volatile store,
// a durable token of a declared format still is, and a volatile value of an
// undeclared format is refused rather than stored where no lookup would see
// it.
func TestVolatileFormatsSkipLookup(t *testing.T) {
	c := newClock()
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	durable := newMemoryStore(t, c)
	volatile := &getCounter{Store: newMemoryStore(t, c)}
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute}
	tests := []struct {
		name     string
		opts     []vault.Option
		spec     vault.Spec
		wantGets bool
	}{
		{"undeclared: every format looked up", nil, vault.Spec{}, true},
		{"pan not volatile", []vault.Option{vault.WithVolatileFormats(vault.FormatDigits)}, vault.Spec{}, false},
		{"digits volatile", []vault.Option{vault.WithVolatileFormats(vault.FormatDigits)}, vault.Spec{Format: vault.FormatDigits, Unique: true}, true},
		{"none volatile", []vault.Option{vault.WithVolatileFormats()}, vault.Spec{Format: vault.FormatDigits, Unique: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]vault.Option{vault.WithVolatile(volatile), vault.WithClock(c.now)}, tt.opts...)
			v, err := vault.New(durable, keys, opts...)
			if err != nil {
				t.Fatal(err)
			}
			before := volatile.gets.Load()
			reqs := []vault.Request{{Value: "4111111111111111", Spec: tt.spec}, {Value: "123", Spec: vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute, Bound: true}}}
			toks, err := v.Tokenize(context.Background(), reqs)
			if err != nil {
				t.Fatalf("Tokenize = %v", err)
			}
			if got := volatile.gets.Load() - before; (got > 0) != tt.wantGets {
				t.Errorf("volatile Gets = %d, want any: %v", got, tt.wantGets)
			}
			if rv, err := v.Reveal(context.Background(), toks[0]); err != nil || rv.Value != "4111111111111111" {
				t.Errorf("Reveal(%s) = %q, %v", toks[0], rv.Value, err)
			}
			if rv, err := v.RevealBound(context.Background(), toks[0], toks[1]); err != nil || rv.Value != "123" {
				t.Errorf("RevealBound(%s, %s) = %q, %v", toks[0], toks[1], rv.Value, err)
			}
		})
	}
	v, err := vault.New(durable, keys, vault.WithVolatile(volatile), vault.WithVolatileFormats(vault.FormatDigits))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Tokenize(context.Background(), []vault.Request{{Value: "4111111111111111", Spec: vault.Spec{Volatile: true, TTL: time.Minute}}}); err == nil || !strings.Contains(err.Error(), "not declared volatile") {
		t.Errorf("Tokenize(volatile pan, pan undeclared) = %v, want a refusal", err)
	}
	if _, err := v.Tokenize(context.Background(), []vault.Request{{Value: "1234", Spec: cvc}}); err != nil {
		t.Errorf("Tokenize(volatile digits, declared) = %v", err)
	}
}
