package bolt

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
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
// bbolt and only after that drops it, under memMu. Only one memtable is
// frozen at a time; the next freeze waits for the checkpoint, so the
// segment it switches to holds nothing that is not in bbolt.
//
// Chunks: the frozen memtable's keys are sorted and cut into chunks of at
// most checkpointChunk consecutive keys, and each chunk is one bbolt
// transaction (bbolt fsyncs each). A chunk's keys lie in one key range of
// each tree, so its commit dirties and writes only the leaves of that range:
// the pages a checkpoint writes in total are about those of one big
// transaction, but each commit is small, so no single burst of page writes
// and fsyncs holds up the WAL's fdatasyncs, and the dirty pages on the Go
// heap are one chunk's, not the whole tree's. The last chunk also records
// the WAL epoch (in the meta bucket); the frozen memtable is dropped only
// after it committed.
//
// A crash between chunks leaves bbolt holding the frozen memtable's values
// for the keys of the committed chunks and older values for the rest, a
// state the commit history never had. Recovery still restores the right
// one: the frozen memtable's frames are all in their segment, which is not
// reused before the last chunk committed, so replay (see recover) applies
// them again, with the active memtable's newer frames after them; a value a
// chunk wrote is the frozen memtable's final value for its key, so applying
// the frames over it ends in the same state as applying them over the
// value it replaced. Nothing in bbolt is newer than the replayed history,
// which is what replay needs. The same holds for a chunk that failed: bbolt
// rolled it back, and the retry resumes from it (settle).
//
// Reads stay consistent during and across a checkpoint. A chunk writes, for
// each of its keys, the value the frozen memtable holds, and every reader
// that finds a key in a memtable never looks in bbolt; one that does not
// find it reads a key no chunk touches. So committed chunks change nothing
// any reader sees. Across the drop: a reader consults the memtables BEFORE
// it opens its bbolt read transaction: if it still saw the frozen memtable
// it read the value there; if it did not, the drop happened before its
// look, hence after the last chunk committed, hence before its read
// transaction began, which therefore sees every chunk. The committer keeps
// its own reference to the frozen memtable for a whole batch for the same
// reason. A snapshot of the whole file (Backup) is different, since it
// does not look at the memtables: it must begin at a checkpoint boundary,
// when no memtable is frozen; see Store.boundary and backup.go.
//
// Pacing: between chunks, the checkpointer sleeps while it is ahead of
// schedule, the schedule being to finish by the time the committer has
// filled paceTarget of what makes the next checkpoint due (entries, segment
// space or time, whichever is furthest). So a checkpoint's work is spread
// over the filling of the next memtable instead of running in one burst,
// and it runs flat out as soon as it falls behind, when the committer must
// wait for it (hard cap, full segment), when Backup or Scan wait for it,
// and at Close. It also runs flat out while no commit has happened for
// idleAfter: pacing protects the WAL's fdatasyncs, and with none to
// protect, the work is better done in the lull than left to overlap the
// next burst of traffic.
//
// Backpressure: if the active memtable reaches hardCapFactor ×
// checkpointEntries, or the next frame would overflow the segment, while a
// checkpoint is still running, the committer waits for it (and then
// freezes) before it writes the frame. Memory and WAL space stay bounded,
// and callers feel bbolt's pace.

