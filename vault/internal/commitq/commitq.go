// Package commitq is the caller's side of a store's group-commit queue:
// queueing a write, waiting for its commit's verdict, withdrawing it when
// the caller gives up first, and the errors past the commit deadline. Each
// store keeps its own committer loop, which takes requests off the queue,
// claims them ([Queue.Claim]) and answers each one ([Ticket.Finish]).
//
// Durability: a nil verdict means the write is durable and an error means
// it was not written. A caller may withdraw its request only while it is
// still queued; once a committer has claimed it, the caller waits for the
// verdict, so it never misreports durability. The one exception is the
// commit deadline: past it, a claimed write's outcome is unknown (its
// commit is stuck and may still complete), and the error says so.
package commitq

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokproxy/tok/vault"
)

// Request states. Only the pending state changes, and only once: to
// claimed by a committer, or to withdrawn by its caller (or by a committer
// that finds the caller's context ended).
const (
	statePending int32 = iota
	stateClaimed
	stateWithdrawn
)

// Ticket is the queue state of one write request; a store's request type
// embeds it. The zero Ticket is ready for [Queue.Submit], which sets it up;
// a Ticket is submitted once.
type Ticket struct {
	ctx   context.Context
	state atomic.Int32
	done  chan error // buffered: a committer never blocks on it
}

func (t *Ticket) ticket() *Ticket { return t }

// Finish answers the request with the commit's verdict: nil if its write
// is durable, else why nothing was written. A committer calls it exactly
// once for each request [Queue.Claim] returned; it never blocks.
func (t *Ticket) Finish(err error) { t.done <- err }

// Request is a store's request type: a pointer to a struct that embeds
// [Ticket].
type Request interface{ ticket() *Ticket }

// Queue is one store's write queue as its callers and committers see it.
// It is a small value made from the store's fields; it holds nothing of
// its own.
type Queue[R Request] struct {
	// C is the queue the committers read. Submit sends on it only with Mu
	// held for reading and the store open, so the store's Close, which
	// marks it closed under Mu held for writing before it closes C, never
	// closes C under a sender.
	C  chan<- R
	Mu *sync.RWMutex
	// Closed reports whether the store is closed; it is called with Mu
	// held for reading.
	Closed func() bool
	// Timeout is the commit deadline: how long a write may wait, queued
	// and committing, before Submit gives up on it.
	Timeout time.Duration
	// Ended is the error of a request withdrawn because its context ended;
	// nil means ctx.Err().
	Ended func(ctx context.Context) error
	// Op, if not empty, prefixes the errors past the deadline ("postgres
	// insert"); Suspect names the likely cause of a stall ("a stalled
	// disk?").
	Op, Suspect string
}

// Submit queues r and waits for its commit. It returns the context's error
// (see Ended) if ctx ends while r is still queued (nothing was written),
// [vault.ErrClosed] if the store is closed, and otherwise the commit's
// verdict: once a committer has claimed r, Submit waits for the commit even
// if ctx ends, so a nil error always means durable and an error always
// means not written.
//
// The one exception is the commit deadline (Timeout: a stalled disk or a
// hung server must not hang requests without end): past it, Submit returns
// an error wrapping [vault.ErrUnavailable] and [vault.ErrStalled]. If r was
// still queued it is withdrawn (nothing written); if a committer had
// claimed it, its commit is stuck and may still complete: the error says
// so, and the caller must treat the write as of unknown outcome. A client
// retrying a convergent tokenization gets the same token either way.
func (q *Queue[R]) Submit(ctx context.Context, r R) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := r.ticket()
	t.ctx = ctx
	t.done = make(chan error, 1)
	deadline := time.NewTimer(q.Timeout)
	defer deadline.Stop()
	q.Mu.RLock()
	if q.Closed() {
		q.Mu.RUnlock()
		return vault.ErrClosed
	}
	select {
	case q.C <- r:
	case <-ctx.Done():
		q.Mu.RUnlock()
		return q.ended(ctx)
	case <-deadline.C:
		q.Mu.RUnlock()
		return q.stallErr(false)
	}
	q.Mu.RUnlock()
	select {
	case err := <-t.done:
		return err
	case <-ctx.Done():
		if t.state.CompareAndSwap(statePending, stateWithdrawn) {
			return q.ended(ctx)
		}
		select {
		case err := <-t.done:
			return err
		case <-deadline.C:
			return q.stallErr(true)
		}
	case <-deadline.C:
		if t.state.CompareAndSwap(statePending, stateWithdrawn) {
			return q.stallErr(false)
		}
		return q.stallErr(true)
	}
}

// Claim claims for a committer the requests of batch that are still
// pending and returns them, in order, in a new slice; the committer must
// [Ticket.Finish] each. A request whose context has ended is withdrawn and
// answered (see Ended) instead of claimed; one its caller has withdrawn is
// left out.
func (q *Queue[R]) Claim(batch []R) []R {
	live := batch[:0:0]
	for _, r := range batch {
		t := r.ticket()
		if t.ctx.Err() != nil {
			if t.state.CompareAndSwap(statePending, stateWithdrawn) {
				t.Finish(q.ended(t.ctx))
			}
			continue
		}
		if t.state.CompareAndSwap(statePending, stateClaimed) {
			live = append(live, r)
		}
	}
	return live
}

// ended is the error of a request withdrawn because ctx ended.
func (q *Queue[R]) ended(ctx context.Context) error {
	if q.Ended != nil {
		return q.Ended(ctx)
	}
	return ctx.Err()
}

// stallErr is a write's error past the commit deadline; claimed says
// whether a committer had taken it (its outcome is then unknown).
func (q *Queue[R]) stallErr(claimed bool) error {
	var err error
	if claimed {
		err = fmt.Errorf("%w: %w: commit not finished within %v (%s); the write may still complete",
			vault.ErrUnavailable, vault.ErrStalled, q.Timeout, q.Suspect)
	} else {
		err = fmt.Errorf("%w: %w: no commit within %v (the committers are stuck on earlier ones: %s); nothing was written",
			vault.ErrUnavailable, vault.ErrStalled, q.Timeout, q.Suspect)
	}
	if q.Op != "" {
		err = fmt.Errorf("%s: %w", q.Op, err)
	}
	return err
}
