package memlimit

import (
	"bytes"
	"log/slog"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEffectiveLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		configured int64
		need       uint64
		want       int64
	}{
		{48 * mib, 20 * mib, 48 * mib},   // room to spare: the configured limit
		{48 * mib, 32 * mib, 48 * mib},   // exactly 1.5x
		{48 * mib, 40 * mib, 60 * mib},   // 1.5x the need
		{48 * mib, 100 * mib, 150 * mib}, // overload: never a limit the process is already at
	} {
		if got := effectiveLimit(tc.configured, tc.need); got != tc.want {
			t.Errorf("effectiveLimit(%d MiB, %d MiB) = %d MiB, want %d MiB", tc.configured/mib, tc.need/mib, got/mib, tc.want/mib)
		}
	}
}

// The limiter raises the soft limit above limits.memory while the live heap
// needs it, and lowers it back once the need is gone. Not parallel: the
// soft limit is the process's.
func TestMemoryLimiter(t *testing.T) {
	const configured = 128 << 20
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	var log syncBuffer
	l := New(func() int64 { return configured }, slog.New(slog.NewJSONHandler(&log, nil)))
	l.Start()
	t.Cleanup(l.Stop)

	waitLimit := func(what string, ok func(int64) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC()
			l := debug.SetMemoryLimit(-1)
			if ok(l) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("soft limit %d MiB: %s", l>>20, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLimit("want limits.memory at start", func(l int64) bool { return l == configured })

	ballast := make([]byte, 160<<20) // live, and more than the limit allows for
	for i := range ballast {
		ballast[i] = 1 // touched, so it is really there
	}
	waitLimit("want it raised to at least 1.5x the 160 MiB live", func(l int64) bool { return l >= 240<<20 })
	runtime.KeepAlive(ballast)
	ballast = nil
	waitLimit("want it back at limits.memory once the heap shrank", func(l int64) bool { return l == configured })
	// The limiter sets the limit, then logs: the line may trail the limit.
	deadline := time.Now().Add(10 * time.Second)
	for _, msg := range []string{"memory soft limit raised above limits.memory", "memory soft limit back at limits.memory"} {
		for !strings.Contains(log.String(), msg) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(log.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, log.String())
		}
	}
}

// TestLimiterStop: Stop ends the goroutine (it returns only once it has),
// and Start after Stop starts nothing.
func TestLimiterStop(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	before := runtime.NumGoroutine()
	l := New(func() int64 { return 1 << 40 }, slog.New(slog.DiscardHandler))
	l.Stop() // before Start: nothing to stop
	l = New(func() int64 { return 1 << 40 }, slog.New(slog.DiscardHandler))
	l.Start()
	l.Start()
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("soft limit after Start = %d, want %d", got, int64(1<<40))
	}
	l.Stop()
	l.Stop()
	l.Start()
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Stop and a Start after it, want at most %d as before", n, before)
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer for the limiter's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