// Checkpoint defaults.
const (
	// defaultCheckpointEntries is the active memtable size (puts and
	// deletes, a tokenization being two) that triggers a checkpoint: the
	// trade between memory and checkpoint cost. A memtable takes about 94
	// bytes of heap per entry (BenchmarkMemtableBytes), so 9 MiB at this
	// size, twice that while one is frozen and the next fills, and at
	// most (hardCapFactor+1) times that. Big checkpoints are cheap per
	// record: n random inserts into a tree of L leaves dirty L(1-e^(-n/L))
	// pages, so pages are shared more as n grows. Measured into 1M records
	// (BenchmarkCheckpoint, 1024-entry chunks, per record: CPU, bytes to
	// disk):
	//
	//	records per checkpoint   16k    32k    48k    64k    96k    128k
	//	CPU µs                    43     33     28     24     20     19
	//	disk bytes              6790   5475   4524   3874   3038   2522
	//	memtable MiB             2.9    5.9    8.8     12     18     24
	//
	// On sustained /handle (300k requests) 64k entries, 128k and 256k gave
	// 9.4-12.6k/s, 10.2-12.0k/s and 14.5-14.8k/s, with heap peaks of 49,
	// 68 and 105 MB in the benchmark's process. The bound is memory: tok
	// is allowed 64 MB at 64 connections, and the proxy's checkout route
	// also keeps every CVC in memory. With checkpoints on a one-minute
	// timer (below), the proxy benchmark's RssAnon peaked at 69.5 MB with
	// 128k entries and 57.3 MB with 96k (one run each), so 96k (48k
	// records) it is.
	defaultCheckpointEntries = 96 << 10
	// defaultCheckpointChunk is the most entries one checkpoint
	// transaction writes. Smaller transactions hold less of bbolt's dirty
	// pages and nodes on the heap (about 3-7 MiB at this size; 14-40 at
	// 4096 entries, 300 at a whole 64k-record checkpoint) and make shorter
	// bursts of page writes ahead of the WAL's fdatasyncs, at the price of
	// two fsyncs each. On /handle (100k requests from 1M records), with
	// 4096-entry chunks the p99 was 18-23 ms, with 1024 11-15 ms, and 512
	// or 256 did no better.
	defaultCheckpointChunk = 1 << 10
	// defaultCheckpointEvery is the longest that anything stays only in
	// the WAL when the store is not busy enough to reach the size first.
	// Replay after a crash is bounded by the memtables' size, not by this,
	// so it can be long; and it should be, because a checkpoint of a few
	// records writes nearly a page per record (see the table above): at
	// 1,000 tokenizations/s a 10 s interval made checkpoints of 10k
	// records whose page writes, spread over the next 10 s, kept delaying
	// the WAL's fdatasyncs. Measured with BenchmarkInsertRate (1,000
	// inserts/s for 130 s into 200k records): p99 10.8 ms at 10 s, 2.1 ms
	// at 60 s (checkpoints of 60k records), 0.9 ms with none at all. At a
	// minute, a store at that rate checkpoints by size first.
	defaultCheckpointEvery = time.Minute
	// settleEvery is how often an idle committer collects a finished
	// checkpoint and restarts a failed one.
	settleEvery = 10 * time.Second
	// hardCapFactor × checkpointEntries is how large the active memtable
	// may grow while a checkpoint is running: the memtables' memory is
	// bounded by (hardCapFactor+1) × checkpointEntries entries.
	hardCapFactor = 2
	// paceTarget is how far the committer may have come towards the next
	// checkpoint being due by the time the running one should be done. At
	// 1 a checkpoint spreads over the whole filling of the next memtable,
	// as thinly as it can; measured on /handle, 0.5 (finishing by half
	// way, so that the frozen memtable's memory is freed sooner) made the
	// checkpoint run in bursts and the p99 worse (18-23 ms against 13-16).
	paceTarget = 1.0
	// defaultIdleAfter is how long without a commit makes the store idle,
	// so that a running checkpoint stops pacing itself (see Pacing). At
	// the proxy benchmark's 1,000 requests/s a commit comes every
	// millisecond; a store that saw none for this long has no traffic to
	// protect.
	defaultIdleAfter = 500 * time.Millisecond
	// paceStep is how long the checkpointer sleeps at a time while it is
	// ahead of schedule.
	paceStep = 2 * time.Millisecond
)

// keyWALEpoch in the meta bucket holds the last WAL epoch checkpointed
// (8 bytes, big-endian), so that epochs keep growing across reopenings
// even after the segments were reset.
var keyWALEpoch = []byte("wal-epoch")

// checkpointRun is one attempt at checkpointing a frozen memtable. Its
// goroutine owns chunks and next until done is closed; err is set before.
type checkpointRun struct {
	frozen *memtable
	epoch  uint64    // epoch of the frames holding frozen's effects
	seq    uint64    // the freeze's number (Store.freezes)
	start  time.Time // when frozen was frozen, for pacing
	chunks []chunk   // frozen's chunks, made by the first attempt
	next   int       // first chunk not committed yet
	hurry  atomic.Bool
	done   chan struct{}
	err    error
}

// retry returns a new attempt at run's checkpoint, resuming at the chunk
// that failed: the ones before it are committed.
func (run *checkpointRun) retry() *checkpointRun {
	r := &checkpointRun{frozen: run.frozen, epoch: run.epoch, seq: run.seq, start: run.start, chunks: run.chunks, next: run.next, done: make(chan struct{})}
	r.hurry.Store(run.hurry.Load())
	return r
}

// startCheckpoint writes run's memtable to bbolt in the background.
func (s *Store) startCheckpoint(run *checkpointRun) *checkpointRun {
	go func() {
		defer close(run.done)
		if err := s.writeCheckpoint(run); err != nil {
			run.err = fmt.Errorf("%w: checkpoint vault: %w", vault.ErrUnavailable, err)
			s.cpFailed.Store(true)
			return
		}
		s.cpFailed.Store(false)
		s.dropFrozen(run.frozen) // only now may readers stop finding its entries in memory
		s.checkpoints.Add(1)
		s.checkpointEntries.Add(uint64(run.frozen.n))
	}()
	return run
}

