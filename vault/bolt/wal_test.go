package bolt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// walOnly keeps everything in the WAL: no checkpoint before Close.
var walOnly = Options{checkpointEntries: 1 << 30, checkpointEvery: time.Hour}

// crash abandons s as a killed process would leave it: the committer
// finishes what it had claimed, then the files are closed with no final
// checkpoint and no WAL reset. A checkpoint already running is let finish
// (the process could as well have died just after it).
func (s *Store) crash() {
	s.mu.Lock()
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	<-s.done
	if s.cp != nil {
		s.hurry.Add(1)
		<-s.cp.done
	}
	s.wal.close()
	s.db.Close()
}

// TestConformanceCheckpoints runs the suite with a checkpoint every two
// entries, one entry per checkpoint transaction, and small segments, so
// data crosses active → frozen → bbolt while the suite reads it.
func TestConformanceCheckpoints(t *testing.T) {
	opts := Options{checkpointEntries: 2, checkpointChunk: 1, segmentSize: 1 << 20}
	storetest.Run(t, func(t *testing.T) vault.Store { return openTemp(t, opts) })
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionStore { return openTemp(t, opts) })
}

// TestConformanceWALOnly runs the suite with everything served from the
// active memtable.
func TestConformanceWALOnly(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store { return openTemp(t, walOnly) })
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionStore { return openTemp(t, walOnly) })
}

func mustOpen(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v, want nil", path, err)
	}
	return s
}

func insertOne(t *testing.T, s *Store, rec vault.Record) {
	t.Helper()
	outs, err := s.Insert(context.Background(), []vault.Record{rec})
	if err != nil || outs[0].Status != vault.Stored {
		t.Fatalf("Insert = %v, %v; want Stored", outs, err)
	}
}

func wantRecord(t *testing.T, s *Store, rec vault.Record) {
	t.Helper()
	got, err := s.Get(context.Background(), rec.Token)
	if err != nil || !bytes.Equal(got.Ciphertext, rec.Ciphertext) {
		t.Fatalf("Get(%q) = %v, want the record", rec.Token, err)
	}
	if got, err := s.Find(context.Background(), rec.Fingerprint); err != nil || got.Token != rec.Token {
		t.Fatalf("Find(%x) = %q, %v; want %q", rec.Fingerprint, got.Token, err, rec.Token)
	}
}

func wantGone(t *testing.T, s *Store, rec vault.Record) {
	t.Helper()
	if _, err := s.Get(context.Background(), rec.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(%q) = %v, want %v", rec.Token, err, vault.ErrNotFound)
	}
	if _, err := s.Find(context.Background(), rec.Fingerprint); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Find(%x) = %v, want %v", rec.Fingerprint, err, vault.ErrNotFound)
	}
}

// TestCrashRecovery writes through the store, abandons it without Close,
// and checks that reopening replays every acknowledged write: records,
// sessions, lockouts and deletes, including deletes of records that a
// checkpoint had already put in bbolt.
func TestCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"WALOnly", walOnly},
		{"Checkpointing", Options{checkpointEntries: 16, segmentSize: 1 << 20}},
		{"SmallChunks", Options{checkpointEntries: 16, checkpointChunk: 3, segmentSize: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "tok.db")
			keys := newKeys(t)

			// Records that reach bbolt before the crash, two to delete later.
			s := mustOpen(t, path, Options{})
			old := []vault.Record{storetest.NewRecord(keys, false), storetest.NewRecord(keys, false)}
			for _, r := range old {
				insertOne(t, s, r)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close = %v, want nil", err)
			}

			s = mustOpen(t, path, tc.opts)
			var recs []vault.Record
			for range 100 {
				r := storetest.NewRecord(keys, false)
				insertOne(t, s, r)
				recs = append(recs, r)
			}
			for _, r := range append(old, recs[0]) {
				if err := s.Delete(ctx, r.Token); err != nil {
					t.Fatalf("Delete(%q) = %v, want nil", r.Token, err)
				}
			}
			sess := vault.Session{Key: []byte("sess"), ID: "s1", Client: "shop", Created: time.Now()}
			if err := s.PutSession(ctx, sess); err != nil {
				t.Fatalf("PutSession = %v, want nil", err)
			}
			gone := vault.Session{Key: []byte("gone"), ID: "s2"}
			if err := s.PutSession(ctx, gone); err != nil {
				t.Fatalf("PutSession = %v, want nil", err)
			}
			if err := s.DeleteSession(ctx, gone.Key); err != nil {
				t.Fatalf("DeleteSession = %v, want nil", err)
			}
			inc := func(l vault.Lockout) vault.Lockout { l.Failures++; return l }
			for range 3 {
				if _, err := s.UpdateLockout(ctx, "shop", inc); err != nil {
					t.Fatalf("UpdateLockout = %v, want nil", err)
				}
			}
			s.crash()

			s = mustOpen(t, path, tc.opts)
			defer s.Close()
			for _, r := range recs[1:] {
				wantRecord(t, s, r)
			}
			for _, r := range append(old, recs[0]) {
				wantGone(t, s, r)
			}
			if got, err := s.GetSession(ctx, sess.Key); err != nil || got.ID != sess.ID {
				t.Errorf("GetSession(%q) = %+v, %v; want ID %q", sess.Key, got, err, sess.ID)
			}
			if _, err := s.GetSession(ctx, gone.Key); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("GetSession(%q) = %v, want %v", gone.Key, err, vault.ErrNotFound)
			}
			if l, err := s.UpdateLockout(ctx, "shop", inc); err != nil || l.Failures != 4 {
				t.Errorf("UpdateLockout after crash = %+v, %v; want 4 failures", l, err)
			}
		})
	}
}

