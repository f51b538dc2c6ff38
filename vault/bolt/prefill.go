package bolt

import (
	"crypto/rand"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
)

// prefillBatch is how many records Prefill writes per transaction: large
// enough that commits are few and most leaf pages take several records per
// rewrite. The price is file size: a transaction copies every page it
// dirties, and with 50k random keys that is most of the tree, so the file's
// high-water mark approaches twice the live data. BenchmarkBytesPerToken
// uses smaller transactions, closer to what serving traffic produces.
const prefillBatch = 50_000

// prefillDomain is the fingerprint domain of default pan tokens, so a vault
// opened on a prefilled store treats these records like its own.
const prefillDomain = "pan:6:4"

// Prefill adds n realistic records to s for benchmarks and load tests: a
// random 16-digit card number each, sealed under keys, with a pan token
// (first 6 and last 4 kept, Luhn-invalid) and a fingerprint, as the vault
// writes them. It bypasses the committer and the WAL and writes
// prefillBatch records per bbolt transaction (skipping any key the
// memtables hold, so a later checkpoint cannot contradict it), so a million records take seconds rather than a million
// commits. The card numbers are not kept anywhere.
func Prefill(s *Store, n int, keys *vault.Keyring) error {
	return prefill(s, n, keys, prefillBatch)
}

// prefill is Prefill with batch records per transaction.
func prefill(s *Store, n int, keys *vault.Keyring, batch int) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return vault.ErrClosed
	}
	now := time.Now()
	for n > 0 {
		recs := make([]vault.Record, min(n, batch))
		values := make([][]byte, len(recs))
		for i := range recs {
			recs[i] = prefillRecord(keys, now)
			values[i] = vault.MarshalRecord(recs[i])
		}
		stored := 0
		err := s.db.Update(func(tx *bbolt.Tx) error {
			toks, fps := buckets(tx)
			stored = 0
			for i, r := range recs {
				key := []byte(r.Token)
				if toks.Get(key) != nil || fps.Get(r.Fingerprint) != nil {
					continue // a rare collision: the next round makes up for it
				}
				if _, ok := s.memGet(bTokens, key); ok {
					continue // known to the WAL: leave it to the checkpoint
				}
				if _, ok := s.memGet(bFingerprints, r.Fingerprint); ok {
					continue
				}
				if err := toks.Put(key, values[i]); err != nil {
					return err
				}
				if err := fps.Put(r.Fingerprint, key); err != nil {
					return err
				}
				stored++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prefill vault: %w", err)
		}
		n -= stored
	}
	return nil
}

// prefillRecord returns a record for a fresh random card number.
func prefillRecord(keys *vault.Keyring, now time.Time) vault.Record {
	pan := "4" + digits(15)
	var tok string
	for {
		tok = pan[:6] + digits(6) + pan[12:]
		if tok != pan && !vault.Luhn(tok) {
			break
		}
	}
	kid, ct := keys.Seal(tok, pan)
	return vault.Record{
		Token:       tok,
		KeyID:       kid,
		Ciphertext:  ct,
		Fingerprint: keys.Fingerprint(prefillDomain, pan),
		Created:     now,
		Format:      vault.FormatPAN,
	}
}

// digits returns n uniformly random ASCII digits.
func digits(n int) string {
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			if b < 250 && len(out) < n { // 250 = 25×10: no digit favoured
				out = append(out, '0'+b%10)
			}
		}
	}
	return string(out)
}
