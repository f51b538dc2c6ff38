package memory

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

func TestConformance(t *testing.T) { runConformance(t) }

// runConformance runs the suite on stores made with opts, checking each
// store's consistency when its test ends.
func runConformance(t *testing.T, opts ...Option) {
	open := func(t *testing.T) *Store {
		s := New(opts...)
		t.Cleanup(func() {
			check(t, s)
			s.Close()
		})
		return s
	}
	storetest.Run(t, func(t *testing.T) vault.Store { return open(t) })
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionStore { return open(t) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) vault.Store {
		s := New()
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newKeys(t *testing.T) *vault.Keyring {
	t.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestExpiry(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tick := make(chan time.Time)
	s := New(WithClock(clk.Now), func(s *Store) { s.tick = tick })
	t.Cleanup(func() { s.Close() })
	keys := newKeys(t)

	cvv := storetest.NewRecord(keys, false)
	cvv.Expires = clk.Now().Add(time.Minute)
	keep := storetest.NewRecord(keys, false)
	if _, err := s.Insert(ctx, []vault.Record{cvv, keep}); err != nil {
		t.Fatalf("Insert = %v, want nil", err)
	}
	if _, err := s.Get(ctx, cvv.Token); err != nil {
		t.Fatalf("Get(%q) before expiry = %v, want nil", cvv.Token, err)
	}

	clk.Add(time.Minute) // expiry is inclusive
	if _, err := s.Get(ctx, cvv.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(%q) after expiry = %v, want %v", cvv.Token, err, vault.ErrNotFound)
	}
	if _, err := s.Find(ctx, cvv.Fingerprint); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Find(%x) after expiry = %v, want %v", cvv.Fingerprint, err, vault.ErrNotFound)
	}
	if n := s.Len(); n != 2 {
		t.Errorf("Len() before the janitor ran = %d, want 2", n)
	}

	// Two ticks: the second is taken only once the first purge finished.
	tick <- clk.Now()
	tick <- clk.Now()
	if n := s.Len(); n != 1 {
		t.Errorf("Len() after the janitor ran = %d, want 1", n)
	}
	if _, err := s.Get(ctx, keep.Token); err != nil {
		t.Errorf("Get(%q) of a record without expiry = %v, want nil", keep.Token, err)
	}
}

// TestExpiredDoesNotBlock checks that an expired record, not yet purged,
// neither answers for its fingerprint nor holds its token.
func TestExpiredDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clk.Now), WithJanitorInterval(0))
	t.Cleanup(func() { s.Close() })
	keys := newKeys(t)

	old := storetest.NewRecord(keys, false)
	old.Expires = clk.Now().Add(time.Second)
	if _, err := s.Insert(ctx, []vault.Record{old}); err != nil {
		t.Fatalf("Insert = %v, want nil", err)
	}
	clk.Add(time.Second)
	sameFP := storetest.NewRecord(keys, false)
	sameFP.Fingerprint = old.Fingerprint
	sameTok := storetest.NewRecord(keys, false)
	sameTok.Token = old.Token
	outs, err := s.Insert(ctx, []vault.Record{sameFP, sameTok})
	if err != nil {
		t.Fatalf("Insert = %v, want nil", err)
	}
	for i, o := range outs {
		if o.Status != vault.Stored {
			t.Errorf("outcome[%d].Status = %d, want Stored", i, o.Status)
		}
	}
	if got, err := s.Find(ctx, old.Fingerprint); err != nil || got.Token != sameFP.Token {
		t.Errorf("Find(%x) = %q, %v; want %q", old.Fingerprint, got.Token, err, sameFP.Token)
	}
	if n := s.Purge(); n != 0 {
		t.Errorf("Purge() = %d, want 0 (the expired record was replaced)", n)
	}
}

func TestCloseStopsJanitor(t *testing.T) {
	s := New(WithJanitorInterval(time.Hour))
	if err := s.Close(); err != nil {
		t.Fatalf("Close() = %v, want nil", err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("janitor still running after Close")
	}
	if err := s.Close(); !errors.Is(err, vault.ErrClosed) {
		t.Errorf("second Close() = %v, want %v", err, vault.ErrClosed)
	}
}