// TestCrashTwice checks that a store reopened after a crash, written to
// and crashed again, still has both rounds: the reset after replay must not
// lose the first round nor let its frames be replayed out of order.
func TestCrashTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	keys := newKeys(t)
	var recs []vault.Record
	for round := range 3 {
		s := mustOpen(t, path, walOnly)
		for _, r := range recs {
			wantRecord(t, s, r)
		}
		if round > 0 {
			// Delete one record of the previous round.
			if err := s.Delete(context.Background(), recs[0].Token); err != nil {
				t.Fatalf("Delete = %v, want nil", err)
			}
			recs = recs[1:]
		}
		for range 10 {
			r := storetest.NewRecord(keys, false)
			insertOne(t, s, r)
			recs = append(recs, r)
		}
		s.crash()
	}
	s := mustOpen(t, path, walOnly)
	defer s.Close()
	for _, r := range recs {
		wantRecord(t, s, r)
	}
}

// TestTornTail damages the last frame, as a crash in the middle of its
// write would, and checks that the frames before it replay, Open succeeds
// and its report names the dropped frame. (A segment cut short is no
// crash's work: see TestWALDamageRefused.)
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, seg string, off int64)
	}{
		{"CorruptPayload", func(t *testing.T, seg string, off int64) {
			f, err := os.OpenFile(seg, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xff, 0x00, 0xff}, off+frameHeader+5); err != nil {
				t.Fatal(err)
			}
		}},
		{"HeaderOnly", func(t *testing.T, seg string, off int64) {
			f, err := os.OpenFile(seg, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// The header made it, the payload did not (zeros).
			if _, err := f.WriteAt(make([]byte, 64), off+frameHeader); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tok.db")
			keys := newKeys(t)
			s := mustOpen(t, path, walOnly)
			var recs []vault.Record
			for range 5 {
				r := storetest.NewRecord(keys, false)
				insertOne(t, s, r)
				recs = append(recs, r)
			}
			// The committer is idle and its answer to the last Insert
			// happened after it advanced the offset.
			lastOff, seg := s.wal.off, walPaths(path)[s.wal.cur]
			last := storetest.NewRecord(keys, false)
			insertOne(t, s, last)
			s.crash()
			tc.damage(t, seg, lastOff)

			s = mustOpen(t, path, walOnly)
			defer s.Close()
			for _, r := range recs {
				wantRecord(t, s, r)
			}
			wantGone(t, s, last)
			rep := s.OpenReport().Replay
			if rep.TornFile != seg || rep.TornOffset != lastOff || rep.TornBytes <= frameHeader || rep.Frames != 5 || rep.Records != 5 {
				t.Errorf("OpenReport().Replay = %+v, want the torn frame at %s offset %d and 5 frames, 5 records", rep, seg, lastOff)
			}
		})
	}
}

