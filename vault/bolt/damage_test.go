package bolt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// fillWAL creates a vault at a fresh path, inserts n records one commit
// each with checkpoints off, and crashes it: the records are only in the
// WAL. It returns the path, the records and each frame's offset.
func fillWAL(t *testing.T, n int) (string, []vault.Record, []int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tok.db")
	keys := newKeys(t)
	s := mustOpen(t, path, walOnly)
	var recs []vault.Record
	var offs []int64
	for range n {
		offs = append(offs, s.wal.off)
		r := storetest.NewRecord(keys, false)
		insertOne(t, s, r)
		recs = append(recs, r)
	}
	s.crash()
	return path, recs, offs
}

func flip(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0xa5
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestWALDamageRefused: damage that valid frames follow, or a segment
// missing, cut short or without its header after an unclean stop, refuses
// to open with a WALError naming the file; Salvage then recovers every
// frame the damage did not destroy.
func TestWALDamageRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, seg string, offs []int64)
		offset  bool // the error names an offset
		salvage int  // records Salvage recovers of 6
	}{
		{"FlippedMidSegment", func(t *testing.T, seg string, offs []int64) { flip(t, seg, offs[2]+frameHeader+20) }, true, 5},
		{"ZeroedHeaderMidSegment", func(t *testing.T, seg string, offs []int64) {
			f, _ := os.OpenFile(seg, os.O_RDWR, 0)
			defer f.Close()
			f.WriteAt(make([]byte, frameHeader), offs[1])
		}, true, 5},
		{"Deleted", func(t *testing.T, seg string, _ []int64) { os.Remove(seg) }, false, 0},
		{"Emptied", func(t *testing.T, seg string, _ []int64) { os.Truncate(seg, 0) }, false, 0},
		{"Truncated", func(t *testing.T, seg string, offs []int64) { os.Truncate(seg, offs[3]+5) }, false, 3},
		{"HeaderZeroed", func(t *testing.T, seg string, _ []int64) {
			f, _ := os.OpenFile(seg, os.O_RDWR, 0)
			defer f.Close()
			f.WriteAt(make([]byte, segHeaderSize), 0)
		}, false, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, recs, offs := fillWAL(t, 6)
			seg := walPaths(path)[0]
			tc.damage(t, seg, offs)
			_, err := Open(path, walOnly)
			var we *WALError
			if !errors.As(err, &we) || !errors.Is(err, ErrWALDamaged) || we.File != seg || (tc.offset && we.Offset < 0) {
				t.Fatalf("Open after damage = %v, want a WALError on %s", err, seg)
			}
			if !strings.Contains(err.Error(), "tok vault recover") {
				t.Errorf("error %q does not say what to do", err)
			}
			d, err := Diagnose(path, walOnly)
			if err != nil || d.OK() || d.Records != tc.salvage {
				t.Errorf("Diagnose = %+v, %v; want damage reported and %d records recoverable", d, err, tc.salvage)
			}
			if _, err := Salvage(path, walOnly); err != nil {
				t.Fatalf("Salvage = %v", err)
			}
			s := mustOpen(t, path, walOnly)
			defer s.Close()
			found := 0
			for _, r := range recs {
				if _, err := s.Get(t.Context(), r.Token); err == nil {
					found++
				}
			}
			if found != tc.salvage {
				t.Errorf("after Salvage %d of %d records are back, want %d", found, len(recs), tc.salvage)
			}
		})
	}
}

// TestWALCleanStopRecreates: after a clean stop bbolt holds everything, so
// a missing segment is recreated with a warning.
func TestWALCleanStopRecreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	keys := newKeys(t)
	s := mustOpen(t, path, walOnly)
	r := storetest.NewRecord(keys, false)
	insertOne(t, s, r)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(walPaths(path)[1])
	s = mustOpen(t, path, walOnly)
	defer s.Close()
	wantRecord(t, s, r)
	if w := s.OpenReport().Warnings; len(w) != 1 || !strings.Contains(w[0], "clean stop") {
		t.Errorf("warnings = %q, want one about the recreated segment", w)
	}
}

