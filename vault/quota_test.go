package vault_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// TestQuota: past limits.vault_bytes a card without a token is refused
// with ErrVaultFull, while a known card keeps its token and reveals; below
// it again (an operator raised it, or records were erased), minting goes
// on. The size is measured at most once a second.
func TestQuota(t *testing.T) {
	f := newFixture(t)
	var size, calls atomic.Int64
	q := vault.NewQuota(1000, func(context.Context) (int64, error) { calls.Add(1); return size.Load(), nil })
	v, err := vault.New(f.durable, f.keys, vault.WithQuota(q), vault.WithClock(f.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	known, err := v.Tokenize(ctx, []vault.Request{pan(seedPAN)})
	if err != nil {
		t.Fatalf("Tokenize below the quota: %v", err)
	}
	size.Store(1000)
	if _, err := v.Tokenize(ctx, []vault.Request{pan("4111111111111111")}); err != nil {
		t.Fatalf("Tokenize within a second of the last measurement: %v (the size is cached for a second)", err)
	}
	f.clock.advance(2e9)
	n := calls.Load()
	if _, err := v.Tokenize(ctx, []vault.Request{pan("5555555555554444")}); !errors.Is(err, vault.ErrVaultFull) {
		t.Fatalf("Tokenize of a new card past the quota = %v, want ErrVaultFull", err)
	}
	if calls.Load() != n+1 {
		t.Errorf("%d measurements for one stale check, want 1", calls.Load()-n)
	}
	again, err := v.Tokenize(ctx, []vault.Request{pan(seedPAN)})
	if err != nil || again[0] != known[0] {
		t.Errorf("Tokenize of a known card past the quota = %v, %v; want its token %s", again, err, known[0])
	}
	if rv, err := v.Reveal(ctx, known[0]); err != nil || rv.Value != seedPAN {
		t.Errorf("Reveal past the quota = %v", err)
	}
	if q.Last() != 1000 || q.Max() != 1000 {
		t.Errorf("Last, Max = %d, %d; want 1000, 1000", q.Last(), q.Max())
	}
	size.Store(10)
	f.clock.advance(2e9)
	if _, err := v.Tokenize(ctx, []vault.Request{pan("5555555555554444")}); err != nil {
		t.Errorf("Tokenize after the store shrank: %v", err)
	}
}
