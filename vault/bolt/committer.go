package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// Group commit.
//
// Every write is a request on s.queue. One goroutine, the committer, takes
// the first request, drains whatever else is already queued (without
// waiting, up to MaxBatchOps callers and MaxBatchRecords records), runs all
// of them in ONE bbolt read-write transaction, commits it (write + fsync) and
// answers every caller. While it commits, new requests queue up and become
// the next batch. So a lone request pays exactly one commit, with no timer
// to wait for (bbolt's DB.Batch waits up to MaxBatchDelay, 10 ms, for
// company), and N concurrent callers share about one commit between them.
//
// Isolation: an op that fails rolls the whole transaction back; its caller
// gets the error and the batch is run again without it, so no caller's
// failure leaks into another's result. Ops must therefore be deterministic
// in the database state (random tokens are drawn by the caller, outside),
// and they may run more than once, like UpdateLockout's fn.

// Request states: a caller may withdraw a request whose context ends only
// while it is still queued; once the committer claims it, the caller waits
// for the commit's verdict so it never misreports durability.
const (
	statePending int32 = iota
	stateClaimed
	stateWithdrawn
)

// request is one caller's write.
type request struct {
	ctx context.Context
	// op does the caller's work inside the transaction. It must write
	// nothing it would not stand by if it returns an error: the batch is
	// rolled back and rerun without it in that case anyway.
	op func(tx *bbolt.Tx) error
	// records is how many records op may write (for the batch cap), and
	// stored how many it did write in its last run (for Stats).
	records, stored int
	state           atomic.Int32
	done            chan error // buffered: the committer never blocks on it
}

// errOpFailed marks a rollback caused by one op; the op's own error goes to
// its caller.
var errOpFailed = errors.New("op failed")

// write queues op as one request and waits for its commit; see submit.
func (s *Store) write(ctx context.Context, op func(tx *bbolt.Tx) error) error {
	return s.submit(ctx, &request{ctx: ctx, op: op, done: make(chan error, 1)})
}

// submit queues r and waits for its commit. It returns ctx.Err() if ctx
// ends while r is still queued (nothing was written), ErrClosed if the
// store is closed, and otherwise the commit's verdict: once the committer
// has claimed r, submit waits for the commit even if ctx ends, so a nil
// error always means durable and an error always means not written.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return vault.ErrClosed
	}
	select {
	case s.queue <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(statePending, stateWithdrawn) {
			return ctx.Err()
		}
		return <-r.done
	}
}

// commitLoop is the committer goroutine. It exits when the queue is closed
// and drained, so requests accepted before Close still commit.
func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*request, 0, s.opts.MaxBatchOps)
	var carry *request // a request that did not fit the previous batch
	for {
		batch = batch[:0]
		records := 0
		if carry != nil {
			batch, records, carry = append(batch, carry), carry.records, nil
		} else {
			r, ok := <-s.queue
			if !ok {
				return
			}
			batch, records = append(batch, r), r.records
		}
	drain:
		for len(batch) < s.opts.MaxBatchOps && records < s.opts.MaxBatchRecords {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break drain
				}
				if records+r.records > s.opts.MaxBatchRecords {
					carry = r
					break drain
				}
				batch, records = append(batch, r), records+r.records
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch) // drop references to answered requests
	}
}

// commit claims the live requests of batch, runs them in one transaction
// and answers each caller.
func (s *Store) commit(batch []*request) {
	live := batch[:0:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			if r.state.CompareAndSwap(statePending, stateWithdrawn) {
				r.done <- err
			}
			continue
		}
		if r.state.CompareAndSwap(statePending, stateClaimed) {
			live = append(live, r)
		}
	}
	for len(live) > 0 {
		start := time.Now()
		failed, opErr := -1, error(nil)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			for i, r := range live {
				if err := r.op(tx); err != nil {
					failed, opErr = i, err
					return errOpFailed
				}
			}
			return nil
		})
		if failed >= 0 {
			live[failed].done <- opErr
			live = slices.Delete(live, failed, failed+1)
			continue
		}
		if err != nil {
			err = fmt.Errorf("%w: commit vault: %w", vault.ErrUnavailable, err)
			for _, r := range live {
				r.stored = 0
				r.done <- err
			}
			return
		}
		d := time.Since(start)
		stored := 0
		for _, r := range live {
			stored += r.stored
		}
		s.commits.Add(1)
		s.ops.Add(uint64(len(live)))
		s.records.Add(uint64(stored))
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(d, len(live))
		}
		for _, r := range live {
			r.done <- nil
		}
		return
	}
}
