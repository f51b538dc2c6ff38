package bolt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// model is what a memtable should hold: per bucket, key → value, with
// nil for a tombstone.
type model [numBuckets]map[string][]byte

func newModel() *model {
	m := &model{}
	for i := range m {
		m[i] = map[string][]byte{}
	}
	return m
}

// checkMemtable compares every key of want, and some it lacks, with t.
func checkMemtable(t *testing.T, what string, got *memtable, want *model) {
	t.Helper()
	n := 0
	for b := range bucket(numBuckets) {
		n += len(want[b])
		for k, wv := range want[b] {
			v, ok := got.get(b, []byte(k))
			if !ok || (v == nil) != (wv == nil) || !bytes.Equal(v, wv) {
				t.Fatalf("%s: get(%d, %q) = %q, %v; want %q, true", what, b, k, v, ok, wv)
			}
		}
		if v, ok := got.get(b, []byte("absent")); ok {
			t.Fatalf("%s: get(%d, absent) = %q, true; want not found", what, b, v)
		}
		seen := 0
		got.each(b, func(_ ref, k, v []byte) {
			seen++
			if wv, ok := want[b][string(k)]; !ok || !bytes.Equal(v, wv) || (v == nil) != (wv == nil) {
				t.Fatalf("%s: each(%d) gave %q = %q, want %q (known: %v)", what, b, k, v, wv, ok)
			}
		})
		if seen != len(want[b]) {
			t.Fatalf("%s: each(%d) gave %d entries, want %d", what, b, seen, len(want[b]))
		}
	}
	if got.n != n {
		t.Fatalf("%s: n = %d, want %d", what, got.n, n)
	}
}

// TestMemtableModel runs random puts (empty values, large values and
// overwrites included), deletes, merges and resets against a map.
func TestMemtableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	value := func() []byte {
		switch rng.IntN(200) {
		case 0, 1, 2, 3, 4, 5, 6, 7, 8, 9:
			return []byte{} // a put of nothing, not a tombstone
		case 10:
			return bytes.Repeat([]byte{byte(rng.IntN(256))}, arenaBlock+rng.IntN(3*arenaBlock)) // a block of its own
		default:
			return fmt.Appendf(nil, "value-%d-%s", rng.Int(), bytes.Repeat([]byte("x"), rng.IntN(200)))
		}
	}
	key := func() []byte { return fmt.Appendf(nil, "k%d", rng.IntN(3000)) }
	for round := range 3 {
		m, want := newMemtable(), newModel()
		for i := range 20000 {
			b := bucket(rng.IntN(int(numBuckets)))
			k := key()
			if rng.IntN(5) == 0 {
				m.set(b, k, nil)
				want[b][string(k)] = nil
			} else {
				v := value()
				m.set(b, k, v)
				want[b][string(k)] = bytes.Clone(v)
				for j := range v {
					v[j] = 'x' // the memtable kept a copy
				}
			}
			if i%5000 == 4999 {
				checkMemtable(t, fmt.Sprintf("round %d after %d writes", round, i+1), m, want)
			}
		}
		// A frame payload decodes to the same entries.
		p := m.appendPayload(nil)
		back := newMemtable()
		if err := decodePayload(p, func(b bucket, key, v []byte) error { back.set(b, key, v); return nil }); err != nil {
			t.Fatal(err)
		}
		checkMemtable(t, "decoded payload", back, want)
		// merge copies over.
		dst, dwant := newMemtable(), newModel()
		for b := range bucket(numBuckets) {
			for i := range 50 {
				k, v := fmt.Appendf(nil, "k%d", i*97), []byte("old")
				dst.set(b, k, v)
				dwant[b][string(k)] = v
			}
			for k, v := range want[b] {
				dwant[b][k] = v
			}
		}
		dst.merge(m)
		checkMemtable(t, "merged", dst, dwant)
		// Chunks cover every entry once, in key order within a bucket.
		total := 0
		var last []byte
		lastB := bucket(0)
		for _, c := range m.chunks(1000) {
			if c.entries() > 1000 {
				t.Fatalf("chunk of %d entries, want at most 1000", c.entries())
			}
			for _, sp := range c {
				for _, r := range sp.refs {
					k := m.arena.key(r)
					if sp.b == lastB && last != nil && bytes.Compare(last, k) >= 0 {
						t.Fatalf("chunk keys out of order: %q then %q", last, k)
					}
					last, lastB = k, sp.b
					total++
				}
			}
		}
		if total != m.n {
			t.Fatalf("chunks hold %d entries, want %d", total, m.n)
		}
		m.reset()
		checkMemtable(t, "reset", m, newModel())
	}
}

// TestMemtableReuse: after reset, a memtable reused for new entries (as
// the committer reuses its op and batch memtables) holds only those.
func TestMemtableReuse(t *testing.T) {
	m := newMemtable()
	for round := range 5 {
		want := newModel()
		for i := range 300 * (round + 1) {
			k, v := fmt.Appendf(nil, "r%d-%d", round, i), fmt.Appendf(nil, "v%d", i)
			m.set(bSessions, k, v)
			want[bSessions][string(k)] = v
		}
		checkMemtable(t, fmt.Sprintf("round %d", round), m, want)
		m.reset()
	}
	if len(m.arena.blocks) != 1 {
		t.Errorf("reset kept %d arena blocks, want 1", len(m.arena.blocks))
	}
}
