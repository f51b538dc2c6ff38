package memory

import "runtime"

// Reclaiming expired records walks chunks. A walk never spans more than one
// chunk under one hold of the lock, so the longest any insert or read waits
// for the janitor is one chunk's walk (chunkSize bytes, some hundreds of
// records), however many records the store holds.

// Purge reclaims every expired record (zeroing it) and compacts chunks that
// are mostly dead, holding the lock for one chunk at a time, and returns
// how many records it reclaimed. Records that expire while it runs may be
// left for the next Purge. The janitor calls it periodically.
func (s *Store) Purge() int {
	n := 0
	for id := 0; ; id++ {
		k, more := s.reclaimStep(id)
		if !more {
			return n
		}
		n += k
		s.compactStep(id)
	}
}

// reclaimStep reclaims the expired records of chunk id and returns how many.
// It reports false once id is past the last chunk (and then brings
// s.nextExp up to date) or the store is closed.
func (s *Store) reclaimStep(id int) (n int, more bool) {
	// Deferred first, so run after Unlock: let writers that queued during
	// the step take the lock before the next step does (sync.Mutex lets
	// the goroutine that just unlocked win again, for up to a millisecond).
	defer runtime.Gosched()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, false
	}
	if id >= len(s.chunks) {
		s.nextExp = s.minExpiry()
		return 0, false
	}
	return s.reclaimIfDue(id, s.now().UnixMilli()), true
}

// reclaimIfDue reclaims the expired records of chunk id if it may hold any,
// and returns how many. s.mu must be held.
func (s *Store) reclaimIfDue(id int, now int64) int {
	if c := s.chunks[id]; c != nil && c.minExp <= now {
		return s.reclaim(id, now)
	}
	return 0
}

// compactStep compacts chunk id if it is sparse.
func (s *Store) compactStep(id int) {
	defer runtime.Gosched() // as in reclaimStep
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && id < len(s.chunks) {
		s.compactIfSparse(id)
	}
}

// compactIfSparse compacts chunk id if less than half of it is live:
// records that never expire, or expire later than their neighbours, would
// else pin whole chunks. The tail is left alone; it is still filling. s.mu
// must be held.
func (s *Store) compactIfSparse(id int) {
	if c := s.chunks[id]; c != nil && id != s.tail && c.liveSize*2 < len(c.buf) {
		s.compact(id)
	}
}

// reclaim removes the records of chunk id that are expired at now, makes
// the chunk's minExp exact, and frees the chunk if nothing in it is left
// live. It returns how many records it removed. s.mu must be held.
func (s *Store) reclaim(id int, now int64) int {
	c := s.chunks[id]
	n := 0
	minExp := int64(noExpiry)
	for off := 0; off < len(c.buf); {
		r := slot(c.buf[off:])
		size := r.size()
		if r.live() {
			switch exp := r.expires(); {
			case exp == 0:
			case now >= exp:
				s.remove(string(r.token()), makeRef(id, off))
				n++
			default:
				minExp = min(minExp, exp)
			}
		}
		off += size
	}
	c.minExp = minExp
	s.freeIfEmpty(id)
	return n
}

// compact moves the live records of chunk id to the tail and frees it. If
// the slabs run out of chunk ids on the way, the records not yet moved stay
// where they are. s.mu must be held, and id must not be the tail.
func (s *Store) compact(id int) {
	c := s.chunks[id]
	for off := 0; off < len(c.buf); {
		r := slot(c.buf[off:])
		size := r.size()
		if r.live() {
			tok := string(r.token())
			at, err := s.appendRecord(tok, r.value(), r.expires(), r.flags())
			if err != nil {
				return
			}
			s.relink(tok, at)
			s.kill(makeRef(id, off))
		}
		off += size
	}
	s.freeIfEmpty(id)
}

// reclaimFor reclaims expired records until need more records fit under
// the cap, or until none is left. It walks only chunks that hold an expired
// record, so every walk frees at least one. s.mu must be held.
func (s *Store) reclaimFor(need int, now int64) {
	if now < s.nextExp {
		return
	}
	for id, c := range s.chunks {
		if c == nil || c.minExp > now {
			continue
		}
		s.reclaim(id, now)
		if s.count+need <= s.max {
			return
		}
	}
	s.nextExp = s.minExpiry()
}

// minExpiry returns the least minExp of all chunks. s.mu must be held.
func (s *Store) minExpiry() int64 {
	m := int64(noExpiry)
	for _, c := range s.chunks {
		if c != nil {
			m = min(m, c.minExp)
		}
	}
	return m
}
