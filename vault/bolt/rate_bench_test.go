package bolt

import (
	"context"
	"flag"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

var (
	ratePrefill = flag.Int("rate-prefill", 200_000, "records BenchmarkInsertRate prefills before it starts")
	rateRate    = flag.Float64("rate-rate", 1000, "inserts per second BenchmarkInsertRate schedules")
	rateChunk   = flag.Int("rate-chunk", 0, "entries per checkpoint chunk in BenchmarkInsertRate (0: the default)")
	rateEntries = flag.Int("rate-entries", 0, "memtable entries that trigger a checkpoint in BenchmarkInsertRate (0: the default)")
	rateEvery   = flag.Duration("rate-every", 0, "checkpoint interval in BenchmarkInsertRate (0: the default)")
)

// BenchmarkInsertRate is the store under an open-loop load: one-record
// inserts started at -rate-rate per second (1,000 by default, the proxy
// benchmark's latency rate), each in its own goroutine, so a stall delays
// every insert started during it instead of hiding in a closed loop's
// pause. Each is timed from its call (not from its scheduled start, which
// would add the timer's oversleep). It runs b.N inserts into a vault
// prefilled with -rate-prefill records, checkpoints included: at 1,000/s
// the defaults trigger one every 48 s, so use -benchtime 130000x to spend
// about half the run beside one. It isolates the store's share of tok's
// tail latency from HTTP and the load generator.
func BenchmarkInsertRate(b *testing.B) {
	s := openTemp(b, Options{checkpointChunk: *rateChunk, checkpointEntries: *rateEntries, checkpointEvery: *rateEvery})
	keys := newKeys(b)
	if err := Prefill(s, *ratePrefill, keys); err != nil {
		b.Fatal(err)
	}
	recs := make([]vault.Record, b.N)
	for i := range recs {
		recs[i] = storetest.NewRecord(keys, false)
	}
	before := s.Stats()
	lat := make([]time.Duration, b.N)
	inFlight := make(chan struct{}, 64) // as the proxy benchmark's open loop
	var wg sync.WaitGroup
	ctx := context.Background()
	interval := time.Duration(float64(time.Second) / *rateRate)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		inFlight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inFlight }()
			t0 := time.Now()
			if _, err := s.Insert(ctx, recs[i:i+1]); err != nil {
				b.Errorf("Insert = %v", err)
			}
			lat[i] = time.Since(t0)
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(0.999), "p999-ms")
	b.ReportMetric(q(1), "max-ms")
	st := s.Stats()
	b.ReportMetric(float64(st.Checkpoints-before.Checkpoints), "checkpoints")
	b.ReportMetric(float64(st.CheckpointChunks-before.CheckpointChunks), "chunks")
}
