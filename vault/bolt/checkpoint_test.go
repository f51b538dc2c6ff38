package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

func TestChunks(t *testing.T) {
	m := newMemtable()
	for _, k := range []string{"d", "a", "c", "b", "e"} {
		m.set(bTokens, []byte(k), []byte("v"+k))
	}
	m.set(bFingerprints, []byte("y"), []byte("t"))
	m.set(bFingerprints, []byte("x"), nil) // a tombstone is an entry too
	m.set(bSessions, []byte("s"), []byte("1"))
	for _, tc := range []struct {
		size int
		want string
	}{
		{1, "[0:a] [0:b] [0:c] [0:d] [0:e] [1:x] [1:y] [2:s]"},
		{3, "[0:a 0:b 0:c] [0:d 0:e 1:x] [1:y 2:s]"},
		{4, "[0:a 0:b 0:c 0:d] [0:e 1:x 1:y 2:s]"},
		{100, "[0:a 0:b 0:c 0:d 0:e 1:x 1:y 2:s]"},
	} {
		if got := chunkString(m.chunks(tc.size)); got != tc.want {
			t.Errorf("chunks(%d) = %s, want %s", tc.size, got, tc.want)
		}
	}
	if got := newMemtable().chunks(4); len(got) != 1 || got[0].entries() != 0 {
		t.Errorf("chunks of an empty memtable = %s, want one empty chunk (to record the epoch in)", chunkString(got))
	}
}

func chunkString(cs []chunk) string {
	var out []byte
	for i, c := range cs {
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, '[')
		n := 0
		for _, sp := range c {
			for _, r := range sp.refs {
				if n > 0 {
					out = append(out, ' ')
				}
				out = fmt.Appendf(out, "%d:%s", sp.b, sp.t.arena.key(r))
				n++
			}
		}
		out = append(out, ']')
	}
	return string(out)
}

// freezeNow freezes the active memtable from inside the committer and
// returns the checkpoint it started, without pauses (the tests' stores
// would otherwise pace it over half an hour). Nothing else may be writing.
func freezeNow(t *testing.T, s *Store) *checkpointRun {
	t.Helper()
	var run *checkpointRun
	err := s.write(context.Background(), func(*txn) error {
		if _, err := s.settle(true); err != nil {
			return err
		}
		s.freeze()
		run = s.cp
		run.hurry.Store(true)
		return nil
	})
	if err != nil {
		t.Fatalf("freeze: %v", err)
	}
	return run
}

// chunkedHistory is a history whose checkpoint takes many chunks: records
// already in bbolt (some deleted now), new records (some deleted again), a
// session overwritten and one deleted, a lockout counted up.
type chunkedHistory struct {
	live, gone []vault.Record
	sess       vault.Session // current value
	goneSess   []byte
	failures   int
}

// chunkedOpts checkpoints only when told to, 8 entries per chunk.
func chunkedOpts(f *Faults) Options {
	return Options{Faults: f, checkpointEntries: 1 << 30, checkpointEvery: time.Hour, checkpointChunk: 8}
}

