package memory

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// All but BenchmarkPurgeStep use only the exported API, so they also ran
// against the map-based store the slabs replaced (18d97ec, with a no-op
// WithMaxRecords):
//
//	go test -run '^$' -bench 'BytesPerRecord|Purge' -benchtime 1x ./vault/memory
//	go test -run '^$' -bench 'Parallel' ./vault/memory

// cvcTTL is the ttl of the example config's CVC field.
const cvcTTL = 15 * time.Minute

// cvcCiphertext is the size of a sealed 3-digit value: a 12-byte nonce, the
// 3 digits and a 16-byte tag.
var cvcCiphertext = make([]byte, 12+3+16)

// opaqueToken returns a distinct token of the opaque format ("tok_" and 22
// base62 characters) for each i, cheaply, so that benchmarks measure the
// store rather than crypto/rand. Multiplying by an odd constant is a
// bijection on uint64, so tokens stay distinct while their leading
// characters vary as random ones do.
func opaqueToken(i uint64) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte("tok_0000000000000000000000")
	x := i * 0x9e3779b97f4a7c15
	for j := 4; x != 0; j++ {
		b[j] = base62[x%62]
		x /= 62
	}
	return string(b)
}

// cvcRecord is what the vault stores for one checkout's CVC: an opaque
// token, a sealed 3-digit value, no fingerprint, expiring after cvcTTL.
func cvcRecord(i uint64, now time.Time) vault.Record {
	return vault.Record{
		Token:      opaqueToken(i),
		KeyID:      1,
		Ciphertext: cvcCiphertext,
		Created:    now,
		Expires:    now.Add(cvcTTL),
		Format:     vault.FormatOpaque,
	}
}

// BenchmarkBytesPerRecord reports how much live heap CVC records take in
// the store, the figure that decides how many fit in the proxy's memory
// budget: at 100k records, and at 1M where the index is bigger.
func BenchmarkBytesPerRecord(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			for b.Loop() {
				recs := make([]vault.Record, n)
				for i := range recs {
					recs[i] = cvcRecord(uint64(i), now)
				}
				s := New(WithJanitorInterval(0), WithMaxRecords(0))
				before := heapAlloc()
				for i := range recs {
					if _, err := s.Insert(ctx, recs[i:i+1]); err != nil {
						b.Fatalf("Insert = %v", err)
					}
				}
				after := heapAlloc()
				runtime.KeepAlive(recs)
				b.ReportMetric(float64(after-before)/float64(n), "B/record")
				s.Close()
			}
		})
	}
}

func heapAlloc() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkInsertParallel inserts one CVC record per call from every
// goroutine, as concurrent checkouts do.
func BenchmarkInsertParallel(b *testing.B) {
	ctx := context.Background()
	s := New(WithJanitorInterval(0), WithMaxRecords(0))
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	var next atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rec := make([]vault.Record, 1)
		for pb.Next() {
			rec[0] = cvcRecord(next.Add(1), now)
			if _, err := s.Insert(ctx, rec); err != nil {
				b.Errorf("Insert = %v", err)
				return
			}
		}
	})
}

// BenchmarkGetParallel reads random records of 100k from every goroutine.
func BenchmarkGetParallel(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s := New(WithJanitorInterval(0), WithMaxRecords(0))
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	toks := make([]string, n)
	for i := range toks {
		r := cvcRecord(uint64(i), now)
		toks[i] = r.Token
		if _, err := s.Insert(ctx, []vault.Record{r}); err != nil {
			b.Fatalf("Insert = %v", err)
		}
	}
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		x := seed.Add(0x9e3779b97f4a7c15)
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			if _, err := s.Get(ctx, toks[x%n]); err != nil {
				b.Errorf("Get = %v", err)
				return
			}
		}
	})
}

// halfExpired returns an uncapped store holding n CVC records, every
// other one expired a minute ago by its clock, with the garbage collected.
func halfExpired(b *testing.B, n int) (*Store, *clock) {
	b.Helper()
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clk.Now), WithJanitorInterval(0), WithMaxRecords(0))
	for j := range n {
		r := cvcRecord(uint64(j), clk.Now())
		if j%2 == 0 {
			r.Expires = clk.Now().Add(time.Minute)
		}
		if _, err := s.Insert(context.Background(), []vault.Record{r}); err != nil {
			b.Fatalf("Insert = %v", err)
		}
	}
	clk.Add(2 * time.Minute)
	runtime.GC()
	return s, clk
}