// TestStaleFramesNotReplayed reuses a segment under a new epoch with a
// frame exactly as long as the old first one, so the next header read is a
// valid frame of the previous epoch: replay must stop there.
func TestStaleFramesNotReplayed(t *testing.T) {
	w, err := openWAL(filepath.Join(t.TempDir(), "tok.db"), 1<<16, segHeaderSize, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.reset(5); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"old-1", "old-2", "old-3"} {
		if err := w.append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	w.rotate() // segment 1, epoch 6: left empty
	w.rotate() // segment 0 again, epoch 7
	if err := w.append([]byte("new-1")); err != nil {
		t.Fatal(err)
	}
	// Epoch 5 is in bbolt (segment 0 is reused only then) and epoch 6 too:
	// it was empty.
	var got []string
	last, _, err := w.replay(6, func(p []byte) error { got = append(got, string(p)); return nil })
	if err != nil {
		t.Fatalf("replay = %v, want nil", err)
	}
	if strings.Join(got, ",") != "new-1" || last != 7 {
		t.Errorf("replay = %q, epoch %d; want [new-1], epoch 7", got, last)
	}
}

// TestReplayOrder checks that the older segment replays first even when it
// is segment 1.
func TestReplayOrder(t *testing.T) {
	w, err := openWAL(filepath.Join(t.TempDir(), "tok.db"), 1<<16, segHeaderSize, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if err := w.reset(1); err != nil {
		t.Fatal(err)
	}
	for i, p := range []string{"a", "b", "c", "d"} {
		if i > 0 {
			w.rotate()
		}
		if err := w.append([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	// Segment 0 holds c (epoch 3), segment 1 holds d (epoch 4); bbolt
	// holds epoch 2 (segment 0 was reused only then).
	var got []string
	if _, _, err := w.replay(2, func(p []byte) error { got = append(got, string(p)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "") != "cd" {
		t.Errorf("replay order = %q, want [c d]", got)
	}
	// With epoch 3 already in bbolt, only segment 1 replays.
	got = nil
	if _, _, err := w.replay(3, func(p []byte) error { got = append(got, string(p)); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "") != "d" {
		t.Errorf("replay after epoch 3 = %q, want [d]", got)
	}
}

// TestWALFilesPrivate checks the segments' mode.
func TestWALFilesPrivate(t *testing.T) {
	s := openTemp(t, Options{})
	for _, p := range walPaths(s.Path()) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o600 {
			t.Errorf("mode of %q = %v, want 0600", p, fi.Mode())
		}
	}
}

// TestCheckpointMovesToBolt checks that a checkpoint empties the memtables
// into bbolt and that reads are served from there afterwards.
func TestCheckpointMovesToBolt(t *testing.T) {
	s := openTemp(t, Options{checkpointEntries: 1 << 30, checkpointEvery: time.Hour})
	keys := newKeys(t)
	rec := storetest.NewRecord(keys, false)
	insertOne(t, s, rec)
	// Freeze from inside the committer and wait for the checkpoint.
	done := make(chan struct{})
	s.write(context.Background(), func(*txn) error {
		s.freezeForTest(done)
		return nil
	})
	<-done
	if got := s.Stats().Checkpoints; got != 1 {
		t.Errorf("Checkpoints = %d, want 1", got)
	}
	if _, ok := s.memGet(bTokens, []byte(rec.Token)); ok {
		t.Errorf("record still in a memtable after the checkpoint")
	}
	wantRecord(t, s, rec)
}

// freezeForTest runs in the committer (inside an op): it freezes the
// active memtable and closes done when the checkpoint has finished.
func (s *Store) freezeForTest(done chan struct{}) {
	if _, err := s.settle(true); err != nil {
		panic(err)
	}
	s.freeze()
	run := s.cp
	go func() { <-run.done; close(done) }()
}

// The SIGKILL test: a child process (this test binary re-executed) writes
// in a loop and prints each acknowledged token; the parent kills it with
// SIGKILL mid-stream, reopens the vault and checks every printed token.
const childEnvPath = "TOK_WAL_CHILD_DB"

func TestSIGKILL(t *testing.T) {
	if path := os.Getenv(childEnvPath); path != "" {
		sigkillChild(path)
		return
	}
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "tok.db")
	var acked []string
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILL$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnvPath+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		n, killAt := 0, 2000+round*700
		for sc.Scan() {
			acked = append(acked, sc.Text())
			if n++; n == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child printed %d tokens before exiting, want at least %d", round, n, killAt)
		}
		s := mustOpen(t, path, Options{segmentSize: 256 << 10})
		missing := 0
		for _, line := range acked {
			kind, key, _ := strings.Cut(line, " ")
			var err error
			if kind == "tok" {
				_, err = s.Get(context.Background(), key)
			} else {
				_, err = s.GetSession(context.Background(), []byte(key))
			}
			if err != nil {
				missing++
				if missing < 5 {
					t.Errorf("round %d: acknowledged %s %q: %v", round, kind, key, err)
				}
			}
		}
		if missing > 0 {
			t.Fatalf("round %d: %d of %d acknowledged writes lost", round, missing, len(acked))
		}
		t.Logf("round %d: killed after %d acknowledged writes, all %d so far present (%+v)", round, n, len(acked), s.Stats())
		if round%2 == 1 {
			s.Close() // sometimes a clean close between crashes
		} else {
			s.crash()
		}
	}
}

// sigkillChild writes from 8 goroutines until killed, printing "tok T" or
// "sess K" once each write is acknowledged. Small checkpoints, chunks and
// segments make the kill land in every phase: appends, freezes, checkpoints
// (between their chunks too) and segment reuse.
func sigkillChild(path string) {
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		panic(err)
	}
	s, err := Open(path, Options{checkpointEntries: 500, checkpointChunk: 64, segmentSize: 256 << 10})
	if err != nil {
		panic(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				var line string
				if i%5 == 4 {
					key := fmt.Sprintf("child-%d-%d-%d", os.Getpid(), g, i)
					if err := s.PutSession(context.Background(), vault.Session{Key: []byte(key), ID: key}); err != nil {
						panic(err)
					}
					line = "sess " + key
				} else {
					r := storetest.NewRecord(keys, false)
					outs, err := s.Insert(context.Background(), []vault.Record{r})
					if err != nil {
						panic(err)
					}
					line = "tok " + outs[0].Record.Token
					if outs[0].Status == vault.Collision {
						continue
					}
				}
				mu.Lock()
				os.Stdout.WriteString(line + "\n")
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestSegmentOverflow uses segments so small that appends keep filling
// them: each full segment forces a checkpoint (the committer waits for the
// previous one), and everything written survives a crash and reopening.
func TestSegmentOverflow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	opts := Options{segmentSize: 16 << 10, checkpointEntries: 1 << 30, checkpointEvery: time.Hour}
	s := mustOpen(t, path, opts)
	keys := newKeys(t)
	var recs []vault.Record
	var wg sync.WaitGroup
	var mu sync.Mutex
	for range 8 {
		wg.Go(func() {
			for range 100 {
				r := storetest.NewRecord(keys, false)
				if _, err := s.Insert(context.Background(), []vault.Record{r}); err != nil {
					t.Errorf("Insert = %v, want nil", err)
					return
				}
				mu.Lock()
				recs = append(recs, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := s.Stats().Checkpoints; got < 5 {
		t.Errorf("Checkpoints = %d, want several (one per full 16 KiB segment)", got)
	}
	for _, r := range recs {
		wantRecord(t, s, r)
	}
	s.crash()
	s = mustOpen(t, path, opts)
	defer s.Close()
	for _, r := range recs {
		wantRecord(t, s, r)
	}
}

// TestFrameTooLarge checks that a commit larger than a whole segment fails
// alone, writes nothing, and leaves the store working.
func TestFrameTooLarge(t *testing.T) {
	s := openTemp(t, Options{segmentSize: 16 << 10})
	keys := newKeys(t)
	big := make([]vault.Record, 200) // ~40 KiB of effects
	for i := range big {
		big[i] = storetest.NewRecord(keys, false)
	}
	if _, err := s.Insert(context.Background(), big); !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Insert(200 records) into 16 KiB segments = %v, want %v", err, vault.ErrUnavailable)
	}
	wantGone(t, s, big[0])
	small := storetest.NewRecord(keys, false)
	insertOne(t, s, small)
	wantRecord(t, s, small)
}

// TestResetInterruptedNoResurrection: reset zeroes the segments' headers
// one after the other, so a kill in between can leave the older segment's
// frames readable. Their epoch is at or below the one bbolt recorded:
// replaying them over the newer history would bring back a deleted record.
func TestResetInterruptedNoResurrection(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tok.db")
	opts := Options{checkpointEntries: 1 << 30, checkpointEvery: time.Hour}
	s := mustOpen(t, path, opts)
	freeze := func() {
		done := make(chan struct{})
		s.write(ctx, func(*txn) error { s.freezeForTest(done); return nil })
		<-done
	}
	keys := newKeys(t)
	insertOne(t, s, storetest.NewRecord(keys, false)) // segment 0
	freeze()                                          // appends go to segment 1
	r := storetest.NewRecord(keys, false)
	insertOne(t, s, r) // segment 1
	freeze()           // appends go to segment 0; r is in bbolt
	if err := s.Delete(ctx, r.Token); err != nil {
		t.Fatal(err)
	}
	s.crash()
	seg1 := walPaths(path)[1]
	f, err := os.OpenFile(seg1, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdr := make([]byte, frameHeader)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, opts) // replays both segments, then resets them
	s.crash()
	// As if killed after reset zeroed segment 0 but not yet segment 1.
	if _, err := f.WriteAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path, opts)
	defer s.Close()
	if _, err := s.Get(ctx, r.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(deleted token) after an interrupted reset = %v, want ErrNotFound", err)
	}
	if _, err := s.Find(ctx, r.Fingerprint); len(r.Fingerprint) > 0 && !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Find(deleted fingerprint) after an interrupted reset = %v, want ErrNotFound", err)
	}
}
