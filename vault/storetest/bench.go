package storetest

import (
	"context"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// NewRecord returns a realistic record for a random 16-digit card number,
// sealed under keys: a pan-shaped token, a ciphertext of the real size and a
// keyed fingerprint (nil if unique). Benchmarks elsewhere use it to feed
// stores.
func NewRecord(keys *vault.Keyring, unique bool) vault.Record {
	return newRecord(keys, newPAN(), unique)
}

// Bench runs the store-neutral benchmarks against the store open returns
// (fresh and empty, cleaned up by open): one-record inserts from one
// goroutine and from many, and Get of existing tokens. Stores with their own
// performance story (bolt's group commit) add their own benchmarks.
func Bench(b *testing.B, open func(b *testing.B) vault.Store) {
	b.Run("Insert", func(b *testing.B) {
		s, keys := open(b), keyring(b)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Insert(ctx, []vault.Record{NewRecord(keys, false)}); err != nil {
				b.Fatalf("Insert = %v", err)
			}
		}
	})
	b.Run("InsertParallel", func(b *testing.B) {
		s, keys := open(b), keyring(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Insert(ctx, []vault.Record{NewRecord(keys, false)}); err != nil {
					b.Errorf("Insert = %v", err)
					return
				}
			}
		})
	})
	b.Run("Get", func(b *testing.B) {
		s, keys := open(b), keyring(b)
		ctx := context.Background()
		recs := make([]vault.Record, 1000)
		for i := range recs {
			recs[i] = NewRecord(keys, false)
		}
		if _, err := s.Insert(ctx, recs); err != nil {
			b.Fatalf("Insert = %v", err)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.Get(ctx, recs[i%len(recs)].Token); err != nil {
				b.Fatalf("Get = %v", err)
			}
			i++
		}
	})
}
