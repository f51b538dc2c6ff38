package bolt

import (
	"fmt"
	"os"
	"sync"
)

// Faults injects storage failures into a [Store]: FOR TESTS AND CHAOS
// DRILLS ONLY, never set it in production. Pass one in [Options].Faults,
// then turn failures on and off while the store runs; the zero value
// injects nothing. It is safe for concurrent use.
//
// A failing WAL write or sync makes the commit that hit it fail (its
// callers get an error wrapping vault.ErrUnavailable and nothing of theirs
// is kept); the store keeps running and recovers by itself once the fault
// clears (see wal.append). A failing checkpoint leaves its memtable in
// memory and in the WAL and is retried.
type Faults struct {
	mu                    sync.Mutex
	walWrite, walSync, cp error
	stall                 <-chan struct{} // see StallWALSyncs
	// hook, if set, is consulted first by every WAL write ("write") and
	// sync ("sync") and before every checkpoint chunk ("checkpoint"): unit
	// tests use it to fail (or hold up) one step of a sequence.
	hook func(op string) error
}

// FailWALWrites makes every write to a WAL segment fail with err, as a full
// disk does (pass syscall.ENOSPC); nil stops it.
func (f *Faults) FailWALWrites(err error) { f.set(&f.walWrite, err) }

// FailWALSyncs makes every fdatasync of a WAL segment fail with err (pass
// syscall.EIO or syscall.ENOSPC); nil stops it.
func (f *Faults) FailWALSyncs(err error) { f.set(&f.walSync, err) }

// FailCheckpoints makes every checkpoint (the bbolt transactions that move
// the memtables into the file) fail with err; nil stops it.
func (f *Faults) FailCheckpoints(err error) { f.set(&f.cp, err) }

// StallWALSyncs makes every fdatasync of a WAL segment wait until release
// is closed, as one on a frozen filesystem (fsfreeze) or a hung disk does:
// the commit stays in flight, past the store's CommitTimeout. A nil
// release stops it (syncs already waiting go on waiting for theirs).
func (f *Faults) StallWALSyncs(release <-chan struct{}) {
	f.mu.Lock()
	f.stall = release
	f.mu.Unlock()
}

// Clear stops every injected failure.
func (f *Faults) Clear() {
	f.mu.Lock()
	f.walWrite, f.walSync, f.cp, f.stall = nil, nil, nil, nil
	f.mu.Unlock()
}

func (f *Faults) set(p *error, err error) {
	f.mu.Lock()
	*p = err
	f.mu.Unlock()
}

func (f *Faults) get(p *error) error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return *p
}

// writeErr is the injected failure of a write to file, as os reports one.
func (f *Faults) writeErr(file *os.File) error {
	if f == nil {
		return nil
	}
	if err := f.hookErr("write"); err != nil {
		return &os.PathError{Op: "write", Path: file.Name(), Err: err}
	}
	if err := f.get(&f.walWrite); err != nil {
		return &os.PathError{Op: "write", Path: file.Name(), Err: err}
	}
	return nil
}

// syncErr is the injected failure of an fdatasync of file.
func (f *Faults) syncErr(file *os.File) error {
	if f == nil {
		return nil
	}
	if err := f.hookErr("sync"); err != nil {
		return &os.PathError{Op: "fdatasync", Path: file.Name(), Err: err}
	}
	f.mu.Lock()
	stall := f.stall
	f.mu.Unlock()
	if stall != nil {
		<-stall
	}
	if err := f.get(&f.walSync); err != nil {
		return &os.PathError{Op: "fdatasync", Path: file.Name(), Err: err}
	}
	return nil
}

// checkpointErr is the injected failure of a checkpoint's next chunk.
func (f *Faults) checkpointErr() error {
	if f == nil {
		return nil
	}
	if err := f.hookErr("checkpoint"); err != nil {
		return fmt.Errorf("injected: %w", err)
	}
	if err := f.get(&f.cp); err != nil {
		return fmt.Errorf("injected: %w", err)
	}
	return nil
}

func (f *Faults) hookErr(op string) error {
	f.mu.Lock()
	h := f.hook
	f.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(op)
}
