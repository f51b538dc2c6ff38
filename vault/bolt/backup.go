package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokproxy/tok/vault"
)

// barrierRequest is Backup's request for a checkpoint (see barrier).
type barrierRequest struct {
	// first is set on Backup's first request; later ones carry after
	// from the first reply.
	first bool
	after uint64 // freezes counted when the first request was served
	reply chan barrierReply
}

// barrierReply answers a barrierRequest.
type barrierReply struct {
	run   *checkpointRun // checkpoint to wait for; nil: nothing acknowledged is outside bbolt
	fresh bool           // run froze the active memtable after the first request was served
	after uint64         // to send in the next request
	err   error
}

// barrier is run by the committer, between batches, for Backup: it makes
// sure a checkpoint holding every write acknowledged before Backup's first
// request is running, or reports that bbolt already has them all. A
// checkpoint frozen after the first request holds them; one frozen before
// is returned as not fresh: Backup waits for it and asks again. Counting
// freezes, rather than asking for the committer to be idle, matters under
// load: the committer freezes again as soon as it collects a checkpoint,
// often before Backup asks again.
func (s *Store) barrier(req barrierRequest) barrierReply {
	after := req.after
	if req.first {
		after = s.freezes
	}
	if idle, _ := s.settle(false); !idle { // running, or restarted after a failure
		return barrierReply{run: s.cp, fresh: s.cp.seq > after, after: after}
	}
	if s.freezes > after || s.active.n == 0 {
		return barrierReply{after: after} // a fresh checkpoint has committed, or none is needed
	}
	if err := s.wal.ready(); err != nil { // a switch needs it; see wal.append
		return barrierReply{err: fmt.Errorf("%w: backup vault: %w", vault.ErrUnavailable, err)}
	}
	s.freeze()
	return barrierReply{run: s.cp, fresh: true, after: after}
}

// checkpointAll returns once every write acknowledged before it was called
// is in bbolt, by waiting for a checkpoint that froze the active memtable
// after the call began. The checkpoints it waits for run without pauses.
func (s *Store) checkpointAll(ctx context.Context) error {
	s.hurry.Add(1)
	defer s.hurry.Add(-1)
	req := barrierRequest{first: true}
	for {
		reply := make(chan barrierReply, 1)
		req.reply = reply
		s.mu.RLock() // as in submit: the committer runs while we send
		if s.closed {
			s.mu.RUnlock()
			return vault.ErrClosed
		}
		select {
		case s.barriers <- req:
		case <-ctx.Done():
			s.mu.RUnlock()
			return ctx.Err()
		}
		s.mu.RUnlock()
		var r barrierReply
		select {
		case r = <-reply:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil || r.run == nil {
			return r.err
		}
		select {
		case <-r.run.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.run.err != nil {
			return fmt.Errorf("backup: %w", r.run.err)
		}
		if r.fresh {
			return nil
		}
		req = barrierRequest{after: r.after}
	}
}

// Backup writes a snapshot of the whole vault to w as one bbolt file, while
// the store keeps serving reads and writes, and returns the bytes written.
// The file opens with [Open] on its own (it needs no WAL files: Open
// creates empty ones) and holds every record, fingerprint, session and
// lockout of the snapshot.
//
// Consistent means: the snapshot is the vault's state after some prefix of
// its commit history, taken at a checkpoint boundary, never a mix; that
// prefix includes every write acknowledged before Backup was called (Backup
// first waits for a checkpoint that holds them); writes acknowledged after
// the call may or may not be included, each whole or not at all.
//
// How: Backup asks the committer to freeze the active memtable and waits
// for that checkpoint to commit to bbolt, then streams the file from a
// bbolt read transaction opened after it, at a checkpoint boundary
// (bbolt's copy-on-write pages make that a fixed snapshot while writes
// continue). If the checkpoint fails, Backup fails, wrapping
// [vault.ErrUnavailable], before writing anything.
//
// Costs: the read transaction stays open while w takes the bytes, so a
// slow w holds old pages from reuse (the file may grow), can stall a
// checkpoint that must grow bbolt's memory map, and makes Close wait.
// Bound the time it takes with ctx: Backup stops writing when ctx ends.
//
// To restore: stop tok and call [Restore] (tok vault restore), which puts
// the backup in place and moves the WAL segments aside: they hold writes
// newer than the backup, which must not be replayed onto it.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	if err := s.checkpointAll(ctx); err != nil {
		return 0, err
	}
	tx, err := s.snapshot(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	n, err := tx.WriteTo(ctxWriter{ctx, w})
	if err != nil {
		return n, fmt.Errorf("backup vault: %w", err)
	}
	return n, nil
}

// snapshot begins a read transaction at a checkpoint boundary. Between
// the chunks of a checkpoint (see checkpoint.go) bbolt holds the frozen
// memtable's values for some keys and older ones for the rest: readers do
// not mind, since they find those keys in the memtable first, but a copy
// of the file would be a state the vault never had (a record without its
// fingerprint entry, say). So the transaction begins while snapshot holds
// s.boundary, which a frozen memtable holds until its last chunk has
// committed. Waiting for it does not hold s.mu (a Close pending on it
// would stall every reader meanwhile): a store closed since is caught by
// bbolt, and Close's flush holds the boundary too.
func (s *Store) snapshot(ctx context.Context) (*bbolt.Tx, error) {
	s.hurry.Add(1)
	defer s.hurry.Add(-1)
	select {
	case s.boundary <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	tx, err := s.db.Begin(false)
	<-s.boundary
	switch {
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return nil, vault.ErrClosed
	case err != nil:
		return nil, fmt.Errorf("%w: backup vault: %w", vault.ErrUnavailable, err)
	}
	return tx, nil
}

// ctxWriter stops writing once ctx ends.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
