package postgres

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// BenchmarkStore runs the store-neutral benchmarks every store shares.
func BenchmarkStore(b *testing.B) {
	testURL(b)
	storetest.Bench(b, func(b *testing.B) vault.Store { return openFresh(b) })
}

// BenchmarkInsertParallel measures durable tokenizations per second: 64
// goroutines, each inserting one new convergent record per call, as 64
// concurrent /handle requests would, group-committed by at most batches
// transactions in flight. The inserts/s metric compares directly with
// vault/bolt's, and records/commit shows how well calls were grouped.
func BenchmarkInsertParallel(b *testing.B) {
	const goroutines = 64
	for _, batches := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("batches=%d", batches), func(b *testing.B) {
			url := testURL(b)
			s := openStore(b, url, Options{Schema: newSchema(b, url), MaxConns: 16, MaxBatches: batches})
			keys := keyring(b)
			ctx := context.Background()
			// Warm up: dial the pool's connections and prepare the
			// statements on each before timing.
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					if _, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)}); err != nil {
						b.Errorf("Insert = %v", err)
					}
				})
			}
			wg.Wait()
			b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)}); err != nil {
						b.Errorf("Insert = %v", err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
			st := s.Stats()
			b.ReportMetric(float64(st.Records)/float64(max(st.Commits, 1)), "records/commit")
		})
	}
}
