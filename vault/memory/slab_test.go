package memory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// newStore returns a store on a test clock with the janitor off, checked
// for consistency when the test ends.
func newStore(t *testing.T, opts ...Option) (*Store, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(append([]Option{WithClock(clk.Now), WithJanitorInterval(0)}, opts...)...)
	t.Cleanup(func() {
		check(t, s)
		s.Close()
	})
	return s, clk
}

var tokens atomic.Uint64

// newRec returns a record with a fresh opaque token, a ciphertext of size
// bytes derived from the token (so readers can tell it is the right one),
// created now and expiring after ttl (never if 0).
func newRec(clk *clock, size int, ttl time.Duration) vault.Record {
	tok := opaqueToken(tokens.Add(1))
	r := vault.Record{Token: tok, KeyID: 1, Ciphertext: cipherFor(tok, size), Created: clk.Now(), Format: vault.FormatOpaque}
	if ttl > 0 {
		r.Expires = r.Created.Add(ttl)
	}
	return r
}

// cipherFor returns size bytes that depend on tok only.
func cipherFor(tok string, size int) []byte {
	sum := sha256.Sum256([]byte(tok))
	return bytes.Repeat(sum[:], size/len(sum)+1)[:size]
}

func insert(t *testing.T, s *Store, recs ...vault.Record) []vault.Outcome {
	t.Helper()
	outs, err := s.Insert(context.Background(), recs)
	if err != nil {
		t.Fatalf("Insert(%d records) = %v, want nil", len(recs), err)
	}
	return outs
}

func wantFull(t *testing.T, s *Store, recs ...vault.Record) {
	t.Helper()
	n := s.Len()
	_, err := s.Insert(context.Background(), recs)
	// Len may have dropped: Insert reclaims expired records before refusing.
	if !errors.Is(err, ErrFull) || !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Insert(%d records) with %d held = %v, want %v wrapping %v", len(recs), n, err, ErrFull, vault.ErrUnavailable)
	}
	for _, r := range recs {
		if got, err := s.Get(context.Background(), r.Token); err == nil && bytes.Equal(got.Ciphertext, r.Ciphertext) {
			t.Errorf("Get(%q) after a refused Insert found the refused record", r.Token)
		}
	}
}

func wantLen(t *testing.T, s *Store, want int) {
	t.Helper()
	if got := s.Len(); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
}

func TestMaxRecordsDefault(t *testing.T) {
	s, _ := newStore(t)
	if got := s.Stats().MaxRecords; got != DefaultMaxRecords {
		t.Errorf("Stats().MaxRecords = %d, want DefaultMaxRecords (%d)", got, DefaultMaxRecords)
	}
	s, _ = newStore(t, WithMaxRecords(0))
	if got := s.Stats().MaxRecords; got != 0 {
		t.Errorf("Stats().MaxRecords with WithMaxRecords(0) = %d, want 0", got)
	}
}

func TestMaxRecordsBoundary(t *testing.T) {
	s, clk := newStore(t, WithMaxRecords(3))
	var held []vault.Record
	for range 3 {
		r := newRec(clk, 31, 0)
		insert(t, s, r)
		held = append(held, r)
	}
	wantLen(t, s, 3)
	extra := newRec(clk, 31, 0)
	wantFull(t, s, extra)
	wantLen(t, s, 3)
	if err := s.Delete(context.Background(), held[0].Token); err != nil {
		t.Fatal(err)
	}
	insert(t, s, extra)
	wantLen(t, s, 3)
}

