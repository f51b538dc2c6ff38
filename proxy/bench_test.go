package proxy

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/memory"
)

// Benchmarks of POST /handle over loopback with 64 concurrent
// clients against a vault already holding -bench.records records, on the
// durable bbolt store and on the memory store. Run:
//
//	go test -run '^$' -bench . -benchtime 20000x ./vault/bolt ./proxy
var (
	benchRecords = flag.Int("bench.records", 1_000_000, "records in the vault before the /handle and vault benchmarks run")
	benchProfile = flag.String("bench.cpuprofile", "", "write a CPU profile of each BenchmarkHandle run, without the prefill, to `file`.bolt and file.memory")
)

// benchClients is the number of concurrent HTTP clients.
const benchClients = 64

// benchTarget is a tok server on a prefilled store, built once per
// process and shared by the benchmark's b.N ramp-up runs.
type benchTarget struct {
	url   string
	vault *vault.Vault
	bolt  *bolt.Store // nil for memory
	stop  func()
}

var (
	benchMu    sync.Mutex
	benchCache = map[string]*benchTarget{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	for _, t := range benchCache {
		t.stop()
	}
	os.Exit(code)
}

func benchServer(b *testing.B, kind string) *benchTarget {
	benchMu.Lock()
	defer benchMu.Unlock()
	if t := benchCache[kind]; t != nil {
		return t
	}
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		b.Fatal(err)
	}
	t := &benchTarget{}
	var store vault.Durable
	var dir string
	start := time.Now()
	switch kind {
	case "bolt":
		if dir, err = os.MkdirTemp("", "tok-bench-*"); err != nil {
			b.Fatal(err)
		}
		if t.bolt, err = bolt.Open(filepath.Join(dir, "tok.db"), bolt.Options{}); err != nil {
			b.Fatal(err)
		}
		if err := bolt.Prefill(t.bolt, *benchRecords, keys); err != nil {
			b.Fatal(err)
		}
		store = t.bolt
	case "memory":
		m := memory.New(memory.WithMaxRecords(0)) // the 1M-record baseline, beyond the default cap
		store = m
		v, _ := vault.New(m, keys)
		pans := make([]vault.Request, 1000)
		for n := 0; n < *benchRecords; n += len(pans) {
			for i := range pans {
				pans[i] = vault.Request{Value: benchPAN()}
			}
			if _, err := v.Tokenize(b.Context(), pans); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Logf("%s vault prefilled with %d records in %v", kind, *benchRecords, time.Since(start).Round(time.Millisecond))
	if t.vault, err = vault.New(store, keys); err != nil {
		b.Fatal(err)
	}
	// All load comes from one address: the anonymous budget
	// would refuse a long run.
	srv, err := New(Options{Vault: t.vault, Store: store, Logger: slog.New(slog.DiscardHandler),
		Budgets: Budgets{HandleAnonymous: MaxBudget}})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.PublicHandler())
	t.url = hs.URL
	t.stop = func() {
		hs.Close()
		store.Close()
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	benchCache[kind] = t
	return t
}

var panCounter atomic.Uint64

func init() {
	var b [8]byte
	rand.Read(b[:])
	panCounter.Store(binary.LittleEndian.Uint64(b[:]) % 1e13)
}

// benchPAN returns a PAN never used before in this process (and, with a
// random start, almost surely not in the prefilled vault): every request
// is a new durable record.
func benchPAN() string {
	base := fmt.Sprintf("4%014d", panCounter.Add(1)%1e14)
	for c := byte('0'); c <= '9'; c++ {
		if p := base + string(c); vault.Luhn(p) {
			return p
		}
	}
	panic("unreachable: one check digit always fits")
}

// BenchmarkHandle measures durable tokenizations per second through
// POST /handle with 64 keep-alive clients, and their p50/p99 latency.
func BenchmarkHandle(b *testing.B) {
	for _, kind := range []string{"bolt", "memory"} {
		b.Run(kind, func(b *testing.B) {
			t := benchServer(b, kind)
			host := strings.TrimPrefix(t.url, "http://")
			var before bolt.Stats
			if t.bolt != nil {
				before = t.bolt.Stats()
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
			if *benchProfile != "" && b.N > 1 { // not the 1-request probe run
				stop := startProfile(b, *benchProfile+"."+kind)
				defer stop()
			}
			b.ResetTimer()
			start, cpu0, idle0 := time.Now(), processCPU(), machineIdle()
			b.RunParallel(func(pb *testing.PB) {
				// A keep-alive connection per client with requests written
				// by hand: a light load generator leaves the 2 cores to tok
				// (net/http's client costs about as much CPU as the server).
				conn, err := net.Dial("tcp", host)
				if err != nil {
					b.Error(err)
					return
				}
				defer conn.Close()
				br := bufio.NewReader(conn)
				var mine []time.Duration
				var req []byte
				for pb.Next() {
					body := `{"pan_number":"` + benchPAN() + `"}`
					req = fmt.Appendf(req[:0], "POST /handle HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
					t0 := time.Now()
					if _, err := conn.Write(req); err != nil {
						b.Error(err)
						return
					}
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("POST /handle = %d", resp.StatusCode)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			cpu, idle := processCPU()-cpu0, machineIdle()-idle0
			b.StopTimer()
			reportLatency(b, lat, elapsed)
			if len(lat) > 0 {
				// The process holds tok and the load generator; idle is
				// what the whole machine left unused, in cores.
				b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)), "cpu-us/req")
				b.ReportMetric(idle.Seconds()/elapsed.Seconds(), "idle-cores")
			}
			if t.bolt != nil {
				after := t.bolt.Stats()
				if c := after.Commits - before.Commits; c > 0 {
					b.ReportMetric(float64(after.Records-before.Records)/float64(c), "records/commit")
					b.ReportMetric(float64(c)/elapsed.Seconds(), "commits/s")
				}
			}
		})
	}
}

func reportLatency(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(0.999), "p999-ms")
}

// processCPU is the user+system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineIdle is the idle (and iowait) time of all CPUs since boot, from
// /proc/stat; zero where there is none.
func machineIdle() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait ...
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, s := range f[4:6] {
		n, _ := strconv.ParseInt(s, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ
}

// startProfile writes a CPU profile of the benchmark's measured part to
// file (go test's -cpuprofile would mostly show the prefill).
func startProfile(b *testing.B, file string) (stop func()) {
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// BenchmarkVault measures the vault itself on the prefilled bbolt store:
// Tokenize of a new PAN (one durable commit each, single caller),
// Tokenize of a PAN seen before (a read), and Reveal.
func BenchmarkVault(b *testing.B) {
	t := benchServer(b, "bolt")
	ctx := b.Context()
	known := benchPAN()
	toks, err := t.vault.Tokenize(ctx, []vault.Request{{Value: known}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("tokenize-new", func(b *testing.B) {
		for b.Loop() {
			if _, err := t.vault.Tokenize(ctx, []vault.Request{{Value: benchPAN()}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokenize-new-parallel", func(b *testing.B) {
		b.SetParallelism(benchClients / 2)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := t.vault.Tokenize(ctx, []vault.Request{{Value: benchPAN()}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("tokenize-hit", func(b *testing.B) {
		for b.Loop() {
			got, err := t.vault.Tokenize(ctx, []vault.Request{{Value: known}})
			if err != nil || got[0] != toks[0] {
				b.Fatalf("Tokenize(known) = %v, %v; want %s", got, err, toks[0])
			}
		}
	})
	b.Run("reveal", func(b *testing.B) {
		for b.Loop() {
			rv, err := t.vault.Reveal(ctx, toks[0])
			if err != nil || rv.Value != known {
				b.Fatalf("Reveal = %v", err)
			}
		}
	})
}
