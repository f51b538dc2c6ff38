package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// bulkOpts checkpoints every 64 entries, so that a bulk load of a few
// hundred records crosses many checkpoints and the hard cap.
var bulkOpts = Options{checkpointEntries: 64, checkpointChunk: 2, segmentSize: 1 << 20}

// TestConformanceBulk runs the suite against a bulk-loading store with
// small checkpoints: skipping the Find, the vault relies on Insert alone to
// converge.
func TestConformanceBulk(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store {
		s := openTemp(t, Options{checkpointEntries: 2, checkpointChunk: 1, segmentSize: 1 << 20})
		s.BulkLoad()
		return s
	})
}

// bulkPANs returns n distinct card numbers.
func bulkPANs(n int) []string {
	pans := make([]string, n)
	for i := range pans {
		pans[i] = fmt.Sprintf("4%015d", 7919*i+1)
	}
	return pans
}

// tokenizeAll tokenizes pans through v in batches of 50, as tok import
// does, and returns the tokens and how many were new.
func tokenizeAll(t *testing.T, v *vault.Vault, pans []string) ([]string, int) {
	t.Helper()
	var tokens []string
	created := 0
	for i := 0; i < len(pans); i += 50 {
		var reqs []vault.Request
		for _, p := range pans[i:min(i+50, len(pans))] {
			reqs = append(reqs, vault.Request{Value: p, Spec: vault.Spec{Format: vault.FormatPAN}})
		}
		toks, n, err := v.TokenizeCount(context.Background(), reqs)
		if err != nil {
			t.Fatalf("TokenizeCount(batch at %d) = %v, want nil", i, err)
		}
		tokens, created = append(tokens, toks...), created+n
	}
	return tokens, created
}

// TestBulkLoadCrash loads cards in bulk mode, crashes, and checks that the
// reopened store (bulk or not) holds every acknowledged token: the same
// cards get the same tokens and nothing is created twice.
func TestBulkLoadCrash(t *testing.T) {
	for _, bulkAgain := range []bool{false, true} {
		t.Run(fmt.Sprintf("bulk=%v", bulkAgain), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tok.db")
			keys := newKeys(t)
			s := mustOpen(t, path, bulkOpts)
			s.BulkLoad()
			if !s.ConvergesOnInsert() {
				t.Fatal("ConvergesOnInsert() = false after BulkLoad, want true")
			}
			v, err := vault.New(s, keys)
			if err != nil {
				t.Fatal(err)
			}
			pans := bulkPANs(600)
			first, created := tokenizeAll(t, v, pans)
			if created != len(pans) {
				t.Fatalf("first load created %d tokens, want %d", created, len(pans))
			}
			// Again in the same store: converges through Insert alone.
			again, created := tokenizeAll(t, v, pans[:100])
			if created != 0 || fmt.Sprint(again) != fmt.Sprint(first[:100]) {
				t.Fatalf("reloading 100 cards created %d tokens (want 0), same tokens %v", created, fmt.Sprint(again) == fmt.Sprint(first[:100]))
			}
			st := s.Stats()
			if st.CheckpointChunks == 0 || st.CheckpointEntries <= st.CheckpointChunks*uint64(bulkOpts.checkpointChunk) {
				t.Errorf("Stats = %d entries in %d checkpoint transactions, want more than %d a transaction (bulk chunks)",
					st.CheckpointEntries, st.CheckpointChunks, bulkOpts.checkpointChunk)
			}
			s.crash()

			s = mustOpen(t, path, bulkOpts)
			defer s.Close()
			if bulkAgain {
				s.BulkLoad()
			}
			if v, err = vault.New(s, keys); err != nil {
				t.Fatal(err)
			}
			got, created := tokenizeAll(t, v, pans)
			if created != 0 {
				t.Errorf("after the crash %d of %d cards got new tokens, want 0", created, len(pans))
			}
			for i := range got {
				if got[i] != first[i] {
					t.Fatalf("after the crash card %d has token %q, want %q", i, got[i], first[i])
				}
			}
		})
	}
}

// BenchmarkChunks sorts and cuts a memtable as large as a bulk load's
// checkpoints (96k records: a token and a fingerprint entry each).
func BenchmarkChunks(b *testing.B) {
	keys := newKeys(b)
	m := newMemtable()
	now := time.Now()
	for range 96 << 10 {
		r := prefillRecord(keys, now)
		m.set(bTokens, []byte(r.Token), vault.MarshalRecord(r))
		m.set(bFingerprints, r.Fingerprint, []byte(r.Token))
	}
	for b.Loop() {
		m.chunks(bulkChunkFactor * defaultCheckpointChunk)
	}
}