// TestMaxRecordsBatch checks that a batch is judged whole against the cap,
// and only on the records it would store.
func TestMaxRecordsBatch(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t, WithMaxRecords(5))
	conv := newRec(clk, 31, 0)
	conv.Fingerprint = []byte("fingerprint of a value")
	insert(t, s, conv, newRec(clk, 31, 0), newRec(clk, 31, 0))

	wantFull(t, s, newRec(clk, 31, 0), newRec(clk, 31, 0), newRec(clk, 31, 0))
	wantLen(t, s, 3)
	insert(t, s, newRec(clk, 31, 0), newRec(clk, 31, 0))
	wantLen(t, s, 5)

	// Full, but a collision and an existing value need no room.
	clash := newRec(clk, 31, 0)
	clash.Token = conv.Token
	same := newRec(clk, 31, 0)
	same.Fingerprint = conv.Fingerprint
	outs := insert(t, s, clash, same)
	if outs[0].Status != vault.Collision || outs[1].Status != vault.Existing || outs[1].Record.Token != conv.Token {
		t.Errorf("Insert(collision, existing) when full = %+v, want Collision, Existing %q", outs, conv.Token)
	}

	// One free: two new records do not fit, one (with a collision) does.
	if err := s.Delete(ctx, conv.Token); err != nil {
		t.Fatal(err)
	}
	a, b := newRec(clk, 31, 0), newRec(clk, 31, 0)
	clash.Token = a.Token
	wantFull(t, s, a, clash, b)
	wantLen(t, s, 4)
	outs = insert(t, s, a, clash)
	if outs[0].Status != vault.Stored || outs[1].Status != vault.Collision {
		t.Errorf("Insert(new, its clash) with one free = %+v, want Stored, Collision", outs)
	}
	wantLen(t, s, 5)
}

// TestMaxRecordsExpiredMakeRoom checks that expired records, not yet
// purged, do not count against the cap.
func TestMaxRecordsExpiredMakeRoom(t *testing.T) {
	s, clk := newStore(t, WithMaxRecords(3))
	short1, short2, keep := newRec(clk, 31, time.Minute), newRec(clk, 31, time.Minute), newRec(clk, 31, 0)
	insert(t, s, short1, short2, keep)
	wantFull(t, s, newRec(clk, 31, 0))

	clk.Add(time.Minute)
	wantFull(t, s, newRec(clk, 31, 0), newRec(clk, 31, 0), newRec(clk, 31, 0))
	wantLen(t, s, 1) // the refused insert reclaimed what it could
	insert(t, s, newRec(clk, 31, 0), newRec(clk, 31, 0))
	wantLen(t, s, 3)
	wantFull(t, s, newRec(clk, 31, 0))
	if n := s.Purge(); n != 0 {
		t.Errorf("Purge() = %d, want 0 (Insert reclaimed the expired records)", n)
	}
}

// chunksOf returns the backing arrays of every chunk in use, whole.
func chunksOf(s *Store) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var bufs [][]byte
	for _, c := range s.chunks {
		if c != nil {
			bufs = append(bufs, c.buf[:cap(c.buf)])
		}
	}
	return bufs
}

// holds reports whether any of bufs contains b.
func holds(bufs [][]byte, b []byte) bool {
	for _, buf := range bufs {
		if bytes.Contains(buf, b) {
			return true
		}
	}
	return false
}

