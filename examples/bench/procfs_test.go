package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// fixtureProc returns a proc reading a /proc made of files: pid → name →
// contents.
func fixtureProc(t *testing.T, files map[int]map[string]string) proc {
	t.Helper()
	root := t.TempDir()
	for pid, fs := range files {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, content := range fs {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return proc{fs}
}

// stat is a /proc/PID/stat line with the given parent and CPU ticks, and
// a command name with spaces and parentheses.
func stat(pid, ppid, utime, stime int) string {
	return strconv.Itoa(pid) + " (tok (x) y) S " + strconv.Itoa(ppid) + " 4242 4242 0 -1 4194560 2500 0 0 0 " +
		strconv.Itoa(utime) + " " + strconv.Itoa(stime) + " 0 0 20 0 9 0 123 1000000 2000 18446744073709551615" +
		" 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
}

func TestCPUTime(t *testing.T) {
	r := fixtureProc(t, map[int]map[string]string{
		4242: {"stat": stat(4242, 1, 150, 25)},
		4243: {"stat": "4243 tok S 1"},
	})
	got, err := r.cpuTime(4242)
	if want := 1750 * time.Millisecond; err != nil || got != want {
		t.Errorf("cpuTime = %v, %v; want %v", got, err, want)
	}
	if st, err := r.stat(4242); err != nil || st.PPID != 1 {
		t.Errorf("stat(4242).PPID = %d, %v; want 1", st.PPID, err)
	}
	for _, pid := range []int{4243, 4244} {
		if _, err := r.cpuTime(pid); err == nil {
			t.Errorf("cpuTime(%d) of a bad or missing stat = nil error", pid)
		}
	}
}

func TestMemoryUsage(t *testing.T) {
	r := fixtureProc(t, map[int]map[string]string{
		1: {"status": "Name:\ttok\nVmPeak:\t 1000 kB\nVmRSS:\t   20480 kB\nRssAnon:\t   12288 kB\nRssFile:\t    8192 kB\nThreads:\t9\n"},
		2: {"status": "Name:\ttok\n"},
	})
	got, err := r.memoryUsage(1)
	if err != nil {
		t.Fatal(err)
	}
	if got.RSS != 20480<<10 || got.RSSAnon != 12288<<10 {
		t.Errorf("got %+v, want RSS 20 MiB and RssAnon 12 MiB", got)
	}
	for _, pid := range []int{2, 3} {
		if _, err := r.memoryUsage(pid); err == nil {
			t.Errorf("memoryUsage(%d) without VmRSS = nil error", pid)
		}
	}
}

func TestTreeCPU(t *testing.T) {
	r := fixtureProc(t, map[int]map[string]string{
		10: {"stat": stat(10, 1, 100, 0)},  // the postmaster
		11: {"stat": stat(11, 10, 20, 30)}, // a backend
		12: {"stat": stat(12, 1, 500, 0)},  // someone else
	})
	if got, err := r.treeCPU(10); err != nil || got != 1500*time.Millisecond {
		t.Errorf("treeCPU(10) = %v, %v; want 1.5s", got, err)
	}
}

// TestProcSelf reads this process's own figures: procfs agrees with the
// running kernel's format.
func TestProcSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Error(err)
	}
	if st, err := sysProc.stat(os.Getpid()); err != nil || st.PPID != os.Getppid() {
		t.Errorf("own ppid %d, %v; want %d", st.PPID, err, os.Getppid())
	}
	m, err := memoryUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.RSSAnon <= 0 || m.RSSAnon > m.RSS {
		t.Errorf("memory usage %+v is implausible", m)
	}
}

// TestIdle: the machine's idle time is /proc/stat's idle plus iowait over
// all CPUs, in seconds (ticks of 1/100 s).
func TestIdle(t *testing.T) {
	root := t.TempDir()
	stat := "cpu  100 0 50 12000 34 0 0 0 0 0\ncpu0 50 0 25 6000 17 0 0 0 0 0\ncpu1 50 0 25 6000 17 0 0 0 0 0\n" +
		"intr 0\nctxt 0\nbtime 1700000000\nprocesses 1\nprocs_running 1\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n"
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte(stat), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := proc{fs}.idle()
	if want := 120340 * time.Millisecond; err != nil || got != want {
		t.Errorf("idle = %v, %v; want %v", got, err, want)
	}
	if _, err := fixtureProc(t, nil).idle(); err == nil {
		t.Error("idle without /proc/stat = nil error")
	}
	var s idleShare
	if s.String() != "-" {
		t.Errorf("unmeasured idleShare = %q, want -", s.String())
	}
	s.add(3*time.Second, 5*time.Second)
	s.add(1*time.Second, 5*time.Second)
	if s.String() != "0.40" {
		t.Errorf("idleShare of 4 s idle in 10 s = %q, want 0.40", s.String())
	}
}