// writeCheckpoint commits run's chunks from run.next on, pacing itself
// between them.
func (s *Store) writeCheckpoint(run *checkpointRun) error {
	if run.chunks == nil {
		run.chunks = run.frozen.chunks(s.chunkSize())
	}
	for run.next < len(run.chunks) {
		if err := s.opts.Faults.checkpointErr(); err != nil {
			return err
		}
		last := run.next == len(run.chunks)-1
		start := time.Now()
		err := s.commitChunk(run.chunks[run.next], run.epoch, last)
		s.checkpointNanos.Add(uint64(time.Since(start)))
		if err != nil {
			return err
		}
		s.checkpointChunks.Add(1)
		run.next++
		if !last {
			s.pace(run)
		}
	}
	return nil
}

// commitChunk writes c to bbolt in one transaction; the last chunk of a
// checkpoint also records its WAL epoch.
func (s *Store) commitChunk(c chunk, epoch uint64, last bool) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if err := c.applyTo(tx); err != nil {
			return err
		}
		if last {
			return putEpoch(tx, epoch)
		}
		return nil
	})
}

// commitChunks commits chunks in order, flat out, the last one recording
// epoch and whether the WAL is open (see keyWALOpen): Close's flush and
// Open's replay, where nothing runs beside them.
func (s *Store) commitChunks(chunks []chunk, epoch uint64, walOpen bool) error {
	for i, c := range chunks {
		last := i == len(chunks)-1
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if err := c.applyTo(tx); err != nil {
				return err
			}
			if !last {
				return nil
			}
			if err := putEpoch(tx, epoch); err != nil {
				return err
			}
			return putWALOpen(tx, walOpen)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// pace returns when run, having committed run.next of its chunks, is no
// longer ahead of schedule (see Pacing above), or is in a hurry, or the
// store is bulk loading (see bulk.go).
func (s *Store) pace(run *checkpointRun) {
	progress := float64(run.next) / float64(len(run.chunks))
	for !run.hurry.Load() && s.hurry.Load() == 0 && !s.bulk.Load() && !s.idle() && progress > s.dueness(run.start)/paceTarget {
		time.Sleep(paceStep)
	}
}

// idle reports whether no commit has happened for opts.idleAfter.
func (s *Store) idle() bool {
	return time.Since(time.Unix(0, s.lastCommit.Load())) >= s.opts.idleAfter
}

// dueness is how far the committer has come towards the next checkpoint
// being due since the last freeze: 1 when it is due.
func (s *Store) dueness(since time.Time) float64 {
	return max(float64(s.activeEntries.Load())/float64(s.entriesDue()),
		float64(s.walOffset.Load())/float64(s.opts.segmentSize),
		float64(time.Since(since))/float64(s.opts.checkpointEvery))
}

// noteLoad publishes the active memtable's size and the WAL offset for
// pace. Only the committer calls it.
func (s *Store) noteLoad() {
	s.activeEntries.Store(int64(s.active.n))
	s.walOffset.Store(s.wal.off)
}

// dropFrozen drops f, whose checkpoint has committed, if it is still the
// frozen memtable, and so ends the checkpoint (see Store.boundary).
func (s *Store) dropFrozen(f *memtable) {
	s.memMu.Lock()
	dropped := s.frozen == f
	if dropped {
		s.frozen = nil
	}
	s.memMu.Unlock()
	if dropped {
		<-s.boundary
	}
}

// settle is called by the committer: it waits for a running checkpoint if
// wait (hurrying it), and collects a finished one. A failed checkpoint is
// restarted at the chunk that failed (its memtable stays frozen, and
// readable, meanwhile). It reports whether no memtable is frozen any more.
func (s *Store) settle(wait bool) (bool, error) {
	run := s.cp
	if run == nil {
		return true, nil
	}
	if wait {
		run.hurry.Store(true)
		<-run.done
	} else {
		select {
		case <-run.done:
		default:
			return false, nil
		}
	}
	if run.err != nil {
		s.cp = s.startCheckpoint(run.retry())
		return false, run.err
	}
	s.cp = nil
	return true, nil
}

// freeze makes the active memtable the frozen one, starts its checkpoint
// and switches the WAL to the other segment. The caller (the committer)
// has settled the previous checkpoint.
func (s *Store) freeze() {
	s.boundary <- struct{}{} // free but for a Backup beginning its snapshot
	s.memMu.Lock()
	f := s.active
	s.frozen, s.active = f, newMemtable()
	s.memMu.Unlock()
	epoch := s.wal.epoch
	s.wal.rotate()
	s.noteLoad()
	s.lastFreeze = time.Now()
	s.freezes++
	s.cp = s.startCheckpoint(&checkpointRun{frozen: f, epoch: epoch, seq: s.freezes, start: s.lastFreeze, done: make(chan struct{})})
}

// maybeFreeze collects a finished checkpoint (restarting a failed one,
// even when nothing new is due, so a fault that clears is noticed without
// traffic) and freezes the active memtable, without waiting, if it is due
// and the WAL may switch segments.
func (s *Store) maybeFreeze() {
	idle, _ := s.settle(false)
	n := s.active.n
	due := n >= s.entriesDue() || (n > 0 && time.Since(s.lastFreeze) >= s.opts.checkpointEvery)
	if due && idle && s.wal.canRotate() {
		s.freeze()
	}
}

// makeRoom makes sure a frame of n payload bytes can be appended: if the
// segment is full or the active memtable at its hard cap, it waits for the
// running checkpoint and freezes.
func (s *Store) makeRoom(n int) error {
	if s.active.n == 0 || (s.wal.fits(n) && s.active.n < hardCapFactor*s.entriesDue()) {
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
// to bbolt, in chunks, and resets the WAL. The committer has exited.
func (s *Store) flush() error {
	s.hurry.Add(1) // for good: the store is closing
	if s.cp != nil {
		<-s.cp.done
		s.cp = nil
	}
	s.memMu.RLock()
	f, a := s.frozen, s.active
	s.memMu.RUnlock()
	// Hold the boundary (a frozen memtable holds it already) until the
	// last chunk, so that no Backup snapshot begins between chunks.
	if f == nil {
		s.boundary <- struct{}{}
	}
	defer func() { <-s.boundary }()
	var chunks []chunk
	if f != nil { // its checkpoint failed: write it first, a's entries override
		chunks = f.chunks(s.chunkSize())
	}
	chunks = append(chunks, a.chunks(s.chunkSize())...)
	// The last chunk records the epoch even with nothing to write: see recover.
	if err := s.commitChunks(chunks, s.wal.epoch, false); err != nil {
		return fmt.Errorf("checkpoint vault: %w", err) // the WAL still has it
	}
	s.memMu.Lock()
	s.frozen, s.active = nil, newMemtable()
	s.memMu.Unlock()
	if f != nil || a.n > 0 {
		s.checkpoints.Add(1)
		s.checkpointEntries.Add(uint64(a.n))
		if f != nil {
			s.checkpointEntries.Add(uint64(f.n))
		}
	}
	return s.wal.reset(s.wal.epoch + 1)
}

// recover replays the WAL into bbolt at Open and resets it. Replaying is
// idempotent: a frame holds final values (puts and deletes of whole keys),
// so applying frames that a checkpoint already wrote, in their original
// order, leaves the same state; and the two segments hold the newest
// history (see wal.go), so nothing in bbolt is newer than what is replayed.
// It writes in chunks too; a crash before the last one leaves the WAL as
// it was, to be replayed again. base is the segments' base epoch: bbolt
// must hold every epoch below it, or it lost committed transactions.
func (s *Store) recover(base uint64) (ReplayReport, error) {
	var epoch uint64 // the last epoch bbolt holds in full
	err := s.db.View(func(tx *bbolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyWALEpoch); len(v) == 8 {
			epoch = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	if err != nil {
		return ReplayReport{}, fmt.Errorf("replay wal: %w", err)
	}
	if base > epoch+1 {
		return ReplayReport{}, &WALError{File: s.wal.paths[0], Offset: -1, Problem: fmt.Sprintf(
			"the log began at epoch %d, but the vault file holds epochs only up to %d: the vault file is older than its log (a damaged meta page made bbolt fall back to an older transaction, or an older copy of the vault file was put in place without removing the log)",
			base, epoch)}
	}
	m := newMemtable()
	var records, entries int
	last, rep, err := s.wal.replay(epoch, func(p []byte) error {
		return decodePayload(p, func(b bucket, key, v []byte) error {
			entries++
			if b == bTokens && v != nil {
				records++
			}
			m.set(b, key, v) // a copy
			return nil
		})
	})
	if err != nil {
		return rep, err
	}
	rep.Records, rep.Entries = records, entries
	epoch = max(epoch, last)
	chunks := m.chunks(s.opts.checkpointChunk)
	// The epoch is recorded before the reset below zeroes the segments, so
	// later epochs stay above those of any stale frame left in them.
	if err := s.commitChunks(chunks, epoch, true); err != nil {
		return rep, fmt.Errorf("replay wal: %w", err)
	}
	return rep, s.wal.reset(epoch + 1)
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
