package main

import (
	"fmt"
	"math"
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses: fields are counted from
	// the last ")".
	stat := "4242 (tok (x) y) S 1 4242 4242 0 -1 4194560 2500 0 0 0 150 25 0 0 20 0 9 0 123 1000000 2000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 175 * time.Second / clockTicks; got != want {
		t.Errorf("cpu = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 tok S 1", "4242 (tok) S 1 2 3", "4242 (tok) S 1 4242 4242 0 -1 4194560 2500 0 0 0 x 25 0"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseStatCPU(%q) = nil error", bad)
		}
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\ttok\nVmPeak:\t 1000 kB\nVmRSS:\t   20480 kB\nRssAnon:\t   12288 kB\nRssFile:\t    8192 kB\nThreads:\t9\n"
	got, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got.RSS != 20480<<10 || got.RSSAnon != 12288<<10 {
		t.Errorf("got %+v, want RSS 20 MiB and RssAnon 12 MiB", got)
	}
	for _, bad := range []string{"Name:\ttok\n", "VmRSS:\t1 kB\n", "VmRSS:\tx kB\nRssAnon:\t1 kB\n", "VmRSS:\t1 MB\nRssAnon:\t1 kB\n"} {
		if _, err := parseStatus([]byte(bad)); err == nil {
			t.Errorf("parseStatus(%q) = nil error", bad)
		}
	}
}

// TestProcSelf reads this process's own figures: the parsers agree with
// the running kernel's format.
func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Error(err)
	}
	m, err := memoryUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.RSSAnon <= 0 || m.RSSAnon > m.RSS {
		t.Errorf("memory usage %+v is implausible", m)
	}
}

func TestBucketQuantile(t *testing.T) {
	const h = "tok_store_commit_duration_seconds"
	expo := func(counts ...int) []byte {
		bounds := []string{"0.0005", "0.001", "0.0025", "+Inf"}
		var b []byte
		b = append(b, "# TYPE "+h+" histogram\n"...)
		for i, c := range counts {
			b = fmt.Appendf(b, "%s_bucket{le=%q} %d\n", h, bounds[i], c)
		}
		return fmt.Appendf(b, "%s_count %d\n", h, counts[len(counts)-1])
	}
	// Before: 10 commits, all under 0.5 ms. After: 100 more, of which 90
	// under 0.5 ms, 8 more under 1 ms, 1 more under 2.5 ms, 1 beyond.
	before, after := expo(10, 10, 10, 10), expo(100, 108, 109, 110)
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 0.0005}, {0.9, 0.0005}, {0.95, 0.001}, {0.99, 0.0025}, {1, math.Inf(1)}} {
		got, ok := bucketQuantile(before, after, h, tc.q)
		if !ok || got != tc.want {
			t.Errorf("q %v = %v, %v; want %v, true", tc.q, got, ok, tc.want)
		}
	}
	if _, ok := bucketQuantile(after, after, h, 0.99); ok {
		t.Error("no observations in between: ok = true")
	}
	if _, ok := bucketQuantile(nil, []byte(h+"_bucket{le=\"1\"} \n"), h, 0.99); ok {
		t.Error("a bucket line without a count was read")
	}
	if _, ok := bucketQuantile(nil, []byte("other_bucket{le=\"1\"} 5\n"), h, 0.99); ok {
		t.Error("another histogram's buckets were read")
	}
}