// TestErasureZeroes checks that every way a record leaves the store
// overwrites its bytes: they are card data (PCI DSS 3.2.1 forbids keeping a
// CVV after authorization, and erasure must be real).
func TestErasureZeroes(t *testing.T) {
	ctx := context.Background()
	t.Run("Delete", func(t *testing.T) {
		s, clk := newStore(t)
		keep, victim := newRec(clk, 31, 0), newRec(clk, 31, 0)
		insert(t, s, keep, victim)
		bufs := chunksOf(s)
		if !holds(bufs, victim.Ciphertext) {
			t.Fatal("the slabs do not hold the ciphertext just inserted")
		}
		if err := s.Delete(ctx, victim.Token); err != nil {
			t.Fatal(err)
		}
		if holds(bufs, victim.Ciphertext) || holds(bufs, []byte(victim.Token)) {
			t.Error("the slabs still hold a deleted record")
		}
		// The last record: the chunk is kept as the tail, and zeroed.
		if err := s.Delete(ctx, keep.Token); err != nil {
			t.Fatal(err)
		}
		if holds(bufs, keep.Ciphertext) {
			t.Error("the tail still holds its last record, deleted")
		}
		wantLen(t, s, 0)
		if got := s.Stats().SlabBytes; got != chunkSize {
			t.Errorf("Stats().SlabBytes of an empty store = %d, want one chunk (the tail, kept)", got)
		}
	})
	t.Run("Reseal", func(t *testing.T) {
		s, clk := newStore(t)
		for _, size := range []int{31, 500} { // same size: in place; larger: moved
			rec := newRec(clk, 31, 0)
			insert(t, s, rec)
			bufs := chunksOf(s)
			next := vault.Record{Token: rec.Token, KeyID: 2, Ciphertext: bytes.Repeat([]byte{0xa5}, size)}
			if ok, err := s.Reseal(ctx, next, rec.KeyID); !ok || err != nil {
				t.Fatalf("Reseal = %v, %v; want true, nil", ok, err)
			}
			if holds(bufs, rec.Ciphertext) {
				t.Errorf("the slabs still hold the ciphertext a Reseal to %d bytes replaced", size)
			}
			got, err := s.Get(ctx, rec.Token)
			if err != nil || !bytes.Equal(got.Ciphertext, next.Ciphertext) || got.KeyID != 2 {
				t.Errorf("Get after Reseal to %d bytes = key %d, %v; want the new ciphertext under key 2", size, got.KeyID, err)
			}
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		s, clk := newStore(t)
		short, keep := newRec(clk, 31, time.Second), newRec(clk, 31, 0)
		insert(t, s, short, keep)
		bufs := chunksOf(s)
		clk.Add(time.Second)
		if n := s.Purge(); n != 1 {
			t.Errorf("Purge() = %d, want 1", n)
		}
		if holds(bufs, short.Ciphertext) {
			t.Error("the slabs still hold a purged record")
		}
	})
	t.Run("Close", func(t *testing.T) {
		s := New(WithJanitorInterval(0))
		rec := newRec(&clock{now: time.Now()}, 31, 0)
		if _, err := s.Insert(ctx, []vault.Record{rec}); err != nil {
			t.Fatal(err)
		}
		bufs := chunksOf(s)
		s.Close()
		if holds(bufs, rec.Ciphertext) {
			t.Error("the slabs still hold a record after Close")
		}
	})
}

// TestPurgeSteps fills several chunks, lets two records in three expire,
// and checks what is visible before, between and after purge steps, and
// that compaction keeps the survivors whole.
func TestPurgeSteps(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"hash", nil},
		{"colliding", []Option{withHash(collide)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, clk := newStore(t, tc.opts...)
			var short, long []vault.Record
			for i := range 300 {
				r := newRec(clk, 400, time.Minute)
				if i%10 == 0 {
					r.Fingerprint = fmt.Appendf(nil, "fingerprint %d", i)
				}
				if i%3 == 0 {
					r.Expires = r.Created.Add(time.Hour)
					long = append(long, r)
				} else {
					short = append(short, r)
				}
				insert(t, s, r)
			}
			before := s.Stats().SlabBytes
			clk.Add(time.Minute)
			for _, r := range short {
				if _, err := s.Get(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
					t.Fatalf("Get(%q) of an expired record = %v, want %v", r.Token, err, vault.ErrNotFound)
				}
			}

			n, more := s.reclaimStep(0)
			if !more || n == 0 || n == len(short) {
				t.Fatalf("reclaimStep(0) = %d, %v; want part of the %d expired records", n, more, len(short))
			}
			check(t, s)
			wantLen(t, s, len(long)+len(short)-n)
			// Records expiring between steps are invisible at once.
			clk.Add(time.Hour)
			if _, err := s.Get(ctx, long[len(long)-1].Token); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("Get of a record that expired between steps = %v, want %v", err, vault.ErrNotFound)
			}
			clk.Add(-time.Hour)

			n += s.Purge()
			if n != len(short) {
				t.Errorf("records reclaimed = %d, want %d", n, len(short))
			}
			wantLen(t, s, len(long))
			for _, r := range long {
				got, err := s.Get(ctx, r.Token)
				if err != nil || !bytes.Equal(got.Ciphertext, r.Ciphertext) || !got.Expires.Equal(r.Expires) {
					t.Fatalf("Get(%q) after purge = %v, want the record intact", r.Token, err)
				}
				if r.Fingerprint != nil {
					if got, err := s.Find(ctx, r.Fingerprint); err != nil || got.Token != r.Token {
						t.Errorf("Find(%q) after purge = %q, %v; want %q", r.Fingerprint, got.Token, err, r.Token)
					}
				}
			}
			// A third of the bytes were live: compaction gives most back.
			if after := s.Stats().SlabBytes; after > before/2 {
				t.Errorf("Stats().SlabBytes = %d after purge, %d before; want at most half", after, before)
			}
			clk.Add(time.Hour)
			if n := s.Purge(); n != len(long) {
				t.Errorf("final Purge() = %d, want %d", n, len(long))
			}
			if st := s.Stats(); st.Records != 0 || st.SlabBytes != chunkSize {
				t.Errorf("Stats() after everything expired = %+v, want no records and one chunk (the tail)", st)
			}
		})
	}
}

