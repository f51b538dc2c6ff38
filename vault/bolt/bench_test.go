package bolt

import (
	"context"
	"flag"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

var (
	sizeTokens = flag.Int("size-tokens", 1_000_000, "records BenchmarkBytesPerToken writes")
	sizeBatch  = flag.Int("size-batch", 5000, "records per transaction in BenchmarkBytesPerToken")
	prefilled  = flag.Int("insert-prefill", 0, "records BenchmarkInsertParallel prefills before it starts")
)

// BenchmarkSingleWriterCommit is one goroutine inserting one record per
// call: every op is one durable commit, so ops/s is the disk's fsync'd
// single-writer commit rate.
func BenchmarkSingleWriterCommit(b *testing.B) {
	s, keys := openTemp(b, Options{}), newKeys(b)
	ctx := context.Background()
	start := time.Now()
	for b.Loop() {
		if _, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)}); err != nil {
			b.Fatalf("Insert = %v", err)
		}
	}
	st := s.Stats()
	b.ReportMetric(float64(st.Commits)/time.Since(start).Seconds(), "commits/s")
	b.ReportMetric(float64(st.Records)/float64(st.Commits), "records/commit")
}

// BenchmarkInsertParallel is 64 goroutines each inserting one record per
// call, as 64 concurrent /handle requests would: the committer folds them
// into shared commits. With -insert-prefill=1000000 and a large
// -benchtime it shows the sustained rate, checkpoints into a big tree
// included.
func BenchmarkInsertParallel(b *testing.B) {
	var commitTime atomic.Int64
	s, keys := openTemp(b, Options{OnCommit: func(d time.Duration, ops int) { commitTime.Add(int64(d)) }}), newKeys(b)
	ctx := context.Background()
	if *prefilled > 0 {
		if err := Prefill(s, *prefilled, keys); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
	}
	b.SetParallelism(max(1, 64/testingProcs()))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)}); err != nil {
				b.Errorf("Insert = %v", err)
				return
			}
		}
	})
	st := s.Stats()
	b.ReportMetric(float64(st.Records)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(st.Records)/float64(st.Commits), "records/commit")
	b.ReportMetric(float64(commitTime.Load())/float64(st.Commits)/1e6, "ms/commit")
	b.ReportMetric(float64(st.Checkpoints), "checkpoints")
	if st.Checkpoints > 0 {
		b.ReportMetric(st.CheckpointTime.Seconds()*1e3/float64(st.Checkpoints), "ms/checkpoint")
		b.ReportMetric(float64(st.CheckpointEntries)/float64(st.Checkpoints), "entries/checkpoint")
	}
}

// BenchmarkBytesPerToken fills a store with -size-tokens records (1M by
// default) in transactions of -size-batch records and reports the file size
// per token, fingerprint index included, and the part of it the two trees
// occupy. Run it with -benchtime=1x. -size-batch=50000 measures what
// Prefill leaves behind; the default of 5000 is closer to serving traffic
// (commits of up to a few hundred records), where copy-on-write garbage is
// small next to the trees.
func BenchmarkBytesPerToken(b *testing.B) {
	s, keys := openTemp(b, Options{}), newKeys(b)
	n := *sizeTokens
	start := time.Now()
	for range b.N { // 1 unless -benchtime asks for more
		if err := prefill(s, n, keys, *sizeBatch); err != nil {
			b.Fatalf("prefill = %v", err)
		}
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "prefill-records/s")
	reportSize(b, s)
}

// reportSize reports the store's file size and its trees' size per token.
func reportSize(b *testing.B, s *Store) {
	b.Helper()
	var keys, trees int
	err := s.db.View(func(tx *bbolt.Tx) error {
		keys = tx.Bucket(bucketTokens).Stats().KeyN
		for _, name := range [][]byte{bucketTokens, bucketFingerprints} {
			st := tx.Bucket(name).Stats()
			trees += st.LeafAlloc + st.BranchAlloc
			b.Logf("%s: %d keys, depth %d, %d leaf pages (%.0f%% full), %d branch pages",
				name, st.KeyN, st.Depth, st.LeafPageN, 100*float64(st.LeafInuse)/float64(st.LeafAlloc), st.BranchPageN)
		}
		b.Logf("file high-water mark %d bytes", tx.Size())
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/float64(keys), "file-bytes/token")
	// The WAL segments are preallocated: a fixed cost, whatever the count.
	var wal int64
	for _, p := range walPaths(s.Path()) {
		if fi, err := os.Stat(p); err == nil {
			wal += fi.Size()
		}
	}
	b.ReportMetric(float64(fi.Size()+wal)/float64(keys), "disk-bytes/token")
	b.ReportMetric(float64(trees)/float64(keys), "tree-bytes/token")
	b.ReportMetric(float64(keys), "tokens")
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
