package bolt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// TestBackupDuringInserts backs the vault up while inserts continue and
// restores it by opening the stream as a new vault file: every record,
// session and lockout acknowledged before Backup was called is there
// (including those still only in the WAL), and the rest of the file is
// whole records only.
func TestBackupDuringInserts(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"wal only", walOnly}, // Backup must force the checkpoint itself
		{"checkpointing", Options{checkpointEntries: 64, segmentSize: 1 << 20}},
		{"small chunks", Options{checkpointEntries: 64, checkpointChunk: 4, segmentSize: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			keys := newKeys(t)
			s := openTemp(t, tc.opts)
			if err := Prefill(s, 500, keys); err != nil {
				t.Fatal(err)
			}
			sess := vault.Session{Key: []byte("session-key"), ID: "s1", Client: "shop", Created: time.Now().UTC().Truncate(time.Second)}
			if err := s.PutSession(ctx, sess); err != nil {
				t.Fatal(err)
			}
			lock, err := s.UpdateLockout(ctx, "shop", func(l vault.Lockout) vault.Lockout { l.Failures = 3; return l })
			if err != nil {
				t.Fatal(err)
			}

			var mu sync.Mutex
			var acked []vault.Record
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						rec := storetest.NewRecord(keys, false)
						if _, err := s.Insert(ctx, []vault.Record{rec}); err != nil {
							t.Errorf("Insert during backup = %v", err)
							return
						}
						mu.Lock()
						acked = append(acked, rec)
						mu.Unlock()
					}
				}()
			}
			waitFor(t, "inserts", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 200 })

			mu.Lock()
			before := len(acked) // acknowledged before Backup is called
			mu.Unlock()
			path := filepath.Join(t.TempDir(), "restored.db")
			out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			n, err := s.Backup(ctx, out)
			if err != nil {
				t.Fatalf("Backup = %v, want nil", err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			during := len(acked)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond) // inserts keep running after the snapshot
			close(stop)
			wg.Wait()
			if fi, err := os.Stat(path); err != nil || fi.Size() != n {
				t.Fatalf("backup file: %v, %d bytes; Backup reported %d", err, fi.Size(), n)
			}

			restored := filepath.Join(t.TempDir(), "tok.db")
			if _, err := Restore(path, restored, false); err != nil {
				t.Fatalf("Restore = %v", err)
			}
			r := mustOpen(t, restored, Options{}) // a fresh WAL next to it
			defer r.Close()
			for _, rec := range acked[:before] {
				wantRecord(t, r, rec)
			}
			got, err := r.GetSession(ctx, sess.Key)
			if err != nil || got.ID != sess.ID || !got.Created.Equal(sess.Created) {
				t.Errorf("GetSession from the backup = %+v, %v; want %+v", got, err, sess)
			}
			l, err := r.UpdateLockout(ctx, "shop", func(l vault.Lockout) vault.Lockout { return l })
			if err != nil || l.Failures != lock.Failures {
				t.Errorf("lockout in the backup = %+v, %v; want %+v", l, err, lock)
			}
			// Later records: whole (token and fingerprint) or absent.
			found := 0
			for _, rec := range acked[before:] {
				_, gerr := r.Get(ctx, rec.Token)
				_, ferr := r.Find(ctx, rec.Fingerprint)
				if (gerr == nil) != (ferr == nil) {
					t.Errorf("record %q half in the backup: Get %v, Find %v", rec.Token, gerr, ferr)
				}
				if gerr == nil {
					found++
				}
			}
			t.Logf("backup: %d bytes; %d records acknowledged before it, %d more during it, %d after; %d of those later ones included",
				n, before, during-before, len(acked)-during, found)
		})
	}
}

// TestBackupErrors: a closed store and a cancelled context.
func TestBackupErrors(t *testing.T) {
	s := openTemp(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var w nopWriter
	if _, err := s.Backup(ctx, &w); !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled context = %v, want %v", err, context.Canceled)
	}
	s.Close()
	if _, err := s.Backup(context.Background(), &w); !errors.Is(err, vault.ErrClosed) {
		t.Errorf("Backup after Close = %v, want %v", err, vault.ErrClosed)
	}
}