// TestVaultMissingRefused: a deleted or emptied vault file beside its log
// and marker is refused, and only Init creates a new vault there, moving
// the old files aside.
func TestVaultMissingRefused(t *testing.T) {
	for _, name := range []string{"Deleted", "Emptied", "DeletedWithoutLog"} {
		t.Run(name, func(t *testing.T) {
			path, recs, _ := fillWAL(t, 3)
			switch name {
			case "Deleted":
				os.Remove(path)
			case "Emptied":
				os.Truncate(path, 0)
			case "DeletedWithoutLog":
				os.Remove(path)
				os.Remove(walPaths(path)[0])
				os.Remove(walPaths(path)[1])
			}
			if _, err := Open(path, walOnly); !errors.Is(err, ErrVaultMissing) || !strings.Contains(err.Error(), "-init-vault") {
				t.Fatalf("Open = %v, want ErrVaultMissing saying what to do", err)
			}
			opts := walOnly
			opts.Init = true
			s := mustOpen(t, path, opts)
			defer s.Close()
			rep := s.OpenReport()
			if !rep.Created || len(rep.MovedAside) == 0 || rep.Replay.Frames != 0 {
				t.Errorf("OpenReport = %+v, want a new vault, old files moved aside, nothing replayed", rep)
			}
			wantGone(t, s, recs[0])
		})
	}
}

// TestTracesRefuse: a trace the caller names (the audit log) keeps a
// missing vault from being created.
func TestTracesRefuse(t *testing.T) {
	dir := t.TempDir()
	audit := filepath.Join(dir, "audit.log")
	os.WriteFile(audit, []byte("{}\n"), 0o600)
	if _, err := Open(filepath.Join(dir, "tok.db"), Options{Traces: []string{audit}}); !errors.Is(err, ErrVaultMissing) {
		t.Fatalf("Open beside an audit log = %v, want ErrVaultMissing", err)
	}
}

// TestForeignVaultRefused: a vault file swapped for another vault's is
// refused, by its marker and by its log's headers.
func TestForeignVaultRefused(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a", "tok.db"), filepath.Join(dir, "b", "tok.db")
	for _, p := range []string{a, b} {
		s := mustOpen(t, p, walOnly)
		s.Close()
	}
	if err := os.Rename(b, a); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(a, walOnly); !errors.Is(err, ErrForeignVault) {
		t.Fatalf("Open on another vault's file = %v, want ErrForeignVault", err)
	}
	os.Remove(a + idSuffix)
	if _, err := Open(a, walOnly); !errors.Is(err, ErrForeignVault) {
		t.Fatalf("Open on another vault's file beside the first's log = %v, want ErrForeignVault", err)
	}
}

