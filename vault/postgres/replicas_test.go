package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// schemaVersions returns the versions recorded in schema's migrations table.
func schemaVersions(t *testing.T, url, schema string) []int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT version FROM `+pgx.Identifier{schema, "tok_migrations"}.Sanitize()+` ORDER BY version`)
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("read migrations: %v", err)
	}
	return vs
}

// TestOpenConcurrent starts several replicas at once on a schema that does
// not exist yet: the advisory lock must let exactly one create it.
func TestOpenConcurrent(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	const replicas = 6
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { stores[i], errs[i] = Open(context.Background(), url, Options{Schema: schema}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: Open = %v, want nil", i, err)
			continue
		}
		stores[i].Close()
	}
	if got := schemaVersions(t, url, schema); len(got) != len(migrations) || got[len(got)-1] != len(migrations) {
		t.Errorf("migrations table = %v, want versions 1..%d once each", got, len(migrations))
	}
}

// TestOpenIdempotent reopens a migrated schema, and refuses one migrated by
// a newer tok.
func TestOpenIdempotent(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	s := openStore(t, url, Options{Schema: schema})
	rec := storetest.NewRecord(keyring(t), false)
	if _, err := s.Insert(context.Background(), []vault.Record{rec}); err != nil {
		t.Fatalf("Insert = %v", err)
	}
	s2 := openStore(t, url, Options{Schema: schema})
	if _, err := s2.Get(context.Background(), rec.Token); err != nil {
		t.Errorf("Get after reopening = %v, want nil (data kept)", err)
	}
	if got := schemaVersions(t, url, schema); len(got) != len(migrations) {
		t.Errorf("migrations table after reopening = %v, want versions 1..%d once each", got, len(migrations))
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "tok_migrations"}.Sanitize()+` (version) VALUES (999)`); err != nil {
		t.Fatalf("insert version: %v", err)
	}
	_, err = Open(ctx, url, Options{Schema: schema})
	if !errors.Is(err, errSchemaNewer) || errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Open(schema at version 999) = %v, want %v and not %v", err, errSchemaNewer, vault.ErrUnavailable)
	}
}

func keyring(tb testing.TB) *vault.Keyring {
	tb.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// testPAN returns the i-th card number of a run (16 digits; the vault does
// not require Luhn).
func testPAN(run, i int) string { return fmt.Sprintf("4%06d%09d", run, i) }

// TestReplicasConverge runs two stores with pools of their own on one
// schema, as two tok processes would, and has many goroutines on each
// tokenize the same card numbers through vault.Vault at once: every number
// must end with exactly one token, which reveals that number on either side.
func TestReplicasConverge(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	keys := keyring(t)
	var vaults [2]*vault.Vault
	for i := range vaults {
		v, err := vault.New(openStore(t, url, Options{Schema: schema, MaxConns: 8}), keys)
		if err != nil {
			t.Fatalf("vault.New: %v", err)
		}
		vaults[i] = v
	}
	const goroutines, pans, perCall = 16, 60, 4
	run := int(time.Now().UnixNano() % 1e6)
	results := make([][]string, goroutines) // results[g][p] = token of PAN p seen by goroutine g
	errs := make([]error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			v := vaults[g%2]
			results[g] = make([]string, pans)
			// Each goroutine walks the PANs from its own starting point, a
			// few per call, so calls overlap in every order.
			for k := 0; k < pans; k += perCall {
				var idx []int
				var reqs []vault.Request
				for j := k; j < k+perCall && j < pans; j++ {
					p := (j + g*7) % pans
					idx = append(idx, p)
					reqs = append(reqs, vault.Request{Value: testPAN(run, p)})
				}
				toks, err := v.Tokenize(context.Background(), reqs)
				if err != nil {
					errs[g] = err
					return
				}
				for n, p := range idx {
					results[g][p] = toks[n]
				}
			}
		})
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Fatalf("goroutine %d: Tokenize = %v, want nil", g, err)
		}
	}
	ctx := context.Background()
	for p := range pans {
		want := results[0][p]
		for g := range goroutines {
			if results[g][p] != want {
				t.Fatalf("PAN %d: goroutine %d got token %q, goroutine 0 got %q; want one token", p, g, results[g][p], want)
			}
		}
		for i, v := range vaults {
			r, err := v.Reveal(ctx, want)
			if err != nil || r.Value != testPAN(run, p) {
				t.Errorf("replica %d: Reveal(%q) = %s, %v; want PAN %d", i, want, vault.Mask(r.Value), err, p)
			}
		}
	}
	var rows int
	s := openStore(t, url, Options{Schema: schema})
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{schema, "tokens"}.Sanitize()).Scan(&rows); err != nil {
		t.Fatalf("count tokens: %v", err)
	}
	if rows != pans {
		t.Errorf("tokens table has %d rows, want %d (one per PAN)", rows, pans)
	}
}

// TestReplicasCollision checks that a token taken through one replica is a
// Collision through the other, and that nothing is written for it.
func TestReplicasCollision(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	a, b := openStore(t, url, Options{Schema: schema}), openStore(t, url, Options{Schema: schema})
	keys := keyring(t)
	ctx := context.Background()
	taken := storetest.NewRecord(keys, false)
	if outs, err := a.Insert(ctx, []vault.Record{taken}); err != nil || outs[0].Status != vault.Stored {
		t.Fatalf("replica a: Insert = %+v, %v; want Stored", outs, err)
	}
	for _, unique := range []bool{false, true} {
		clash := storetest.NewRecord(keys, unique)
		clash.Token = taken.Token
		outs, err := b.Insert(ctx, []vault.Record{clash})
		if err != nil || outs[0].Status != vault.Collision || outs[0].Record.Token != "" {
			t.Errorf("replica b: Insert(taken token, unique %v) = %+v, %v; want Collision", unique, outs, err)
		}
		if !unique {
			if _, err := a.Find(ctx, clash.Fingerprint); !errors.Is(err, vault.ErrNotFound) {
				t.Errorf("replica a: Find(colliding fingerprint) = %v, want %v", err, vault.ErrNotFound)
			}
		}
	}
	got, err := b.Get(ctx, taken.Token)
	if err != nil || string(got.Ciphertext) != string(taken.Ciphertext) {
		t.Errorf("replica b: Get(%q) = %v; want the first record", taken.Token, err)
	}
}

// TestReplicasSessions checks that sessions and lockouts written through
// one replica are what the other reads.
func TestReplicasSessions(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	a, b := openStore(t, url, Options{Schema: schema}), openStore(t, url, Options{Schema: schema})
	ctx := context.Background()
	now := time.Now()
	sess := vault.Session{Key: []byte("sha256-of-cookie"), ID: "sess_1", Client: "shop", Created: now, LastSeen: now}
	if err := a.PutSession(ctx, sess); err != nil {
		t.Fatalf("replica a: PutSession = %v", err)
	}
	got, err := b.GetSession(ctx, sess.Key)
	if err != nil || got.ID != sess.ID || got.Client != sess.Client || !got.LastSeen.Equal(ms(now)) {
		t.Errorf("replica b: GetSession = %+v, %v; want %+v", got, err, sess)
	}
	if err := b.DeleteSession(ctx, sess.Key); err != nil {
		t.Fatalf("replica b: DeleteSession = %v", err)
	}
	if _, err := a.GetSession(ctx, sess.Key); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("replica a: GetSession after logout on b = %v, want %v", err, vault.ErrNotFound)
	}

	// Failed logins through both replicas count together.
	inc := func(l vault.Lockout) vault.Lockout { l.Failures++; return l }
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, err := []*Store{a, b}[i%2].UpdateLockout(ctx, "shop", inc); err != nil {
				t.Errorf("UpdateLockout = %v", err)
			}
		})
	}
	wg.Wait()
	l, err := a.UpdateLockout(ctx, "shop", func(l vault.Lockout) vault.Lockout { return l })
	if err != nil || l.Failures != 20 {
		t.Errorf("UpdateLockout after 20 failures on two replicas = %+v, %v; want 20 failures", l, err)
	}
}

// TestInsertWaitsForRacingTransaction pins down the race Insert is built
// for: another process has inserted the same fingerprint but not committed
// yet. Insert must wait, then report Existing with that process's record if
// it commits, or store its own record if it rolls back.
func TestInsertWaitsForRacingTransaction(t *testing.T) {
	url := testURL(t)
	schema := newSchema(t, url)
	s := openStore(t, url, Options{Schema: schema})
	keys := keyring(t)
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			ctx := context.Background()
			theirs := storetest.NewRecord(keys, false)
			ours := theirs
			ours.Token = storetest.NewRecord(keys, false).Token
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			_, err = tx.Exec(ctx, qualify(schema, `INSERT INTO {schema}.tokens (`+recordColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`), theirs.Token, int64(theirs.KeyID), theirs.Ciphertext,
				theirs.Fingerprint, ms(theirs.Created), nil, int16(theirs.Format), int16(vault.RecordV1))
			if err != nil {
				t.Fatalf("insert in racing transaction: %v", err)
			}
			type result struct {
				outs []vault.Outcome
				err  error
			}
			done := make(chan result, 1)
			go func() {
				outs, err := s.Insert(ctx, []vault.Record{ours})
				done <- result{outs, err}
			}()
			select {
			case r := <-done:
				t.Fatalf("Insert returned %+v, %v before the racing transaction ended; want it to wait", r.outs, r.err)
			case <-time.After(300 * time.Millisecond):
			}
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatalf("end racing transaction: %v", err)
			}
			r := <-done
			if r.err != nil {
				t.Fatalf("Insert = %v, want nil", r.err)
			}
			want, status := ours.Token, vault.Stored
			if commit {
				want, status = theirs.Token, vault.Existing
			}
			if r.outs[0].Status != status || r.outs[0].Record.Token != want {
				t.Errorf("Insert = status %d token %q, want status %d token %q", r.outs[0].Status, r.outs[0].Record.Token, status, want)
			}
			if got, err := s.Find(ctx, ours.Fingerprint); err != nil || got.Token != want {
				t.Errorf("Find = %q, %v; want %q", got.Token, err, want)
			}
		})
	}
}
