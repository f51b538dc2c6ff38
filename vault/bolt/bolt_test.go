package bolt

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// openTemp opens a store on a fresh file in t's temporary directory.
func openTemp(tb testing.TB, opts Options) *Store {
	tb.Helper()
	s, err := Open(filepath.Join(tb.TempDir(), "vault", "tok.db"), opts)
	if err != nil {
		tb.Fatalf("Open = %v, want nil", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func newKeys(tb testing.TB) *vault.Keyring {
	tb.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store { return openTemp(t, Options{}) })
}

func TestSessionsConformance(t *testing.T) {
	storetest.RunSessions(t, func(t *testing.T) storetest.SessionStore { return openTemp(t, Options{}) })
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "tok.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(%q) = %v, want nil", path, err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("mode of %q = %v, want %v", p, fi.Mode(), want)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tok.db")
	keys := newKeys(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open = %v, want nil", err)
	}
	if err := Prefill(s, 1000, keys); err != nil {
		t.Fatalf("Prefill = %v, want nil", err)
	}
	var recs []vault.Record
	for range 100 {
		recs = append(recs, storetest.NewRecord(keys, false))
	}
	if _, err := s.Insert(ctx, recs); err != nil {
		t.Fatalf("Insert = %v, want nil", err)
	}
	sess := vault.Session{Key: []byte("k"), ID: "s", Client: "shop", Created: time.Now()}
	if err := s.PutSession(ctx, sess); err != nil {
		t.Fatalf("PutSession = %v, want nil", err)
	}
	inc := func(l vault.Lockout) vault.Lockout { l.Failures++; return l }
	if _, err := s.UpdateLockout(ctx, "shop", inc); err != nil {
		t.Fatalf("UpdateLockout = %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen = %v, want nil", err)
	}
	defer s.Close()
	for _, r := range recs {
		got, err := s.Get(ctx, r.Token)
		if err != nil || string(got.Ciphertext) != string(r.Ciphertext) {
			t.Fatalf("Get(%q) after reopen = %v, want the record", r.Token, err)
		}
		if got, err := s.Find(ctx, r.Fingerprint); err != nil || got.Token != r.Token {
			t.Fatalf("Find(%x) after reopen = %q, %v; want %q", r.Fingerprint, got.Token, err, r.Token)
		}
	}
	n := 0
	s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Bucket(bucketTokens).Stats().KeyN
		return nil
	})
	if n != 1100 {
		t.Errorf("tokens after reopen = %d, want 1100", n)
	}
	if _, err := s.GetSession(ctx, sess.Key); err != nil {
		t.Errorf("GetSession after reopen = %v, want nil", err)
	}
	if l, err := s.UpdateLockout(ctx, "shop", inc); err != nil || l.Failures != 2 {
		t.Errorf("UpdateLockout after reopen = %+v, %v; want 2 failures", l, err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open = %v, want nil", err)
	}
	defer s.Close()
	const timeout = 100 * time.Millisecond
	start := time.Now()
	s2, err := Open(path, Options{Timeout: timeout})
	if err == nil {
		s2.Close()
		t.Fatalf("second Open(%q) = nil, want %v", path, ErrLocked)
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open(%q) = %v, want %v", path, err, ErrLocked)
	}
	t.Logf("second Open = %v", err)
	if !strings.Contains(err.Error(), path) {
		t.Errorf("second Open error %q does not name the file", err)
	}
	// Generous bound: the point is "fails", not "hangs".
	if d := time.Since(start); d > 10*timeout {
		t.Errorf("second Open took %v, want about %v", d, timeout)
	}
}

func TestOpenForeignFile(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.db")
	db, err := bbolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err })
	db.Close()

	for _, path := range []string{junk, short, other} {
		s, err := Open(path, Options{})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) = nil, want %v", path, ErrNotVault)
			continue
		}
		if !errors.Is(err, ErrNotVault) {
			t.Errorf("Open(%q) = %v, want %v", path, err, ErrNotVault)
		}
		t.Logf("Open(%q) = %v", filepath.Base(path), err)
	}
}

// block makes the committer wait inside a transaction until the returned
// release is called, so tests can line up a known batch behind it.
func block(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, proceed := make(chan struct{}), make(chan struct{})
	go s.write(context.Background(), func(*txn) error {
		close(entered)
		<-proceed
		return nil
	})
	<-entered
	var once sync.Once
	release = func() { once.Do(func() { close(proceed) }) }
	t.Cleanup(release) // runs before openTemp's Close, even if the test fails
	return release
}

// waitQueued waits until n requests are queued behind a blocked committer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", len(s.queue), n)
		}
		time.Sleep(time.Millisecond) // polling for a state, not timing a result
	}
}