// TestFileDamageRefused: a vault file cut short or with a damaged page
// header is refused with a DamageError, never a panic; a damaged meta page
// that held the newest transaction is caught by the log's base epoch.
func TestFileDamageRefused(t *testing.T) {
	build := func(t *testing.T) (string, []vault.Record) {
		path := filepath.Join(t.TempDir(), "tok.db")
		keys := newKeys(t)
		s := mustOpen(t, path, Options{})
		var recs []vault.Record
		for range 300 {
			r := storetest.NewRecord(keys, false)
			recs = append(recs, r)
		}
		if _, err := s.Insert(t.Context(), recs); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return path, recs
	}
	t.Run("HalfTruncated", func(t *testing.T) {
		path, _ := build(t)
		fc, err := checkFile(path)
		if err != nil {
			t.Fatal(err)
		}
		os.Truncate(path, int64(fc.Pages)*fc.PageSize/2)
		if _, err := Open(path, Options{}); !errors.Is(err, ErrVaultDamaged) || !strings.Contains(err.Error(), "cut short") {
			t.Fatalf("Open = %v, want ErrVaultDamaged: cut short", err)
		}
	})
	t.Run("PageHeader", func(t *testing.T) {
		path, _ := build(t)
		fc, err := checkFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Every page past the metas and below the high-water mark: the
		// reachable ones must each be caught.
		caught := 0
		for id := uint64(2); id < fc.Pages; id++ {
			off := int64(id) * fc.PageSize
			flip(t, path, off+8) // flags and count
			if _, err := checkFile(path); err != nil {
				caught++
				if !errors.Is(err, ErrVaultDamaged) {
					t.Errorf("page %d: checkFile = %v, want ErrVaultDamaged", id, err)
				}
			}
			flip(t, path, off+8) // undo
		}
		if uint64(caught) != fc.Reached {
			t.Errorf("page header damage caught on %d pages, want the %d reachable", caught, fc.Reached)
		}
	})
	t.Run("NewestMeta", func(t *testing.T) {
		path, recs := build(t)
		fc, err := checkFile(path)
		if err != nil {
			t.Fatal(err)
		}
		flip(t, path, int64(fc.TxID%2)*fc.PageSize+pageHeaderSize+20) // the newest meta's root
		_, err = Open(path, Options{})
		if !errors.Is(err, ErrWALDamaged) || !strings.Contains(err.Error(), "older than its log") {
			t.Fatalf("Open after the newest meta page was damaged = %v, want the base epoch refusal", err)
		}
		_ = recs
	})
}

// TestKeyDamageNoPanic damages the first key of every leaf page with two
// or more keys so that it sorts after the next: bbolt's freelist rebuild
// at open would panic on it in a goroutine of its own; Open must refuse
// instead, on every page the tree reaches.
func TestKeyDamageNoPanic(t *testing.T) {
	dir := t.TempDir()
	pristine := filepath.Join(dir, "pristine.db")
	keys := newKeys(t)
	s := mustOpen(t, pristine, Options{})
	var recs []vault.Record
	for range 400 {
		recs = append(recs, storetest.NewRecord(keys, false))
	}
	if _, err := s.Insert(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fc, err := checkFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for id := uint64(2); id < fc.Pages; id++ {
		p := b[int64(id)*fc.PageSize:]
		if p[8] != flagLeaf || p[10] < 2 { // flags, count (little-endian low bytes)
			continue
		}
		pos := int(uint32(p[16+4]) | uint32(p[16+5])<<8)
		damaged := append([]byte(nil), b...)
		damaged[int64(id)*fc.PageSize+16+int64(pos)] = 0xff
		path := filepath.Join(t.TempDir(), "tok.db")
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{}) // a panic here fails the test binary
		if err != nil {
			if !errors.Is(err, ErrVaultDamaged) {
				t.Errorf("page %d: Open = %v, want ErrVaultDamaged", id, err)
			}
			refused++
			continue
		}
		s.Close()
	}
	if refused == 0 {
		t.Error("no damaged key was refused")
	}
}

// TestDiagnoseInUse: recover on a vault tok has open says so instead of
// calling the file unusable.
func TestDiagnoseInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	s := mustOpen(t, path, Options{})
	defer s.Close()
	if _, err := Diagnose(path, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("Diagnose on an open vault = %v, want ErrLocked", err)
	}
}

// TestSalvageRelinks: a record whose fingerprint entry was lost gets it
// back from Salvage, so its card keeps its token.
func TestSalvageRelinks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	keys := newKeys(t)
	s := mustOpen(t, path, Options{})
	r := storetest.NewRecord(keys, false)
	insertOne(t, s, r)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketFingerprints).Delete(r.Fingerprint) })
	db.Close()
	d, err := Salvage(path, Options{})
	if err != nil || d.Relinked != 1 {
		t.Fatalf("Salvage = %d relinked, %v; want 1", d.Relinked, err)
	}
	s = mustOpen(t, path, Options{})
	defer s.Close()
	if got, err := s.Find(t.Context(), r.Fingerprint); err != nil || got.Token != r.Token {
		t.Errorf("Find after Salvage = %q, %v; want %q", got.Token, err, r.Token)
	}
}
