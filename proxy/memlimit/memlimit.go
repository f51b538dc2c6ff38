// Package memlimit keeps the Go runtime's soft memory limit at tok's
// limits.memory, raised while the process needs more.
package memlimit

import (
	"log/slog"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// Memory soft limit.
//
// limits.memory becomes the Go runtime's soft memory limit, so the garbage
// collector keeps the footprint near it instead of letting the heap grow to
// twice the live data. A soft limit below what the process really needs
// is a trap, though: the collector then runs back to back and allocating
// goroutines park in GC assists. Measured under 1.5× overload on 1,024
// connections with a fixed 48 MiB limit: ~60 MB needed (connection
// buffers and stacks), hundreds of handlers parked in assists, 116
// requests/s served instead of thousands. So the limit in force is never
// below memHeadroom × what the process needs (the live heap after the last
// collection plus the runtime's non-heap memory); MemoryLimiter raises it
// while the need lasts and lowers it back to limits.memory after.
//
// A [Limiter] owns the goroutine that does this: [Limiter.Start] starts
// it, [Limiter.Stop] ends it and waits for it.

const (
	// memHeadroom over the process's need is the least soft limit in
	// force: the heap may grow by half the live data before a collection.
	memHeadroom = 1.5
	// memLimitEvery is how often a Limiter looks at the need.
	memLimitEvery = 250 * time.Millisecond
)

// memSamples are the runtime metrics a Limiter reads.
var memSamples = []string{
	"/gc/heap/live:bytes",         // live heap after the last collection
	"/memory/classes/total:bytes", // everything the runtime has mapped
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

// memNeed returns the live heap plus the runtime's memory outside the heap
// (stacks, metadata, buffers), in bytes.
func memNeed(s []rtmetrics.Sample) uint64 {
	v := func(i int) uint64 {
		if s[i].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	heap := v(2) + v(3) + v(4) + v(5)
	var nonHeap uint64
	if total := v(1); total > heap {
		nonHeap = total - heap
	}
	return v(0) + nonHeap
}

// effectiveLimit is the soft limit to put in force: the configured one, or
// memHeadroom × need if that is higher.
func effectiveLimit(configured int64, need uint64) int64 {
	return max(configured, int64(float64(need)*memHeadroom))
}

// Limiter keeps the runtime's soft memory limit at limit() (read anew
// each time, so a reload can change it), raised to memHeadroom × the
// process's need while that is higher (see above), from Start to Stop. It
// logs each time the limit in force moves above limit() and back. Its
// methods are safe for concurrent use.
type Limiter struct {
	limit func() int64
	log   *slog.Logger

	mu      sync.Mutex
	stop    chan struct{} // closed by Stop; nil until Start
	done    chan struct{} // closed when the goroutine has returned
	stopped bool
}

// New returns a Limiter for limit, logging to log; it does nothing until
// [Limiter.Start].
func New(limit func() int64, log *slog.Logger) *Limiter {
	return &Limiter{limit: limit, log: log}
}

// Start puts limit() in force and starts the goroutine that follows the
// process's need. Calls after the first, or after Stop, do nothing.
func (l *Limiter) Start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil || l.stopped {
		return
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	current := l.limit()
	debug.SetMemoryLimit(current)
	go l.run(current)
}

// Stop ends the goroutine and waits for it to return. The limit in force
// stays as it was. Stop without Start, or a second Stop, does nothing.
func (l *Limiter) Stop() {
	l.mu.Lock()
	stop, done := l.stop, l.done
	if l.stopped || stop == nil {
		l.stopped = true
		l.mu.Unlock()
		return
	}
	l.stopped = true
	l.mu.Unlock()
	close(stop)
	<-done
}

// run follows the need every memLimitEvery until Stop.
func (l *Limiter) run(current int64) {
	defer close(l.done)
	s := make([]rtmetrics.Sample, len(memSamples))
	for i, name := range memSamples {
		s[i].Name = name
	}
	t := time.NewTicker(memLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		rtmetrics.Read(s)
		current = l.adjust(current, memNeed(s))
	}
}

// adjust puts the limit for need in force if it moved enough, logging
// the moves above limit() and back, and returns the limit in force.
func (l *Limiter) adjust(current int64, need uint64) int64 {
	limit := l.limit()
	want := effectiveLimit(limit, need)
	// Move only on a change of 1/16 or more: SetMemoryLimit is cheap,
	// but the logs should not flap.
	d := want - current
	if d <= current/16 && -d <= current/16 && (want != limit || current == limit) {
		return current
	}
	debug.SetMemoryLimit(want)
	switch {
	case want > limit && current == limit:
		l.log.Warn("memory soft limit raised above limits.memory: tok needs more now", "limit", want, "configured", limit)
	case want == limit:
		l.log.Info("memory soft limit back at limits.memory", "limit", limit)
	}
	return want
}
