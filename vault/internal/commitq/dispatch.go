package commitq

import "sync/atomic"

// Dispatch forms a store's batches and hands each to one of a few
// committer goroutines, which write it as one transaction (or one script
// run, one round trip). A batch starts at once when nothing is in flight;
// while a batch is, the requests arriving keep joining the next one, and a
// second batch starts alongside only for a backlog of Overlap records or
// more (a burst one batch in flight cannot clear), up to Workers of them.
// So under load every batch is as large as the load makes it, since each
// costs the server about the same whatever its size, while a lone request
// never waits: there is no timer.
type Dispatch[R any] struct {
	// Queue holds the requests. Closing it stops Run once every request
	// queued before has been handed out and committed.
	Queue <-chan R
	// Stop, if not nil, stops Run when closed: the requests it holds and
	// has not handed out are dropped unanswered (their callers watch Stop
	// themselves), the batches in flight finish.
	Stop <-chan struct{}
	// Size is a request's number of records; Max the most a batch holds
	// (a request larger than Max is a batch of its own).
	Size func(R) int
	Max  int
	// Overlap is the backlog, in records, for which a batch starts while
	// another is in flight; Workers the most batches in flight.
	Overlap, Workers int
	// Commit writes one batch and answers its requests.
	Commit func([]R)
	// Held, if not nil, counts the requests taken off Queue for the next
	// batch and not yet handed out (for tests to tell queued requests).
	Held *atomic.Int64
}

// Run dispatches until Queue is closed and drained, or Stop is closed,
// and returns once the committers have finished.
func (d Dispatch[R]) Run() {
	work := make(chan []R)
	done := make(chan struct{}, d.Workers)
	finished := make(chan struct{})
	for range d.Workers {
		go func() {
			for batch := range work {
				d.Commit(batch)
				done <- struct{}{}
			}
			finished <- struct{}{}
		}()
	}
	defer func() {
		close(work)
		for range d.Workers {
			<-finished
		}
		d.hold(0)
	}()
	var batch []R
	var carry []R // at most one request: the one that did not fit batch
	records, inFlight := 0, 0
	queue := d.Queue
	for queue != nil || len(batch) > 0 {
		full := records >= d.Max || len(carry) > 0
		if len(batch) > 0 && inFlight < d.Workers &&
			(inFlight == 0 || full || records >= d.Overlap || queue == nil) {
			work <- batch
			inFlight++
			batch, records = nil, 0
			if len(carry) > 0 {
				batch, records, carry = carry, d.Size(carry[0]), nil
			}
			d.hold(len(batch))
			continue
		}
		in := queue
		if full {
			in = nil // wait for a committer before taking more
		}
		select {
		case r, ok := <-in:
			if !ok {
				queue = nil
				continue
			}
			if len(batch) > 0 && records+d.Size(r) > d.Max {
				carry = []R{r}
				d.hold(len(batch) + 1)
				continue
			}
			batch, records = append(batch, r), records+d.Size(r)
			d.hold(len(batch))
		case <-done:
			inFlight--
		case <-d.Stop:
			return
		}
	}
}

func (d Dispatch[R]) hold(n int) {
	if d.Held != nil {
		d.Held.Store(int64(n))
	}
}
