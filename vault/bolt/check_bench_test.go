package bolt

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

var (
	openPrefill = flag.Int("open-prefill", 1_000_000, "records BenchmarkOpenCheck prefills")
	openFile    = flag.String("open-file", "", "BenchmarkOpenCheck: a prefilled vault to reuse (made there if missing); the keyring is not kept, so the decrypting case is skipped on reuse")
)

// BenchmarkOpenCheck measures, on a vault prefilled with -open-prefill
// records (1M by default), what start-up and `tok vault check` cost:
// the integrity check Open runs before bbolt reads the file
// (checkFile), a whole Open and Close (that check, bbolt's freelist
// rebuild, the WAL scan), bbolt's own tx.Check, and the full check that
// also decrypts every record. The file is in the page cache after the
// first op, as it is on a restart that follows a stop.
//
//	go test -run '^$' -bench OpenCheck -benchtime 3x ./vault/bolt
func BenchmarkOpenCheck(b *testing.B) {
	keys := newKeys(b)
	path := filepath.Join(b.TempDir(), "tok.db")
	reused := false
	if *openFile != "" {
		path = *openFile
		_, err := os.Stat(path)
		reused = err == nil
	}
	if !reused {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := Prefill(s, *openPrefill, keys); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	fc, err := checkFile(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d records (unless reused), %d pages of %d bytes (%d MB), %d reached by the tree", *openPrefill, fc.Pages, fc.PageSize, int64(fc.Pages)*fc.PageSize>>20, fc.Reached)
	b.Run("checkFile", func(b *testing.B) {
		for b.Loop() {
			if _, err := checkFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Open", func(b *testing.B) {
		for b.Loop() {
			s, err := Open(path, Options{})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("txCheck", func(b *testing.B) {
		for b.Loop() {
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
			if err != nil {
				b.Fatal(err)
			}
			err = db.View(func(tx *bbolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			})
			db.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CheckRecords+decrypt", func(b *testing.B) {
		if reused {
			b.Skip("the prefill's keyring is gone")
		}
		for b.Loop() {
			bad := 0
			_, err := CheckRecords(path, func(rec vault.Record, err error) error {
				if err == nil {
					_, err = keys.OpenRecord(rec)
				}
				if err != nil {
					bad++
				}
				return nil
			})
			if err != nil || bad > 0 {
				b.Fatalf("CheckRecords = %v, %d unreadable", err, bad)
			}
		}
	})
}
