package memory

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// withHash replaces the index's hash of tokens, so that tests can make
// every token collide.
func withHash(h func(string) uint32) Option { return func(s *Store) { s.hash = h } }

// collide hashes every token alike: all but one token of a store go to the
// overflow map.
func collide(string) uint32 { return 7 }

// check fails t unless s is consistent: every live record indexed at its
// place and counted, every dead one zeroed, chunk accounting exact, expiry
// bounds below the real expiries and fingerprints pointing at live records.
func check(t testing.TB, s *Store) {
	t.Helper()
	if err := invariants(s); err != nil {
		t.Fatal(err)
	}
}

func invariants(s *Store) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	free := map[int]bool{}
	for _, id := range s.free {
		free[int(id)] = true
		if s.chunks[id] != nil {
			fail("chunk %d is in use and free", id)
		}
	}
	live, slab, least := 0, 0, int64(noExpiry)
	for id, c := range s.chunks {
		if c == nil {
			if !free[id] {
				fail("chunk %d is neither in use nor free", id)
			}
			continue
		}
		slab += cap(c.buf)
		n, size, cmin := 0, 0, int64(noExpiry)
		for off := 0; off < len(c.buf); {
			r := slot(c.buf[off:])
			sz := r.size()
			if !r.live() {
				if r[0] != 0 || strings.Trim(string(r[7:sz]), "\x00") != "" {
					fail("dead record at %d:%d not zeroed", id, off)
				}
				off += sz
				continue
			}
			n, size = n+1, size+sz
			tok := string(r.token())
			if at, ok := s.lookup(tok); !ok || at != makeRef(id, off) {
				fail("record %q at %d:%d: lookup = %d:%d, %v", tok, id, off, at.chunk(), at.offset(), ok)
			}
			if e := r.expires(); e != 0 {
				cmin = min(cmin, e)
			}
			rec, err := vault.UnmarshalRecord(tok, r.value())
			if err != nil {
				fail("record %q: %v", tok, err)
			}
			if (len(rec.Fingerprint) > 0) != r.hasFingerprint() {
				fail("record %q: fingerprint flag is %v", tok, r.hasFingerprint())
			}
			off += sz
		}
		if n == 0 && id != s.tail {
			fail("chunk %d holds nothing live and is not the tail, yet is not free", id)
		}
		if id == s.tail && cap(c.buf) != chunkSize {
			fail("the tail, chunk %d, has room for %d bytes, want chunkSize", id, cap(c.buf))
		}
		if n != c.live || size != c.liveSize {
			fail("chunk %d: %d live records of %d bytes, accounted %d of %d", id, n, size, c.live, c.liveSize)
		}
		if c.minExp > cmin {
			fail("chunk %d: minExp %d above a live expiry %d", id, c.minExp, cmin)
		}
		live += n
		least = min(least, cmin)
	}
	if live != s.count {
		fail("%d live records, count %d", live, s.count)
	}
	if n := len(s.index) + len(s.overflow); n != s.count {
		fail("%d index entries, count %d", n, s.count)
	}
	if s.nextExp > least {
		fail("nextExp %d above a live expiry %d", s.nextExp, least)
	}
	if slab != s.slabBytes {
		fail("chunks hold %d bytes, slabBytes %d", slab, s.slabBytes)
	}
	for fp, tok := range s.fps {
		at, ok := s.lookup(tok)
		if !ok {
			fail("fingerprint maps to %q, which is not stored", tok)
			continue
		}
		rec, err := vault.UnmarshalRecord(tok, s.slot(at).value())
		if err != nil || string(rec.Fingerprint) != fp {
			fail("fingerprint maps to %q, whose record has another", tok)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("store inconsistent:\n%s", strings.Join(errs, "\n"))
	}
	return nil
}
