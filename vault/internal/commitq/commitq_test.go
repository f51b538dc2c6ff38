package commitq

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// req is a store's request as the tests make it.
type req struct {
	Ticket
	n int
}

// fakeStore is the part of a store that Submit needs: a queue, its lock
// and closed flag. No committer runs unless a test plays one.
type fakeStore struct {
	mu     sync.RWMutex
	closed bool
	queue  chan *req
	q      Queue[*req]
}

func newFakeStore(timeout time.Duration) *fakeStore {
	s := &fakeStore{queue: make(chan *req, 4)}
	s.q = Queue[*req]{
		C:       s.queue,
		Mu:      &s.mu,
		Closed:  func() bool { return s.closed },
		Timeout: timeout,
		Suspect: "a test?",
	}
	return s
}

// submit runs Submit in a goroutine and returns its result's channel.
func (s *fakeStore) submit(ctx context.Context, r *req) <-chan error {
	errs := make(chan error, 1)
	go func() { errs <- s.q.Submit(ctx, r) }()
	return errs
}

// take receives the next queued request, failing the test after 10s.
func (s *fakeStore) take(t *testing.T) *req {
	t.Helper()
	select {
	case r := <-s.queue:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no request queued")
		return nil
	}
}

// result waits for one Submit's result, failing the test after 10s.
func result(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Submit did not return")
		return nil
	}
}

// notYet fails the test if Submit returns within d.
func notYet(t *testing.T, errs <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-errs:
		t.Fatalf("Submit = %v before the verdict, want it to wait", err)
	case <-time.After(d):
	}
}

func TestCommitted(t *testing.T) {
	s := newFakeStore(time.Minute)
	errs := s.submit(context.Background(), &req{n: 1})
	r := s.take(t)
	live := s.q.Claim([]*req{r})
	if len(live) != 1 || live[0] != r {
		t.Fatalf("Claim = %v, want the queued request", live)
	}
	r.Finish(nil)
	if err := result(t, errs); err != nil {
		t.Errorf("Submit = %v, want nil", err)
	}
	errBad := errors.New("refused")
	errs = s.submit(context.Background(), &req{n: 2})
	r = s.take(t)
	s.q.Claim([]*req{r})[0].Finish(errBad)
	if err := result(t, errs); err != errBad {
		t.Errorf("Submit = %v, want the verdict %v", err, errBad)
	}
}

// TestWithdrawPending: a request still queued when its context ends is
// withdrawn: Submit returns the context's error and no committer claims
// it afterwards.
func TestWithdrawPending(t *testing.T) {
	s := newFakeStore(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	r := &req{n: 1}
	errs := s.submit(ctx, r)
	for len(s.queue) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := result(t, errs); !errors.Is(err, context.Canceled) {
		t.Fatalf("Submit canceled while queued = %v, want %v", err, context.Canceled)
	}
	if live := s.q.Claim([]*req{s.take(t)}); len(live) != 0 {
		t.Errorf("Claim of a withdrawn request = %d live, want 0", len(live))
	}
}

// TestClaimWithdrawsEnded: a committer that finds a request's context
// ended withdraws it and answers it with Ended's error (or its caller
// withdrew it first: the same result).
func TestClaimWithdrawsEnded(t *testing.T) {
	s := newFakeStore(time.Minute)
	errEnded := errors.New("ended")
	s.q.Ended = func(ctx context.Context) error { return errors.Join(errEnded, ctx.Err()) }
	ctx, cancel := context.WithCancel(context.Background())
	errs := s.submit(ctx, &req{n: 1})
	r := s.take(t)
	cancel()
	if live := s.q.Claim([]*req{r}); len(live) != 0 {
		t.Errorf("Claim of a request whose context ended = %d live, want 0", len(live))
	}
	if err := result(t, errs); !errors.Is(err, errEnded) || !errors.Is(err, context.Canceled) {
		t.Errorf("Submit = %v, want Ended's error", err)
	}
}

// TestClaimedWaitsForVerdict: once claimed, a request's caller waits for
// the verdict even after its context ends, so an error always means not
// written and nil always means durable.
func TestClaimedWaitsForVerdict(t *testing.T) {
	for _, verdict := range []error{nil, errors.New("disk full")} {
		s := newFakeStore(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		errs := s.submit(ctx, &req{n: 1})
		r := s.take(t)
		if live := s.q.Claim([]*req{r}); len(live) != 1 {
			t.Fatalf("Claim = %d live, want 1", len(live))
		}
		cancel()
		notYet(t, errs, 50*time.Millisecond)
		r.Finish(verdict)
		if err := result(t, errs); err != verdict {
			t.Errorf("Submit canceled after the claim = %v, want the verdict %v", err, verdict)
		}
	}
}

// TestDeadlinePending: past the deadline a request no committer claimed
// is withdrawn and nothing was written, whether it was queued or the queue
// was full.
func TestDeadlinePending(t *testing.T) {
	s := newFakeStore(50 * time.Millisecond)
	r := &req{n: 1}
	err := result(t, s.submit(context.Background(), r))
	if !errors.Is(err, vault.ErrUnavailable) || !errors.Is(err, vault.ErrStalled) ||
		!strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("Submit past the deadline, queued = %v, want ErrUnavailable, ErrStalled and nothing written", err)
	}
	if live := s.q.Claim([]*req{s.take(t)}); len(live) != 0 {
		t.Errorf("Claim after the deadline = %d live, want 0", len(live))
	}

	for range cap(s.queue) {
		s.queue <- &req{}
	}
	err = result(t, s.submit(context.Background(), &req{n: 2}))
	if !errors.Is(err, vault.ErrStalled) || !strings.Contains(err.Error(), "nothing was written") {
		t.Errorf("Submit past the deadline, queue full = %v, want ErrStalled and nothing written", err)
	}
}

// TestDeadlineClaimed: past the deadline a claimed request's outcome is
// unknown, and the error says the write may still complete; the
// committer's late verdict does not block it.
func TestDeadlineClaimed(t *testing.T) {
	s := newFakeStore(100 * time.Millisecond)
	s.q.Op = "test insert"
	for _, end := range []string{"deadline", "context then deadline"} {
		ctx, cancel := context.WithCancel(context.Background())
		errs := s.submit(ctx, &req{n: 1})
		r := s.take(t)
		s.q.Claim([]*req{r})
		if end != "deadline" {
			cancel()
		}
		err := result(t, errs)
		if !errors.Is(err, vault.ErrUnavailable) || !errors.Is(err, vault.ErrStalled) ||
			!strings.Contains(err.Error(), "may still complete") || !strings.HasPrefix(err.Error(), "test insert: ") {
			t.Errorf("%s: Submit of a claimed request = %v, want ErrUnavailable, ErrStalled, may still complete", end, err)
		}
		r.Finish(nil) // the stuck commit completes after all
		cancel()
	}
}

// TestClosed: a closed store queues nothing and returns vault.ErrClosed; a
// context already ended returns its error first.
func TestClosed(t *testing.T) {
	s := newFakeStore(time.Minute)
	s.closed = true
	if err := result(t, s.submit(context.Background(), &req{n: 1})); err != vault.ErrClosed {
		t.Errorf("Submit on a closed store = %v, want %v", err, vault.ErrClosed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := result(t, s.submit(ctx, &req{n: 2})); err != context.Canceled {
		t.Errorf("Submit with an ended context = %v, want %v", err, context.Canceled)
	}
	if len(s.queue) != 0 {
		t.Errorf("%d requests queued, want 0", len(s.queue))
	}
}
