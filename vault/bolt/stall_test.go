package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// TestCommitDeadline: with the WAL's fdatasync stalled
// (a frozen filesystem), writes used to hang for good and Ping to answer
// ready. Now a write returns ErrUnavailable and ErrStalled once the commit
// deadline passes, whether its commit was stuck or it was queued behind
// one; Ping reports the stall; and when the disk comes back the stuck
// commit completes (its outcome was only unknown), Ping recovers and
// writes succeed, with no reopen.
func TestCommitDeadline(t *testing.T) {
	ctx := context.Background()
	keys := newKeys(t)
	f := &Faults{}
	// The deadline is the test's own: short, so the test is quick; the
	// assertions are about what happens past it, not when.
	s := mustOpen(t, filepath.Join(t.TempDir(), "tok.db"), Options{Faults: f, CommitTimeout: 50 * time.Millisecond})
	insertOne(t, s, storetest.NewRecord(keys, false))

	release := make(chan struct{})
	f.StallWALSyncs(release)
	stuck := storetest.NewRecord(keys, false)
	queued := storetest.NewRecord(keys, false)
	errs := make(chan error, 2)
	go func() { _, err := s.Insert(ctx, []vault.Record{stuck}); errs <- err }()
	waitFor(t, "the stuck commit", func() bool { return s.committing.Load() != 0 })
	go func() { _, err := s.Insert(ctx, []vault.Record{queued}); errs <- err }()
	for range 2 {
		if err := <-errs; !errors.Is(err, vault.ErrUnavailable) || !errors.Is(err, vault.ErrStalled) {
			t.Errorf("Insert with the disk stalled = %v, want %v and %v", err, vault.ErrUnavailable, vault.ErrStalled)
		}
	}
	waitFor(t, "Ping to report the stall", func() bool { return errors.Is(s.Ping(ctx), vault.ErrStalled) })

	f.StallWALSyncs(nil)
	close(release)
	waitFor(t, "Ping to recover", func() bool { return s.Ping(ctx) == nil })
	// The stuck commit went through once the disk came back; the queued
	// write, withdrawn at its deadline, or committed after: either way,
	// reported as not known to have committed, never lost once acked.
	if _, err := s.Get(ctx, stuck.Token); err != nil {
		t.Errorf("Get(stuck) after the stall = %v, want nil (its commit completed)", err)
	}
	insertOne(t, s, storetest.NewRecord(keys, false))
}
