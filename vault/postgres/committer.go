package postgres

import (
	"context"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/internal/commitq"
)

// Group commit.
//
// Every Insert is a request on s.queue. One goroutine forms the batches
// ([commitq.Dispatch]), and a few committers (Options.MaxBatches) each write the
// batch handed to it as ONE transaction: one multi-row INSERT and one
// read-back of the conflicting fingerprints' winners, pipelined in one
// round trip (see insertRows). A lone request pays exactly one commit,
// with no timer to wait for. While a transaction is in flight the requests
// arriving queue up and become the next batch: N concurrent callers share
// one bind, execute and WAL flush between them, the way the bbolt store
// shares an fsync. A second transaction starts alongside only for a
// backlog of overlapRecords records or more (a burst one transaction in
// flight cannot clear), up to MaxBatches of them.
//
// Why not every committer at once: each transaction costs the server
// about as much CPU as a dozen rows, whatever its size. With the four
// committers each taking whatever was queued, 64 concurrent /handle
// callers on 2 cores committed 7.5 records per transaction at 45-59 µs of
// PostgreSQL CPU per record; dispatch makes it 14-17 records at 31-38 µs,
// and one tok on PostgreSQL rose from 0.53 to 0.66-0.70 of one on bbolt
// (examples/bench -handle, the bench README).
//
// Durability: a caller is answered only after its batch's transaction
// committed. Isolation: if a batch fails for a reason that is not the
// server's (a value the table refuses), every request of it is run again
// alone, so one caller's bad record does not fail or lose the others.
// Convergence and collision rules are those of a single call: within a
// batch, a later record with the fingerprint of an earlier one is Existing
// with it, whoever sent either.

// Defaults of Options.MaxBatches and Options.MaxBatchRecords.
const (
	// DefaultMaxBatches caps the transactions in flight. More than one
	// pays when commits are slow (a WAL flush on a busy disk, a distant
	// server): PostgreSQL flushes the WAL of concurrent commits together.
	DefaultMaxBatches = 4
	// DefaultMaxBatchRecords bounds the rows of one statement, so a batch
	// stays one short transaction.
	DefaultMaxBatchRecords = 512
)

// overlapRecords is the backlog for which dispatch starts a transaction
// while another is in flight. Measured with examples/bench -handle: 8
// gave smaller batches and more server CPU per record, 32 and "never"
// (one transaction at a time) left the server idle between commits.
const overlapRecords = 16

// request is one Insert call.
type request struct {
	commitq.Ticket
	rows []vault.Record // validated and normalized
	outs []vault.Outcome
}

// Stats counts the store's group commits since Open.
type Stats struct {
	Commits uint64 // committed batches
	Ops     uint64 // Insert calls they answered
	Records uint64 // records they stored (not Existing, not Collision)
}

// Stats returns the group commit counters; Records/Commits is the mean
// number of records per commit.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Ops: s.ops.Load(), Records: s.records.Load()}
}

// submit queues r and waits for its commit ([commitq.Queue.Submit]): nil
// means committed and an error means not written, except past the store's
// timeout (vault.commit_timeout) once a committer has claimed r, when the
// error wraps vault.ErrUnavailable and vault.ErrStalled and the write may
// still complete; a client retrying a convergent tokenization gets the
// same token either way.
func (s *Store) submit(ctx context.Context, r *request) ([]vault.Outcome, error) {
	if err := s.writes.Submit(ctx, r); err != nil {
		return nil, err
	}
	return r.outs, nil
}

// writeQueue is s.queue as its callers and the committers use it; start
// keeps it in s.writes. A request withdrawn because its caller's context
// ended gets that context's error, wrapped as every Insert error is.
func (s *Store) writeQueue() commitq.Queue[*request] {
	return commitq.Queue[*request]{
		C:       s.queue,
		Mu:      &s.mu,
		Closed:  s.closed.Load,
		Timeout: s.timeout,
		Ended:   func(ctx context.Context) error { return s.fail(ctx, "insert", ctx.Err()) },
		Op:      "postgres insert",
		Suspect: "a slow or unreachable server?",
	}
}

// dispatch runs the committers until the queue is closed and drained, so
// requests accepted before Close still commit.
func (s *Store) dispatch(batches int) {
	defer s.workers.Done()
	commitq.Dispatch[*request]{
		Queue:   s.queue,
		Size:    func(r *request) int { return len(r.rows) },
		Max:     s.maxBatchRecords,
		Overlap: s.overlapRecords,
		Workers: batches,
		Commit:  s.commit,
		Held:    &s.held,
	}.Run()
}

// queued is the number of Insert calls waiting for a committer: on the
// queue, or taken into the next batch.
func (s *Store) queued() int { return len(s.queue) + int(s.held.Load()) }

// commit claims the live requests of batch, writes them in one transaction
// and answers each caller.
func (s *Store) commit(batch []*request) {
	live := s.writes.Claim(batch)
	if len(live) == 0 {
		return
	}
	start := time.Now()
	err := s.run(live)
	if err != nil && len(live) > 1 && !unavailable(err) {
		// Something in the batch was refused by the server, not the
		// server itself: find whose, and let the others through.
		for _, r := range live {
			err := s.run([]*request{r})
			if err == nil {
				s.answered(time.Since(start), []*request{r})
			}
			r.Finish(err)
		}
		return
	}
	if err != nil {
		for _, r := range live {
			r.Finish(err)
		}
		return
	}
	s.answered(time.Since(start), live)
	for _, r := range live {
		r.Finish(nil)
	}
}

// answered counts one committed batch of live.
func (s *Store) answered(d time.Duration, live []*request) {
	stored := 0
	for _, r := range live {
		for _, o := range r.outs {
			if o.Status == vault.Stored {
				stored++
			}
		}
	}
	s.commits.Add(1)
	s.ops.Add(uint64(len(live)))
	s.records.Add(uint64(stored))
	if s.onCommit != nil {
		s.onCommit(d, len(live))
	}
}

// run writes the rows of live in one transaction (retried on a deadlock)
// and sets each request's outcomes.
func (s *Store) run(live []*request) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	var rows []vault.Record
	if len(live) == 1 {
		rows = live[0].rows
	} else {
		for _, r := range live {
			rows = append(rows, r.rows...)
		}
	}
	var outs []vault.Outcome
	err := retry(ctx, func() error {
		var err error
		outs, err = s.insertRows(ctx, rows)
		return err
	})
	if err != nil {
		return s.fail(ctx, "insert", err)
	}
	for _, r := range live {
		r.outs, outs = outs[:len(r.rows):len(r.rows)], outs[len(r.rows):]
	}
	return nil
}

// ConvergesOnInsert reports true: a Find is a round trip as an Insert is,
// and Insert answers a known fingerprint with its record ([vault.Converger]).
func (s *Store) ConvergesOnInsert() bool { return true }

var _ vault.Converger = (*Store)(nil)