// writeHistory puts 20 records, two sessions and a lockout into bbolt
// (through a closed store), then reopens path with opts and writes the
// rest of the history into its WAL and active memtable.
func writeHistory(t *testing.T, path string, keys *vault.Keyring, opts Options) (*Store, *chunkedHistory) {
	t.Helper()
	ctx := context.Background()
	h := &chunkedHistory{goneSess: []byte("gone")}
	s := mustOpen(t, path, Options{})
	var old []vault.Record
	for range 20 {
		r := storetest.NewRecord(keys, false)
		insertOne(t, s, r)
		old = append(old, r)
	}
	for _, k := range []string{"sess", "gone"} {
		if err := s.PutSession(ctx, vault.Session{Key: []byte(k), ID: "old-" + k}); err != nil {
			t.Fatalf("PutSession = %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}

	s = mustOpen(t, path, opts)
	var recs []vault.Record
	for range 60 {
		r := storetest.NewRecord(keys, false)
		insertOne(t, s, r)
		recs = append(recs, r)
	}
	h.live = append(old[10:], recs[5:]...)
	h.gone = append(old[:10:10], recs[:5]...)
	for _, r := range h.gone {
		if err := s.Delete(ctx, r.Token); err != nil {
			t.Fatalf("Delete(%q) = %v", r.Token, err)
		}
	}
	h.sess = vault.Session{Key: []byte("sess"), ID: "new", Client: "shop", Created: time.Now().UTC().Truncate(time.Millisecond)}
	if err := s.PutSession(ctx, h.sess); err != nil {
		t.Fatalf("PutSession = %v", err)
	}
	if err := s.DeleteSession(ctx, h.goneSess); err != nil {
		t.Fatalf("DeleteSession = %v", err)
	}
	h.bumpLockout(t, s, 3)
	return s, h
}

func (h *chunkedHistory) bumpLockout(t *testing.T, s *Store, n int) {
	t.Helper()
	for range n {
		l, err := s.UpdateLockout(context.Background(), "shop", func(l vault.Lockout) vault.Lockout { l.Failures++; return l })
		if err != nil {
			t.Fatalf("UpdateLockout = %v", err)
		}
		h.failures = l.Failures
	}
}

// check verifies every acknowledged write of h through s's reads.
func (h *chunkedHistory) check(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for _, r := range h.live {
		wantRecord(t, s, r)
	}
	for _, r := range h.gone {
		wantGone(t, s, r)
	}
	if got, err := s.GetSession(ctx, h.sess.Key); err != nil || got.ID != h.sess.ID {
		t.Errorf("GetSession(%q) = %+v, %v; want ID %q", h.sess.Key, got, err, h.sess.ID)
	}
	if _, err := s.GetSession(ctx, h.goneSess); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(%q) = %v, want %v", h.goneSess, err, vault.ErrNotFound)
	}
	l, err := s.UpdateLockout(ctx, "shop", func(l vault.Lockout) vault.Lockout { return l })
	if err != nil || l.Failures != h.failures {
		t.Errorf("lockout = %+v, %v; want %d failures", l, err, h.failures)
	}
}

// inBolt counts the records of recs whose token is in bbolt itself.
func inBolt(t *testing.T, s *Store, recs []vault.Record) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, r := range recs {
			if tx.Bucket(bucketTokens).Get([]byte(r.Token)) != nil {
				n++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// failAfterChunks makes every checkpoint chunk after the first k fail.
func failAfterChunks(f *Faults, k int32) {
	var n atomic.Int32
	f.mu.Lock()
	f.hook = func(op string) error {
		if op == "checkpoint" && n.Add(1) > k {
			return syscall.EIO
		}
		return nil
	}
	f.mu.Unlock()
}

// TestCrashBetweenChunks: a checkpoint fails after 3 of its chunks have
// committed, so bbolt holds part of the frozen memtable (new records,
// deletes of old ones) and not the rest; more writes follow in the other
// segment, deleting records of the frozen memtable; then the process dies.
// Reads are right throughout, and after reopening every acknowledged write
// is there and every delete holds.
func TestCrashBetweenChunks(t *testing.T) {
	keys := newKeys(t)
	path := filepath.Join(t.TempDir(), "tok.db")
	f := &Faults{}
	s, h := writeHistory(t, path, keys, chunkedOpts(f))
	failAfterChunks(f, 3)
	run := freezeNow(t, s)
	<-run.done
	if run.err == nil || !errors.Is(run.err, vault.ErrUnavailable) {
		t.Fatalf("checkpoint failing after 3 chunks: err = %v, want %v", run.err, vault.ErrUnavailable)
	}
	newInBolt := inBolt(t, s, h.live[10:])
	if newInBolt == 0 || newInBolt == len(h.live[10:]) {
		t.Fatalf("%d of %d new records in bbolt after 3 chunks of 8, want some but not all", newInBolt, len(h.live[10:]))
	}
	h.check(t, s)
	if st := s.Stats(); st.Checkpoints != 0 || st.CheckpointChunks != 3 || st.CheckpointEntries != 0 {
		t.Errorf("Stats() = %+v, want 0 checkpoints, 3 chunks, 0 entries", st)
	}

	// Writes into the new segment, over the frozen memtable.
	ctx := context.Background()
	for _, r := range h.live[10:13] {
		if err := s.Delete(ctx, r.Token); err != nil {
			t.Fatalf("Delete(%q) = %v", r.Token, err)
		}
	}
	h.gone, h.live = append(h.gone, h.live[10:13]...), append(h.live[:10:10], h.live[13:]...)
	for range 5 {
		r := storetest.NewRecord(keys, false)
		insertOne(t, s, r)
		h.live = append(h.live, r)
	}
	h.bumpLockout(t, s, 2)
	h.check(t, s)

	s.crash()
	s = mustOpen(t, path, Options{})
	defer s.Close()
	h.check(t, s)
}

// TestChunkRetryResumes: a checkpoint that failed after 3 chunks is
// retried once the fault clears, from the chunk that failed; then the
// frozen memtable is gone, bbolt has everything, and Stats counts one
// checkpoint of all its entries in exactly as many chunks as it has.
func TestChunkRetryResumes(t *testing.T) {
	ctx := context.Background()
	keys := newKeys(t)
	path := filepath.Join(t.TempDir(), "tok.db")
	f := &Faults{}
	s, h := writeHistory(t, path, keys, chunkedOpts(f))
	defer func() { s.Close() }()
	s.memMu.RLock()
	entries, chunks := s.active.n, len(s.active.chunks(8))
	s.memMu.RUnlock()
	failAfterChunks(f, 3)
	<-freezeNow(t, s).done
	if err := s.Ping(ctx); !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Ping with the checkpoint failing = %v, want %v", err, vault.ErrUnavailable)
	}

	f.Clear()
	f.mu.Lock()
	f.hook = nil
	f.mu.Unlock()
	waitFor(t, "the retried checkpoint", func() bool {
		s.Ping(ctx) // restarts it
		return s.Stats().Checkpoints == 1
	})
	want := Stats{Checkpoints: 1, CheckpointEntries: uint64(entries), CheckpointChunks: uint64(chunks)}
	if st := s.Stats(); st.Checkpoints != want.Checkpoints || st.CheckpointEntries != want.CheckpointEntries || st.CheckpointChunks != want.CheckpointChunks {
		t.Errorf("Stats() = %+v, want %+v", st, want)
	}
	if chunks < 10 {
		t.Errorf("the checkpoint took %d chunks, want a test with more", chunks)
	}
	s.memMu.RLock()
	frozen := s.frozen
	s.memMu.RUnlock()
	if frozen != nil {
		t.Errorf("memtable still frozen after its checkpoint")
	}
	if got := inBolt(t, s, h.live); got != len(h.live) {
		t.Errorf("%d of %d records in bbolt after the checkpoint, want all", got, len(h.live))
	}
	if got := inBolt(t, s, h.gone); got != 0 {
		t.Errorf("%d deleted records in bbolt after the checkpoint, want none", got)
	}
	h.check(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	s = mustOpen(t, path, Options{})
	h.check(t, s)
}

// TestReadsBetweenChunks holds a chunked checkpoint before each of its
// chunks and checks, at every step, that reads (from this goroutine and
// from concurrent readers) see every acknowledged write and no deleted
// record, and that a Backup snapshot cannot begin while part of the
// checkpoint is in bbolt; once it has committed, one can, and it holds
// everything.
func TestReadsBetweenChunks(t *testing.T) {
	keys := newKeys(t)
	f := &Faults{}
	path := filepath.Join(t.TempDir(), "tok.db")
	s, h := writeHistory(t, path, keys, chunkedOpts(f))
	defer s.Close()

	step, resume := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.hook = func(op string) error {
		if op == "checkpoint" {
			step <- struct{}{}
			<-resume
		}
		return nil
	}
	f.mu.Unlock()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, r := range h.live {
					if got, err := s.Find(ctx, r.Fingerprint); err != nil || got.Token != r.Token {
						t.Errorf("Find during the checkpoint = %q, %v; want %q", got.Token, err, r.Token)
						return
					}
				}
				for _, r := range h.gone {
					if _, err := s.Get(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
						t.Errorf("Get(deleted %q) during the checkpoint = %v, want %v", r.Token, err, vault.ErrNotFound)
						return
					}
				}
				reads.Add(1)
			}
		})
	}

	run := freezeNow(t, s)
	steps := 0
	for done := false; !done; {
		select {
		case <-step:
			h.check(t, s)
			if steps == 2 {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				tx, err := s.snapshot(ctx)
				cancel()
				if err == nil {
					tx.Rollback()
					t.Errorf("snapshot between chunks began, want it to wait for the checkpoint's end")
				}
			}
			steps++
			resume <- struct{}{}
		case <-run.done:
			done = true
		}
	}
	close(stop)
	wg.Wait()
	if run.err != nil {
		t.Fatalf("checkpoint = %v", run.err)
	}
	if steps < 10 {
		t.Errorf("checkpoint took %d chunks, want a test with more", steps)
	}
	if st := s.Stats(); st.Checkpoints != 1 || st.CheckpointChunks != uint64(steps) {
		t.Errorf("Stats() = %+v, want 1 checkpoint in %d chunks", st, steps)
	}
	t.Logf("%d chunks, %d rounds of concurrent reads", steps, reads.Load())

	tx, err := s.snapshot(context.Background())
	if err != nil {
		t.Fatalf("snapshot after the checkpoint = %v", err)
	}
	defer tx.Rollback()
	toks, fps := buckets(tx)
	for _, r := range h.live {
		if toks.Get([]byte(r.Token)) == nil || string(fps.Get(r.Fingerprint)) != r.Token {
			t.Errorf("record %q not whole in the snapshot", r.Token)
		}
	}
	for _, r := range h.gone {
		if toks.Get([]byte(r.Token)) != nil || fps.Get(r.Fingerprint) != nil {
			t.Errorf("deleted record %q in the snapshot", r.Token)
		}
	}
	keysIn := slices.Collect(func(yield func(string) bool) {
		tx.Bucket(bucketSessions).ForEach(func(k, _ []byte) error { yield(string(k)); return nil })
	})
	if !slices.Equal(keysIn, []string{"sess"}) {
		t.Errorf("sessions in the snapshot = %q, want [sess]", keysIn)
	}
}

