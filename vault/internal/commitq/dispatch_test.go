package commitq

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitHeld polls held until it is n, failing t after 5s.
func waitHeld(t *testing.T, held *atomic.Int64, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); held.Load() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("held %d requests, want %d", held.Load(), n)
		}
	}
}

// TestDispatchBatches: a lone request goes at once; behind a batch in
// flight, a backlog under Overlap waits for it, a request that would take the
// next batch past Max closes that batch and starts one of its own, and
// closing the queue hands out everything queued before.
func TestDispatchBatches(t *testing.T) {
	queue := make(chan int, 8) // each request is its own size
	gate := make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	var held atomic.Int64
	ran, started := make(chan struct{}), make(chan struct{})
	go func() {
		Dispatch[int]{
			Queue: queue, Size: func(n int) int { return n }, Max: 4, Overlap: 4, Workers: 2, Held: &held,
			Commit: func(b []int) {
				mu.Lock()
				batches = append(batches, slices.Clone(b))
				first := len(batches) == 1
				mu.Unlock()
				if first {
					close(started)
					<-gate // the first batch stays in flight
				}
			},
		}.Run()
		close(ran)
	}()
	queue <- 1
	<-started
	queue <- 1
	queue <- 1
	waitHeld(t, &held, 2) // 2 records < Overlap: they wait
	mu.Lock()
	if len(batches) != 1 {
		t.Fatalf("batches %v: a backlog under Overlap started a second batch", batches)
	}
	mu.Unlock()
	queue <- 3 // 2+3 > Max: [1 1] goes to the idle worker; [3], under Overlap, waits
	waitHeld(t, &held, 1)
	time.Sleep(20 * time.Millisecond)
	if held.Load() != 1 {
		t.Fatal("[3] was handed out with a batch in flight and 3 records < Overlap")
	}
	close(queue)
	close(gate)
	<-ran
	want := [][]int{{1}, {1, 1}, {3}}
	if !slices.EqualFunc(batches, want, slices.Equal[[]int]) {
		t.Errorf("batches %v, want %v", batches, want)
	}
}

// TestDispatchStop: closing Stop drops what Run holds unsent and returns
// once the batch in flight has finished.
func TestDispatchStop(t *testing.T) {
	queue := make(chan int, 8)
	stop := make(chan struct{})
	gate := make(chan struct{})
	var held atomic.Int64
	var committed atomic.Int64
	ran := make(chan struct{})
	go func() {
		Dispatch[int]{
			Queue: queue, Stop: stop, Size: func(int) int { return 1 }, Max: 8, Overlap: 8, Workers: 2, Held: &held,
			Commit: func(b []int) { committed.Add(int64(len(b))); <-gate },
		}.Run()
		close(ran)
	}()
	queue <- 1
	for committed.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	queue <- 1
	queue <- 1
	waitHeld(t, &held, 2)
	close(stop)
	select {
	case <-ran:
		t.Fatal("Run returned with a batch in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(gate)
	<-ran
	if n := committed.Load(); n != 1 {
		t.Errorf("%d requests committed, want 1 (the held ones dropped)", n)
	}
}
