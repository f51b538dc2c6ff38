package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// Checkpoints.
//
// Between batches the committer freezes the active memtable when it holds
// checkpointEntries entries, or every checkpointEvery if it holds anything:
// frozen = active, a new active one, and appends move to the other WAL
// segment under a new epoch. A goroutine then writes the frozen memtable to
// bbolt in ONE transaction (bbolt fsyncs it) and only after that commit
// drops it, under memMu. Only one memtable is frozen at a time; the next
// freeze waits for the checkpoint, so the segment it switches to holds
// nothing that is not in bbolt.
//
// Reads stay consistent across the drop because a reader consults the
// memtables BEFORE it opens its bbolt read transaction: if it still saw the
// frozen memtable it read the value there; if it did not, the drop happened
// before its look, hence after the checkpoint committed, hence before its
// read transaction began, which therefore sees the checkpoint. The
// committer keeps its own reference to the frozen memtable for a whole
// batch for the same reason.
//
// Backpressure: if the active memtable reaches hardCapFactor ×
// checkpointEntries, or the next frame would overflow the segment, while a
// checkpoint is still running, the committer waits for it (and then
// freezes) before it writes the frame. Memory and WAL space stay bounded,
// and callers feel bbolt's pace.

// Checkpoint defaults.
const (
	// defaultCheckpointEntries is the active memtable size (puts and
	// deletes, a tokenization being two) that triggers a checkpoint. Big
	// checkpoints are cheap per record: n random inserts into a tree of L
	// leaves dirty L(1-e^(-n/L)) pages, so pages are shared more as n
	// grows. Measured with 1M records prefilled (BenchmarkInsertParallel,
	// -insert-prefill=1000000): checkpoints of 14k records took 1.36 s,
	// about 10k records/s, and slowed WAL commits to 3.2 ms meanwhile.
	defaultCheckpointEntries = 128 << 10
	// defaultCheckpointEvery is the longest that anything stays only in
	// the WAL (so replay after a crash stays short) when the store is not
	// busy enough to reach the size first.
	defaultCheckpointEvery = 10 * time.Second
	// hardCapFactor × checkpointEntries is how large the active memtable
	// may grow while a checkpoint is running.
	hardCapFactor = 4
)

// keyWALEpoch in the meta bucket holds the last WAL epoch checkpointed
// (8 bytes, big-endian), so that epochs keep growing across reopenings
// even after the segments were reset.
var keyWALEpoch = []byte("wal-epoch")

// checkpointRun is one checkpoint of a frozen memtable. err is set before
// done is closed.
type checkpointRun struct {
	frozen *memtable
	epoch  uint64 // epoch of the frames holding frozen's effects
	done   chan struct{}
	err    error
}

// startCheckpoint writes f to bbolt in the background.
func (s *Store) startCheckpoint(f *memtable, epoch uint64) *checkpointRun {
	run := &checkpointRun{frozen: f, epoch: epoch, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		start := time.Now()
		run.err = s.db.Update(func(tx *bbolt.Tx) error {
			if err := s.opts.Faults.checkpointErr(); err != nil {
				return err
			}
			if err := f.applyTo(tx); err != nil {
				return err
			}
			return putEpoch(tx, epoch)
		})
		if run.err != nil {
			run.err = fmt.Errorf("%w: checkpoint vault: %w", vault.ErrUnavailable, run.err)
			s.cpFailed.Store(true)
			return
		}
		s.cpFailed.Store(false)
		// Only now may readers stop finding f's entries in memory.
		s.memMu.Lock()
		if s.frozen == f {
			s.frozen = nil
		}
		s.memMu.Unlock()
		s.checkpoints.Add(1)
		s.checkpointEntries.Add(uint64(f.n))
		s.checkpointNanos.Add(uint64(time.Since(start)))
	}()
	return run
}

// settle is called by the committer: it waits for a running checkpoint if
// wait, and collects a finished one. A failed checkpoint is restarted (its
// memtable stays frozen, and readable, meanwhile). It reports whether no
// memtable is frozen any more.
func (s *Store) settle(wait bool) (bool, error) {
	run := s.cp
	if run == nil {
		return true, nil
	}
	if wait {
		<-run.done
	} else {
		select {
		case <-run.done:
		default:
			return false, nil
		}
	}
	if run.err != nil {
		s.cp = s.startCheckpoint(run.frozen, run.epoch)
		return false, run.err
	}
	s.cp = nil
	return true, nil
}