func TestGroupCommit(t *testing.T) {
	const n = 64
	var mu sync.Mutex
	var hooked []int
	s := openTemp(t, Options{OnCommit: func(d time.Duration, ops int) {
		mu.Lock()
		hooked = append(hooked, ops)
		mu.Unlock()
	}})
	keys := newKeys(t)
	release := block(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		rec := storetest.NewRecord(keys, false)
		wg.Go(func() {
			_, err := s.Insert(context.Background(), []vault.Record{rec})
			errs <- err
		})
	}
	waitQueued(t, s, n)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Insert = %v, want nil", err)
		}
	}
	got := s.Stats()
	got.Checkpoints, got.CheckpointEntries, got.CheckpointTime = 0, 0, 0
	want := Stats{Commits: 2, Ops: n + 1, Records: n}
	if got != want {
		t.Errorf("Stats() = %+v, want %+v (the blocker, then one commit for all %d)", got, want, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != 2 || hooked[1] != n {
		t.Errorf("OnCommit ops = %v, want [1 %d]", hooked, n)
	}
}

func TestBatchCaps(t *testing.T) {
	s := openTemp(t, Options{MaxBatchOps: 4, MaxBatchRecords: 10})
	keys := newKeys(t)
	release := block(t, s)
	var wg sync.WaitGroup
	sizes := []int{3, 3, 3, 3, 1, 12, 1} // batches: [3 3 3] [3 1] [12] [1]
	for i, n := range sizes {
		recs := make([]vault.Record, n)
		for j := range recs {
			recs[j] = storetest.NewRecord(keys, false)
		}
		waitQueued(t, s, i) // keep the queue order
		wg.Go(func() {
			if _, err := s.Insert(context.Background(), recs); err != nil {
				t.Errorf("Insert = %v, want nil", err)
			}
		})
	}
	waitQueued(t, s, len(sizes))
	release()
	wg.Wait()
	if got := s.Stats(); got.Commits != 5 || got.Records != 26 {
		t.Errorf("Stats() = %+v, want 5 commits (blocker + 4 batches) and 26 records", got)
	}
}

// TestFailingOpIsIsolated runs a batch in which one caller's op fails: only
// that caller sees the error, the others commit, in one commit.
func TestFailingOpIsIsolated(t *testing.T) {
	s := openTemp(t, Options{})
	keys := newKeys(t)
	release := block(t, s)
	a, b := storetest.NewRecord(keys, false), storetest.NewRecord(keys, false)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	var errA, errBad, errB error
	wg.Go(func() { _, errA = s.Insert(context.Background(), []vault.Record{a}) })
	waitQueued(t, s, 1)
	wg.Go(func() {
		errBad = s.write(context.Background(), func(t *txn) error {
			// Writes, then fails: the write must not survive.
			if err := t.put(bSessions, []byte("bad"), []byte{1}); err != nil {
				return err
			}
			return boom
		})
	})
	waitQueued(t, s, 2)
	wg.Go(func() { _, errB = s.Insert(context.Background(), []vault.Record{b}) })
	waitQueued(t, s, 3)
	release()
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("Insert errors = %v, %v; want nil, nil", errA, errB)
	}
	if !errors.Is(errBad, boom) {
		t.Errorf("failing op = %v, want %v", errBad, boom)
	}
	for _, r := range []vault.Record{a, b} {
		if _, err := s.Get(context.Background(), r.Token); err != nil {
			t.Errorf("Get(%q) = %v, want nil", r.Token, err)
		}
	}
	if _, err := s.GetSession(context.Background(), []byte("bad")); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("GetSession(%q) = %v, want %v (the failed op's write rolled back)", "bad", err, vault.ErrNotFound)
	}
	if got := s.Stats(); got.Commits != 2 || got.Records != 2 {
		t.Errorf("Stats() = %+v, want 2 commits (blocker + batch) and 2 records", got)
	}
}

// TestCancelWhileQueued checks that a caller whose context ends while its
// request waits in the queue gets ctx.Err() and nothing is written.
func TestCancelWhileQueued(t *testing.T) {
	s := openTemp(t, Options{})
	keys := newKeys(t)
	release := block(t, s)
	rec := storetest.NewRecord(keys, false)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Insert(ctx, []vault.Record{rec})
		errc <- err
	}()
	waitQueued(t, s, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Insert canceled while queued = %v, want %v", err, context.Canceled)
	}
	release()
	// A later write commits after the withdrawn one was skipped.
	if err := s.PutSession(context.Background(), vault.Session{Key: []byte("k")}); err != nil {
		t.Fatalf("PutSession = %v, want nil", err)
	}
	if _, err := s.Get(context.Background(), rec.Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(%q) = %v, want %v", rec.Token, err, vault.ErrNotFound)
	}
}

// TestCloseCommitsQueued checks that writes accepted before Close commit.
func TestCloseCommitsQueued(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := newKeys(t)
	release := block(t, s)
	rec := storetest.NewRecord(keys, false)
	errc := make(chan error, 1)
	go func() { _, err := s.Insert(context.Background(), []vault.Record{rec}); errc <- err }()
	waitQueued(t, s, 1)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	if err := <-errc; err != nil {
		t.Fatalf("Insert queued before Close = %v, want nil", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v, want nil", err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(context.Background(), rec.Token); err != nil {
		t.Errorf("Get(%q) after reopen = %v, want nil", rec.Token, err)
	}
}

// TestSize: the vault's size on disk is its file and its two write-ahead
// log segments (limits.vault_bytes).
func TestSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tok.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var want int64
	for _, p := range []string{path, path + ".wal.0", path + ".wal.1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		want += st.Size()
	}
	if got, err := s.Size(context.Background()); err != nil || got != want || got == 0 {
		t.Errorf("Size = %d, %v; want %d (file and log)", got, err, want)
	}
}