// TestOversized checks records larger than a chunk.
func TestOversized(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	small, big := newRec(clk, 31, 0), newRec(clk, 3*chunkSize, 0)
	insert(t, s, small, big, newRec(clk, 31, 0))
	got, err := s.Get(ctx, big.Token)
	if err != nil || !bytes.Equal(got.Ciphertext, big.Ciphertext) {
		t.Fatalf("Get of a %d-byte record = %v, want it intact", len(big.Ciphertext), err)
	}
	bufs := chunksOf(s)
	if err := s.Delete(ctx, big.Token); err != nil {
		t.Fatal(err)
	}
	if holds(bufs, big.Ciphertext[:64]) {
		t.Error("the slabs still hold a deleted oversized record")
	}
}

func TestConformanceCollidingHash(t *testing.T) {
	// Every token hashes alike, so the suite runs on the overflow map.
	runConformance(t, withHash(collide))
}

// TestSlabFull checks that running out of chunk ids midway through a batch
// refuses the whole batch.
func TestSlabFull(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	first := newRec(clk, 31, 0)
	insert(t, s, first)
	s.mu.Lock()
	used := len(s.chunks)
	s.chunks = append(s.chunks, make([]*chunk, maxChunks-used)...) // ids taken by nothing
	s.mu.Unlock()

	small, big := newRec(clk, 31, 0), newRec(clk, chunkSize, 0)
	wantFull(t, s, small, big)
	wantLen(t, s, 1)
	if _, err := s.Get(ctx, first.Token); err != nil {
		t.Errorf("Get(%q) after a refused batch = %v, want nil", first.Token, err)
	}
	s.mu.Lock()
	s.chunks = s.chunks[:used]
	s.mu.Unlock()
	insert(t, s, small, big)
}

// TestScanPages checks Scan over more records than it keeps before pruning
// its candidates, with small, large and unbounded limits.
func TestScanPages(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t, WithMaxRecords(0))
	var want []string
	for i := range 5000 {
		r := newRec(clk, 31, 0)
		if i%7 == 0 {
			r.Expires = r.Created.Add(time.Second) // expired below: skipped
		} else {
			want = append(want, r.Token)
		}
		insert(t, s, r)
	}
	clk.Add(time.Second)
	slices.Sort(want)
	for _, limit := range []int{1, 5, 600, 3000, len(want), math.MaxInt} {
		var got []string
		after := ""
		for {
			page, err := s.Scan(ctx, after, limit)
			if err != nil {
				t.Fatalf("Scan(%q, %d) = %v", after, limit, err)
			}
			for _, r := range page {
				got = append(got, r.Token)
			}
			if len(page) < limit || limit == 1 && len(got) > 3 {
				break
			}
			after = page[len(page)-1].Token
		}
		if n := min(len(got), len(want)); limit == 1 && !slices.Equal(got, want[:n]) || limit > 1 && !slices.Equal(got, want) {
			t.Errorf("Scan pages of %d: %d tokens, want %d in order", limit, len(got), len(want))
		}
	}
}

// TestRefusalsLeaveNothing checks that inserts refused at the cap neither
// grow the slabs nor leave dead records behind: under overload the store
// stays the size it is.
func TestRefusalsLeaveNothing(t *testing.T) {
	s, clk := newStore(t, WithMaxRecords(500))
	for range 500 {
		insert(t, s, newRec(clk, 31, 0))
	}
	before := s.Stats()
	for range 2000 { // more than fills a chunk
		wantFull(t, s, newRec(clk, 31, 0), newRec(clk, 31, 0))
	}
	if after := s.Stats(); after != before {
		t.Errorf("Stats() after 2000 refusals = %+v, want %+v", after, before)
	}
}
