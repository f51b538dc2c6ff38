package bolt

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

var (
	cpPrefill = flag.Int("checkpoint-prefill", 1_000_000, "records BenchmarkCheckpoint prefills before it starts")
	cpSizes   = flag.String("checkpoint-records", "8192,16384,32768,65536", "records per checkpoint BenchmarkCheckpoint tries (comma-separated)")
	cpChunks  = flag.String("checkpoint-chunks", "0,1024,4096,16384", "entries per chunk BenchmarkCheckpoint tries (0: the whole checkpoint in one transaction)")
)

// BenchmarkCheckpoint writes checkpoints of -checkpoint-records records
// (two entries each, token and fingerprint) into a vault prefilled with
// -checkpoint-prefill records, in chunks of -checkpoint-chunks entries, flat
// out, and reports per record the time, CPU, heap allocation and bytes
// written to the device, and per transaction the heap allocated (about the
// transient heap a transaction holds: its dirty pages and nodes). One op is
// one checkpoint. Pass the flags after -args; for example
//
//	go test -run '^$' -bench 'Checkpoint$' -benchtime 3x ./vault/bolt -args -checkpoint-chunks=0,4096
//
// (/proc/self/io's write_bytes is no use here: with large folios it counts
// a whole folio for every page dirtied in it, so it reports small
// transactions as writing several times what reaches the device.)
func BenchmarkCheckpoint(b *testing.B) {
	// Each case starts from a copy of the same prefilled file, so that
	// the tree it writes into is the same size.
	keys := newKeys(b)
	template := filepath.Join(b.TempDir(), "template.db")
	s, err := Open(template, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := Prefill(s, *cpPrefill, keys); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, n := range intList(b, *cpSizes) {
		for _, c := range intList(b, *cpChunks) {
			b.Run(fmt.Sprintf("records=%d/chunk=%d", n, c), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "tok.db")
				if err := copyFile(path, template); err != nil {
					b.Fatal(err)
				}
				s, err := Open(path, Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				benchCheckpoint(b, s, keys, n, c)
			})
		}
	}
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func benchCheckpoint(b *testing.B, s *Store, keys *vault.Keyring, n, chunkSize int) {
	if chunkSize == 0 {
		chunkSize = 2 * n
	}
	var elapsed, cpu time.Duration
	var alloc, dev uint64
	var txs int
	now := time.Now()
	for b.Loop() {
		b.StopTimer()
		m := newMemtable()
		for range n {
			r := prefillRecord(keys, now)
			m.set(bTokens, []byte(r.Token), vault.MarshalRecord(r))
			m.set(bFingerprints, r.Fingerprint, []byte(r.Token))
		}
		chunks := m.chunks(chunkSize)
		runtime.GC()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		cpu0, dev0 := cpuTime(), devWritten()
		start := time.Now()
		b.StartTimer()
		for i, c := range chunks {
			if err := s.commitChunk(c, 1, i == len(chunks)-1); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		elapsed += time.Since(start)
		cpu += cpuTime() - cpu0
		dev += devWritten() - dev0
		runtime.ReadMemStats(&ms1)
		alloc += ms1.TotalAlloc - ms0.TotalAlloc
		txs += len(chunks)
		b.StartTimer()
	}
	recs := float64(n * b.N)
	b.ReportMetric(float64(elapsed.Microseconds())/recs, "µs/record")
	b.ReportMetric(float64(cpu.Microseconds())/recs, "cpu-µs/record")
	b.ReportMetric(float64(dev)/recs, "dev-B/record")
	b.ReportMetric(float64(alloc)/recs, "alloc-B/record")
	b.ReportMetric(float64(alloc)/float64(txs)/(1<<20), "alloc-MiB/tx")
	b.ReportMetric(float64(elapsed.Milliseconds())/float64(txs), "ms/tx")
}

// BenchmarkMemtableBytes fills the active memtable through Insert (as
// /handle does: one record per call, 64 callers) with b.N records and
// reports the live heap per memtable entry.
func BenchmarkMemtableBytes(b *testing.B) {
	s, keys := openTemp(b, walOnly), newKeys(b)
	ctx := context.Background()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	s.memMu.RLock()
	n := s.active.n
	s.memMu.RUnlock()
	b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/float64(n), "heap-B/entry")
	b.ReportMetric(float64(n), "entries")
}

func intList(b *testing.B, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			b.Fatalf("bad list %q: %v", s, err)
		}
		out = append(out, n)
	}
	return out
}

// devWritten is the bytes written to the machine's block devices (all
// processes: a rough figure on a shared machine), 0 where Linux's
// /sys/block is missing.
func devWritten() uint64 {
	devs, _ := filepath.Glob("/sys/block/*/stat")
	var n uint64
	for _, p := range devs {
		if d := filepath.Base(filepath.Dir(p)); strings.HasPrefix(d, "loop") || strings.HasPrefix(d, "ram") || strings.HasPrefix(d, "zram") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) > 6 {
			sectors, _ := strconv.ParseUint(f[6], 10, 64)
			n += sectors * 512
		}
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