// TestHurryPacedCheckpoint: a checkpoint paces itself to the filling of
// the next memtable, which here never fills (an hour between checkpoints,
// no more writes, and an hour before the store counts as idle), so it
// would take an hour; Backup and Close wait for it, and must make it run
// flat out instead.
func TestHurryPacedCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait func(s *Store) error
	}{
		{"Backup", func(s *Store) error { _, err := s.Backup(context.Background(), &nopWriter{}); return err }},
		{"Close", func(s *Store) error { return s.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := newKeys(t)
			path := filepath.Join(t.TempDir(), "tok.db")
			s := mustOpen(t, path, Options{checkpointEntries: 64, checkpointChunk: 1, checkpointEvery: time.Hour, idleAfter: time.Hour})
			recs := insertRecords(t, s, keys, 32) // 64 entries: the last insert triggers the checkpoint
			waitFor(t, "the checkpoint to start", func() bool { return s.Stats().CheckpointChunks > 0 })
			done := make(chan error, 1)
			go func() { done <- tc.wait(s) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s = %v", tc.name, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s still waiting after 10 s: the paced checkpoint was not hurried", tc.name)
			}
			if st := s.Stats(); st.Checkpoints < 1 || st.CheckpointChunks < 64 {
				t.Errorf("Stats() = %+v, want the 64-chunk checkpoint done", st)
			}
			if tc.name == "Close" {
				s = mustOpen(t, path, Options{})
			}
			defer s.Close()
			for _, r := range recs {
				wantRecord(t, s, r)
			}
		})
	}
}

