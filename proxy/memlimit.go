package proxy

import (
	"context"
	"log/slog"
	"runtime/debug"
	rtmetrics "runtime/metrics"
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

const (
	// memHeadroom over the process's need is the least soft limit in
	// force: the heap may grow by half the live data before a collection.
	memHeadroom = 1.5
	// memLimitEvery is how often MemoryLimiter looks at the need.
	memLimitEvery = 250 * time.Millisecond
)

// memSamples are the runtime metrics MemoryLimiter reads.
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

// MemoryLimiter keeps the runtime's soft memory limit at limit() (read
// anew each time, so a reload can change it), raised to memHeadroom × the
// process's need while that is higher (see above), until ctx ends. It logs
// each time the limit in force moves above limit() and back.
func MemoryLimiter(ctx context.Context, limit func() int64, log *slog.Logger) {
	s := make([]rtmetrics.Sample, len(memSamples))
	for i, name := range memSamples {
		s[i].Name = name
	}
	current := limit()
	debug.SetMemoryLimit(current)
	t := time.NewTicker(memLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rtmetrics.Read(s)
		limit := limit()
		want := effectiveLimit(limit, memNeed(s))
		// Move only on a change of 1/16 or more: SetMemoryLimit is cheap,
		// but the logs should not flap.
		if d := want - current; d > current/16 || -d > current/16 || (want == limit && current != limit) {
			debug.SetMemoryLimit(want)
			switch {
			case want > limit && current == limit:
				log.Warn("memory soft limit raised above limits.memory: tok needs more now", "limit", want, "configured", limit)
			case want == limit:
				log.Info("memory soft limit back at limits.memory", "limit", limit)
			}
			current = want
		}
	}
}