// BenchmarkPurgeStall fills a store with 1M CVC records, lets half of them
// expire, and purges them while another goroutine keeps inserting. It
// reports the longest insert (how long Purge kept it waiting, plus whatever
// else paused the process) and the time Purge took in all.
func BenchmarkPurgeStall(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	var worst, total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, clk := halfExpired(b, n)

		var wg sync.WaitGroup
		var longest time.Duration
		stop := make(chan struct{})
		wg.Go(func() {
			rec := make([]vault.Record, 1)
			for j := uint64(n); ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				rec[0] = cvcRecord(j, clk.Now())
				t := time.Now()
				if _, err := s.Insert(ctx, rec); err != nil {
					b.Errorf("Insert = %v", err)
					return
				}
				longest = max(longest, time.Since(t))
			}
		})
		time.Sleep(10 * time.Millisecond) // let the inserter start
		b.StartTimer()
		t := time.Now()
		if got := s.Purge(); got != n/2 {
			b.Errorf("Purge() = %d, want %d", got, n/2)
		}
		total += time.Since(t)
		b.StopTimer()
		close(stop)
		wg.Wait()
		worst = max(worst, longest)
		s.Close()
	}
	b.ReportMetric(float64(worst.Microseconds()), "max-insert-µs")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "purge-ms")
}

// BenchmarkPurgeStep fills a store with 1M CVC records, lets every other
// one expire, and times each step of a purge as Purge takes them, inside
// the lock: the worst is the longest an insert or a read can wait for the
// janitor.
func BenchmarkPurgeStep(b *testing.B) {
	const n = 1_000_000
	var steps []time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, clk := halfExpired(b, n)
		b.StartTimer()
		timed := func(fn func()) {
			s.mu.Lock()
			t := time.Now()
			fn()
			steps = append(steps, time.Since(t))
			s.mu.Unlock()
		}
		now := clk.Now().UnixMilli()
		for id := 0; id < len(s.chunks); id++ {
			timed(func() { s.reclaimIfDue(id, now) })
			timed(func() { s.compactIfSparse(id) })
		}
		b.StopTimer()
		if got := s.Len(); got != n/2 {
			b.Errorf("Len() after the purge = %d, want %d", got, n/2)
		}
		s.Close()
	}
	slices.Sort(steps)
	µs := func(q float64) float64 { return float64(steps[int(q*float64(len(steps)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(float64(len(steps))/float64(b.N), "steps")
	b.ReportMetric(µs(0.5), "p50-µs")
	b.ReportMetric(µs(0.9), "p90-µs")
	b.ReportMetric(µs(0.99), "p99-µs")
	b.ReportMetric(µs(1), "max-µs")
}

// BenchmarkInsertFull measures inserts refused at the cap, the cost of
// overload.
func BenchmarkInsertFull(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s := New(WithJanitorInterval(0), WithMaxRecords(n))
	b.Cleanup(func() { s.Close() })
	now := time.Now()
	for i := range n {
		if _, err := s.Insert(ctx, []vault.Record{cvcRecord(uint64(i), now)}); err != nil {
			b.Fatalf("Insert = %v", err)
		}
	}
	var next atomic.Uint64
	next.Store(n)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rec := make([]vault.Record, 1)
		for pb.Next() {
			rec[0] = cvcRecord(next.Add(1), now)
			if _, err := s.Insert(ctx, rec); !errors.Is(err, ErrFull) {
				b.Errorf("Insert when full = %v, want %v", err, ErrFull)
				return
			}
		}
	})
}

// BenchmarkPurgeIdle times a purge that finds nothing to do, as the janitor
// runs it every second, on a store at the default cap with nothing expired.
func BenchmarkPurgeIdle(b *testing.B) {
	clk := &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clk.Now), WithJanitorInterval(0))
	defer s.Close()
	for j := range DefaultMaxRecords {
		r := cvcRecord(uint64(j), clk.Now())
		r.Expires = clk.Now().Add(time.Hour)
		if _, err := s.Insert(context.Background(), []vault.Record{r}); err != nil {
			b.Fatalf("Insert = %v", err)
		}
	}
	for b.Loop() {
		if n := s.Purge(); n != 0 {
			b.Fatalf("Purge() = %d, want 0", n)
		}
	}
	b.ReportMetric(float64(len(s.chunks)), "chunks")
}