// TestIdleCheckpointRunsFlatOut: the same hour-long paced checkpoint, with
// nobody waiting for it, runs flat out once no commit has come for
// idleAfter: there are no fdatasyncs left to protect.
func TestIdleCheckpointRunsFlatOut(t *testing.T) {
	keys := newKeys(t)
	s := openTemp(t, Options{checkpointEntries: 64, checkpointChunk: 1, checkpointEvery: time.Hour, idleAfter: 50 * time.Millisecond})
	recs := insertRecords(t, s, keys, 32) // 64 entries: the last insert triggers the checkpoint
	waitFor(t, "the checkpoint to finish in the lull", func() bool { return s.Stats().Checkpoints >= 1 })
	if st := s.Stats(); st.CheckpointChunks < 64 || st.CheckpointEntries != 64 {
		t.Errorf("Stats() = %+v, want one 64-chunk checkpoint of 64 entries", st)
	}
	for _, r := range recs {
		wantRecord(t, s, r)
	}
}

// insertRecords inserts n new records, one commit each, and returns them.
func insertRecords(t *testing.T, s *Store, keys *vault.Keyring, n int) []vault.Record {
	t.Helper()
	recs := make([]vault.Record, n)
	for i := range recs {
		recs[i] = storetest.NewRecord(keys, false)
		insertOne(t, s, recs[i])
	}
	return recs
}
