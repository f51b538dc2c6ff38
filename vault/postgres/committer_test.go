package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// stall makes the committers of s (opened with MaxBatches 1) busy until the
// returned release is called: another connection inserts a fingerprint in
// a transaction it keeps open, and an Insert of that fingerprint through s
// waits on it. Inserts made meanwhile queue up. release ends the
// transaction and waits for the stalled Insert, which ends Existing.
func stall(t *testing.T, s *Store, url, schema string) (release func()) {
	t.Helper()
	ctx := context.Background()
	keys := keyring(t)
	theirs := storetest.NewRecord(keys, false)
	ours := theirs
	ours.Token = storetest.NewRecord(keys, false).Token
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	_, err = tx.Exec(ctx, qualify(schema, `INSERT INTO {schema}.tokens (`+recordColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`), theirs.Token, int64(theirs.KeyID), theirs.Ciphertext,
		theirs.Fingerprint, ms(theirs.Created), nil, int16(theirs.Format), int16(vault.RecordV1))
	if err != nil {
		t.Fatalf("insert in the stalling transaction: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Insert(ctx, []vault.Record{ours})
		done <- err
	}()
	// The polls run on a connection of their own: within the stalling
	// transaction, PostgreSQL would answer every poll from the snapshot of
	// pg_stat_activity taken at the first one, before the committer
	// blocked, and the wait would never end.
	watch, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer watch.Close(ctx)
	waitFor(t, "the committer to wait on the stalling transaction", func() bool {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0`, schema).Scan(&n)
		return err == nil && n > 0
	})
	return func() {
		t.Helper()
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("commit the stalling transaction: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("stalled Insert = %v, want nil", err)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// insertAll queues one Insert per element of calls, in order, behind a
// stalled committer, then lets them commit, and returns their results.
func insertAll(t *testing.T, s *Store, url, schema string, calls [][]vault.Record) ([][]vault.Outcome, []error) {
	t.Helper()
	release := stall(t, s, url, schema)
	outs := make([][]vault.Outcome, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, recs := range calls {
		wg.Go(func() { outs[i], errs[i] = s.Insert(context.Background(), recs) })
		waitFor(t, "the Insert to queue", func() bool { return s.queued() == i+1 })
	}
	release()
	wg.Wait()
	return outs, errs
}

// TestGroupCommitGroups: concurrent Inserts share one commit. With the
// committer held busy, 64 single-record Inserts queue, then commit as one
// batch: two commits in all (the stalled one and theirs), not 65.
func TestGroupCommitGroups(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	var observed []int
	var mu sync.Mutex
	s := openStore(t, url, Options{Schema: schema, MaxBatches: 1, OnCommit: func(_ time.Duration, ops int) {
		mu.Lock()
		observed = append(observed, ops)
		mu.Unlock()
	}})
	keys := keyring(t)
	const n = 64
	calls := make([][]vault.Record, n)
	for i := range calls {
		calls[i] = []vault.Record{storetest.NewRecord(keys, i%2 == 0)}
	}
	outs, errs := insertAll(t, s, url, schema, calls)
	for i, err := range errs {
		if err != nil || outs[i][0].Status != vault.Stored {
			t.Fatalf("Insert %d = %+v, %v; want Stored", i, outs[i], err)
		}
		if got, err := s.Get(context.Background(), calls[i][0].Token); err != nil || got.Token != calls[i][0].Token {
			t.Errorf("Get(token of Insert %d) = %q, %v", i, got.Token, err)
		}
	}
	st := s.Stats()
	if st.Commits != 2 || st.Ops != n+1 || st.Records != n {
		t.Errorf("Stats = %+v, want 2 commits, %d ops, %d records", st, n+1, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 2 || observed[1] != n {
		t.Errorf("OnCommit saw batches of %v ops, want [1 %d]", observed, n)
	}
}

// TestGroupCommitIsolation: a record the server refuses (a token with a
// NUL byte, which no text column holds) fails its own Insert only; the
// Inserts batched with it are stored.
func TestGroupCommitIsolation(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	s := openStore(t, url, Options{Schema: schema, MaxBatches: 1})
	keys := keyring(t)
	bad := storetest.NewRecord(keys, false)
	bad.Token = "bad\x00token"
	calls := [][]vault.Record{
		{storetest.NewRecord(keys, false)},
		{storetest.NewRecord(keys, false), bad},
		{storetest.NewRecord(keys, true), storetest.NewRecord(keys, false)},
	}
	outs, errs := insertAll(t, s, url, schema, calls)
	if errs[1] == nil || errors.Is(errs[1], vault.ErrUnavailable) {
		t.Errorf("Insert with a bad record = %v, want the server's refusal (not unavailable)", errs[1])
	}
	ctx := context.Background()
	if _, err := s.Get(ctx, calls[1][0].Token); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get(good record of the failed Insert) = %v, want ErrNotFound (an Insert is atomic)", err)
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil {
			t.Errorf("Insert %d batched with a bad record = %v, want nil", i, errs[i])
			continue
		}
		for j, r := range calls[i] {
			if outs[i][j].Status != vault.Stored {
				t.Errorf("Insert %d record %d: status %d, want Stored", i, j, outs[i][j].Status)
			}
			if _, err := s.Get(ctx, r.Token); err != nil {
				t.Errorf("Get(Insert %d record %d) = %v, want it stored", i, j, err)
			}
		}
	}
}

// TestGroupCommitConverges: callers batched together with the same card
// (fingerprint) all get the first one's record; a token clash within the
// batch is a Collision for the later record only.
func TestGroupCommitConverges(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	s := openStore(t, url, Options{Schema: schema, MaxBatches: 1})
	keys := keyring(t)
	first := storetest.NewRecord(keys, false)
	same := storetest.NewRecord(keys, false)
	same.Fingerprint, same.Ciphertext = first.Fingerprint, first.Ciphertext
	clash := storetest.NewRecord(keys, false)
	clash.Token = first.Token
	calls := [][]vault.Record{{first}, {same}, {clash}}
	outs, errs := insertAll(t, s, url, schema, calls)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Insert %d = %v", i, err)
		}
	}
	if a := outs[0][0]; a.Status != vault.Stored || a.Record.Token != first.Token {
		t.Errorf("first of a card in a batch = status %d token %q, want Stored %q", a.Status, a.Record.Token, first.Token)
	}
	if b := outs[1][0]; b.Status != vault.Existing || b.Record.Token != first.Token {
		t.Errorf("same card again in the batch = status %d token %q, want Existing %q", b.Status, b.Record.Token, first.Token)
	}
	if c := outs[2][0]; c.Status != vault.Collision {
		t.Errorf("token clash in a batch = status %d, want Collision", c.Status)
	}
}

// TestCloseDrains: Inserts queued when Close is called still commit, and
// Close returns once they have; Inserts after it get ErrClosed.
func TestCloseDrains(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	s, err := Open(context.Background(), url, Options{Schema: schema, MaxBatches: 1})
	if err != nil {
		t.Fatal(err)
	}
	keys := keyring(t)
	release := stall(t, s, url, schema)
	const n = 16
	recs := make([]vault.Record, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range recs {
		recs[i] = storetest.NewRecord(keys, false)
		wg.Go(func() { _, errs[i] = s.Insert(context.Background(), []vault.Record{recs[i]}) })
	}
	waitFor(t, "every Insert to queue", func() bool { return s.queued() == n })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	waitFor(t, "Close to start", func() bool { return s.closed.Load() })
	select {
	case err := <-closed:
		t.Fatalf("Close = %v before the queued Inserts committed", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	wg.Wait()
	if err := <-closed; err != nil {
		t.Errorf("Close = %v, want nil", err)
	}
	if _, err := s.Insert(context.Background(), []vault.Record{storetest.NewRecord(keys, false)}); !errors.Is(err, vault.ErrClosed) {
		t.Errorf("Insert after Close = %v, want ErrClosed", err)
	}
	other := openStore(t, url, Options{Schema: schema})
	for i, err := range errs {
		if err != nil {
			t.Errorf("Insert %d queued before Close = %v, want nil", i, err)
		}
		if _, err := other.Get(context.Background(), recs[i].Token); err != nil {
			t.Errorf("Get(record %d queued before Close) = %v, want it committed", i, err)
		}
	}
}

// TestGroupCommitOverlapsOnlyForABacklog: while a transaction is in
// flight, the Inserts arriving wait to form the next batch rather than
// each starting a transaction of its own on an idle committer; a second
// transaction starts alongside once overlapRecords records are waiting.
func TestGroupCommitOverlapsOnlyForABacklog(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	var mu sync.Mutex
	var observed []int
	s := openStore(t, url, Options{Schema: schema, MaxBatches: 4, OnCommit: func(_ time.Duration, ops int) {
		mu.Lock()
		observed = append(observed, ops)
		mu.Unlock()
	}})
	keys := keyring(t)
	release := stall(t, s, url, schema)
	var wg sync.WaitGroup
	insert := func() {
		wg.Go(func() {
			if _, err := s.Insert(context.Background(), []vault.Record{storetest.NewRecord(keys, true)}); err != nil {
				t.Errorf("Insert = %v", err)
			}
		})
	}
	for range overlapRecords - 1 {
		insert()
	}
	waitFor(t, "the Inserts to queue", func() bool { return s.queued() == overlapRecords-1 })
	// Three committers are idle: none may take the short backlog.
	time.Sleep(200 * time.Millisecond)
	if st := s.Stats(); st.Commits != 0 || s.queued() != overlapRecords-1 {
		t.Fatalf("with %d Inserts waiting behind a transaction in flight: %d commits, %d still queued; want 0 and all of them",
			overlapRecords-1, st.Commits, s.queued())
	}
	insert()
	waitFor(t, "the backlog's own transaction to commit", func() bool { return s.Stats().Commits == 1 })
	release()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(observed) != 2 || observed[0] != overlapRecords || observed[1] != 1 {
		t.Errorf("OnCommit saw batches of %v ops, want [%d 1] (the backlog alongside the stalled one, then it)", observed, overlapRecords)
	}
}