// freeze makes the active memtable the frozen one, starts its checkpoint
// and switches the WAL to the other segment. The caller (the committer)
// has settled the previous checkpoint.
func (s *Store) freeze() {
	s.memMu.Lock()
	f := s.active
	s.frozen, s.active = f, newMemtable()
	s.memMu.Unlock()
	epoch := s.wal.epoch
	s.wal.rotate()
	s.lastFreeze = time.Now()
	s.cp = s.startCheckpoint(f, epoch)
}

// maybeFreeze collects a finished checkpoint (restarting a failed one,
// even when nothing new is due, so a fault that clears is noticed without
// traffic) and freezes the active memtable, without waiting, if it is due
// and the WAL may switch segments.
func (s *Store) maybeFreeze() {
	idle, _ := s.settle(false)
	n := s.active.n
	due := n >= s.opts.checkpointEntries || (n > 0 && time.Since(s.lastFreeze) >= s.opts.checkpointEvery)
	if due && idle && s.wal.canRotate() {
		s.freeze()
	}
}

// makeRoom makes sure a frame of n payload bytes can be appended: if the
// segment is full or the active memtable at its hard cap, it waits for the
// running checkpoint and freezes.
func (s *Store) makeRoom(n int) error {
	if s.active.n == 0 || (s.wal.fits(n) && s.active.n < hardCapFactor*s.opts.checkpointEntries) {
		return nil // an empty active memtable means a fresh segment
	}
	if _, err := s.settle(true); err != nil {
		// Retry once at once; settle restarted it.
		if _, err = s.settle(true); err != nil {
			return err
		}
	}
	s.freeze()
	return nil
}

// flush is Close's final checkpoint: it writes whatever the memtables hold
// to bbolt and resets the WAL. The committer has exited.
func (s *Store) flush() error {
	if s.cp != nil {
		<-s.cp.done
		s.cp = nil
	}
	s.memMu.RLock()
	f, a := s.frozen, s.active
	s.memMu.RUnlock()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if f != nil {
			if err := f.applyTo(tx); err != nil {
				return err
			}
		}
		if err := a.applyTo(tx); err != nil {
			return err
		}
		// Always recorded, even with nothing to write: see recover.
		return putEpoch(tx, s.wal.epoch)
	})
	if err != nil {
		return fmt.Errorf("checkpoint vault: %w", err) // the WAL still has it
	}
	s.memMu.Lock()
	s.frozen, s.active = nil, newMemtable()
	s.memMu.Unlock()
	if f != nil || a.n > 0 {
		s.checkpoints.Add(1)
	}
	return s.wal.reset(s.wal.epoch + 1)
}

// recover replays the WAL into bbolt at Open and resets it. Replaying is
// idempotent: a frame holds final values (puts and deletes of whole keys),
// so applying frames that a checkpoint already wrote, in their original
// order, leaves the same state; and the two segments hold the newest
// history (see wal.go), so nothing in bbolt is newer than what is replayed.
func (s *Store) recover() error {
	m := newMemtable()
	last, err := s.wal.replay(func(p []byte) error {
		return decodePayload(p, func(b bucket, key, v []byte) error {
			m.set(b, string(key), bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		return err
	}
	var epoch uint64
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWALEpoch); len(v) == 8 {
			epoch = binary.BigEndian.Uint64(v)
		}
		epoch = max(epoch, last)
		if err := m.applyTo(tx); err != nil {
			return err
		}
		// Recorded before the reset below zeroes the segments, so later
		// epochs stay above those of any stale frame left in them.
		return putEpoch(tx, epoch)
	})
	if err != nil {
		return fmt.Errorf("replay wal: %w", err)
	}
	return s.wal.reset(epoch + 1)
}

func putEpoch(tx *bbolt.Tx, epoch uint64) error {
	return tx.Bucket(bucketMeta).Put(keyWALEpoch, binary.BigEndian.AppendUint64(nil, epoch))
}

// memGet looks key up in the memtables; ok is false if neither knows it.
// The value must not be modified.
func (s *Store) memGet(b bucket, key []byte) (v []byte, ok bool) {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	if v, ok = s.active.get(b, key); ok {
		return v, true
	}
	if s.frozen != nil {
		return s.frozen.get(b, key)
	}
	return nil, false
}
