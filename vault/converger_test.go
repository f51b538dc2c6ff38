package vault_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// convergerStore is a store that asks the vault to skip its Find before
// Insert, and counts the Finds it gets.
type convergerStore struct {
	vault.Store
	finds atomic.Int64
}

func (s *convergerStore) Find(ctx context.Context, fp []byte) (vault.Record, error) {
	s.finds.Add(1)
	return s.Store.Find(ctx, fp)
}

func (s *convergerStore) ConvergesOnInsert() bool { return true }

// TestConvergerSkipsFind: on a [vault.Converger] a convergent value costs
// one Insert and no Find, a known value still gets its token (from
// Insert's Existing outcome, checked against the value), and past the
// quota the vault looks values up after all, so a known card keeps its
// token while a new one is refused.
func TestConvergerSkipsFind(t *testing.T) {
	f := newFixture(t)
	s := &convergerStore{Store: f.durable}
	var size atomic.Int64
	q := vault.NewQuota(1000, func(context.Context) (int64, error) { return size.Load(), nil })
	v, err := vault.New(s, f.keys, vault.WithQuota(q), vault.WithClock(f.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, created, err := v.TokenizeCount(ctx, []vault.Request{pan(seedPAN)})
	if err != nil || created != 1 {
		t.Fatalf("TokenizeCount of a new card = %v, %d, %v; want 1 created", first, created, err)
	}
	again, created, err := v.TokenizeCount(ctx, []vault.Request{pan(seedPAN), pan(seedPAN)})
	if err != nil || created != 0 || again[0] != first[0] || again[1] != first[0] {
		t.Fatalf("TokenizeCount of the known card twice = %v, %d, %v; want %s twice, 0 created", again, created, err, first[0])
	}
	if n := s.finds.Load(); n != 0 {
		t.Errorf("%d Finds below the quota, want 0 (Insert converges)", n)
	}
	size.Store(1000)
	f.clock.advance(2e9)
	known, err := v.Tokenize(ctx, []vault.Request{pan(seedPAN)})
	if err != nil || known[0] != first[0] {
		t.Errorf("Tokenize of a known card past the quota = %v, %v; want %s", known, err, first[0])
	}
	if s.finds.Load() == 0 {
		t.Errorf("no Find past the quota, want the known card looked up")
	}
	if _, err := v.Tokenize(ctx, []vault.Request{pan(seedPAN), pan("5555555555554444")}); !errors.Is(err, vault.ErrVaultFull) {
		t.Errorf("Tokenize of a new card past the quota = %v, want ErrVaultFull", err)
	}
}
