package memory

import (
	"encoding/binary"
	"errors"
	"math"
)

// Records live back to back in chunks: pointer-free []byte slabs that the
// garbage collector neither scans nor sees one object per record in. A
// record is found by its ref, the chunk's id and the record's offset in it.
//
// A record is laid out as
//
//	flags(1) len(token)(2) len(value)(4) expires(8) token value
//
// little-endian, expires in Unix milliseconds (0: never) and value in the
// encoding of [vault.MarshalRecord]. A dead record (deleted, expired and
// reclaimed, or moved) keeps its lengths so that a walk can step over it,
// and has everything else zeroed: the value is card data.
const (
	headerSize = 1 + 2 + 4 + 8

	flagLive        = 1 << 0
	flagFingerprint = 1 << 1 // the value holds a fingerprint that s.fps maps

	// chunkSize is the size of a chunk: a purge step walks at most one,
	// so it bounds how long a purge step holds the lock, and a ref's
	// offsetBits address all of it. A record larger than this gets a
	// chunk of its own, where its offset is 0.
	offsetBits = 14
	chunkSize  = 1 << offsetBits
	// maxChunks is how many chunk ids the rest of a ref holds: 4 GiB of
	// chunks, far above any sensible cap.
	maxChunks = 1 << (32 - offsetBits)

	maxTokenLen = math.MaxUint16 // bbolt's MaxKeySize is half that
	maxValueLen = 1 << 30        // the 32-bit length holds more; no ciphertext comes near

	// noExpiry is a chunk's minExp when no live record in it expires.
	noExpiry = math.MaxInt64
)

// errSlabFull is returned when every chunk id is taken.
var errSlabFull = errors.New("all chunk ids in use")

// ref locates a record: chunk id in the high bits, offset in the low
// offsetBits.
type ref uint32

func makeRef(id, off int) ref { return ref(id<<offsetBits | off) }
func (r ref) chunk() int      { return int(r >> offsetBits) }
func (r ref) offset() int     { return int(r & (chunkSize - 1)) }

// chunk is one slab of records.
type chunk struct {
	buf      []byte // records back to back; len(buf) is the bytes used
	live     int    // live records in buf
	liveSize int    // bytes of live records, headers included
	// minExp is a lower bound on the expiry of the live expiring records
	// in buf (noExpiry if none): exact after a walk, lowered by appends and
	// left alone by deletes.
	minExp int64
}

// slot is a view of one record at the start of a chunk's bytes.
type slot []byte

func (r slot) live() bool           { return r[0]&flagLive != 0 }
func (r slot) flags() byte          { return r[0] }
func (r slot) tokenLen() int        { return int(binary.LittleEndian.Uint16(r[1:])) }
func (r slot) valueLen() int        { return int(binary.LittleEndian.Uint32(r[3:])) }
func (r slot) expires() int64       { return int64(binary.LittleEndian.Uint64(r[7:])) }
func (r slot) size() int            { return headerSize + r.tokenLen() + r.valueLen() }
func (r slot) token() []byte        { return r[headerSize : headerSize+r.tokenLen()] }
func (r slot) value() []byte        { return r[headerSize+r.tokenLen() : r.size()] }
func (r slot) hasFingerprint() bool { return r[0]&flagFingerprint != 0 }

// expired reports whether the record has an expiry at or before now (Unix
// milliseconds). Expiries are whole milliseconds, so comparing them with now
// truncated to milliseconds matches [vault.Record.Expired].
func (r slot) expired(now int64) bool {
	exp := r.expires()
	return exp != 0 && now >= exp
}

// slot returns the record ref points at. s.mu must be held.
func (s *Store) slot(at ref) slot {
	return slot(s.chunks[at.chunk()].buf[at.offset():])
}

// appendRecord copies a record to the tail chunk, starting a new tail if it
// does not fit, or to a chunk of its own if it is larger than a chunk (that
// chunk never becomes the tail, so every tail has room for refs' offsets
// only). It returns where the record went; it neither indexes the record
// nor counts it. s.mu must be held.
func (s *Store) appendRecord(token string, value []byte, expires int64, flags byte) (ref, error) {
	size := headerSize + len(token) + len(value)
	id := s.tail
	switch {
	case size > chunkSize:
		var err error
		if id, err = s.newChunk(size); err != nil {
			return 0, err
		}
	case id < 0 || len(s.chunks[id].buf)+size > chunkSize:
		var err error
		if id, err = s.newChunk(chunkSize); err != nil {
			return 0, err
		}
		old := s.tail
		s.tail = id
		if old >= 0 {
			s.freeIfEmpty(old) // all its records went while it was the tail
		}
	}
	c := s.chunks[id]
	off := len(c.buf)
	var h [headerSize]byte
	h[0] = flags | flagLive
	binary.LittleEndian.PutUint16(h[1:], uint16(len(token)))
	binary.LittleEndian.PutUint32(h[3:], uint32(len(value)))
	binary.LittleEndian.PutUint64(h[7:], uint64(expires))
	c.buf = append(append(append(c.buf, h[:]...), token...), value...)
	c.live++
	c.liveSize += size
	if expires != 0 {
		c.minExp = min(c.minExp, expires)
		s.nextExp = min(s.nextExp, expires)
	}
	return makeRef(id, off), nil
}

// newChunk allocates a chunk of capacity size under a free id. s.mu must be
// held.
func (s *Store) newChunk(size int) (int, error) {
	c := &chunk{buf: make([]byte, 0, size), minExp: noExpiry}
	s.slabBytes += size
	if n := len(s.free); n > 0 {
		id := int(s.free[n-1])
		s.free = s.free[:n-1]
		s.chunks[id] = c
		return id, nil
	}
	if len(s.chunks) == maxChunks {
		s.slabBytes -= size
		return 0, errSlabFull
	}
	s.chunks = append(s.chunks, c)
	return len(s.chunks) - 1, nil
}

// kill zeroes the record at ref, all but its lengths, and takes it out of
// its chunk's accounting; the last record of a chunk gives its room back
// (so a refused insert leaves nothing behind). The caller has unindexed it
// and frees the chunk once nothing in it is live. s.mu must be held.
func (s *Store) kill(at ref) {
	c := s.chunks[at.chunk()]
	off := at.offset()
	r := slot(c.buf[off:])
	size := r.size()
	c.live--
	c.liveSize -= size
	if off+size == len(c.buf) {
		clear(r[:size])
		c.buf = c.buf[:off]
		return
	}
	r[0] = 0
	clear(r[7:size])
}

// freeIfEmpty frees chunk id if nothing in it is live, unless it is the
// tail: an empty tail is filled again, where freeing it would make every
// insert refused at the cap allocate a chunk. s.mu must be held.
func (s *Store) freeIfEmpty(id int) {
	if c := s.chunks[id]; c != nil && c.live == 0 && id != s.tail {
		s.freeChunk(id)
	}
}

// freeChunk zeroes a chunk that holds no live record and is not the tail,
// and gives its id back. s.mu must be held.
func (s *Store) freeChunk(id int) {
	c := s.chunks[id]
	clear(c.buf) // dead records are zeroed already; this is belt and braces
	s.slabBytes -= cap(c.buf)
	s.chunks[id] = nil
	s.free = append(s.free, uint32(id))
}

// The index maps a 32-bit hash of each token to its record's ref: eight
// bytes a slot, and nothing for the garbage collector to scan. Two tokens
// with one hash are told apart by comparing the token in the slab; the
// second one goes to s.overflow, keyed by the token itself. Every token is
// in exactly one of the two.

// lookup returns the ref of token's record, expired or not. s.mu must be
// held (read or write).
func (s *Store) lookup(token string) (ref, bool) {
	if at, ok := s.index[s.hash(token)]; ok && string(s.slot(at).token()) == token {
		return at, true
	}
	if len(s.overflow) == 0 {
		return 0, false
	}
	at, ok := s.overflow[token]
	return at, ok
}

// link indexes a token that is not indexed yet. s.mu must be held.
func (s *Store) link(token string, at ref) {
	h := s.hash(token)
	if _, taken := s.index[h]; taken {
		s.overflow[token] = at
		return
	}
	s.index[h] = at
}

// relink points an indexed token at its record's new place. s.mu must be
// held, and the record at the old place must still be intact.
func (s *Store) relink(token string, at ref) {
	h := s.hash(token)
	if old, ok := s.index[h]; ok && string(s.slot(old).token()) == token {
		s.index[h] = at
		return
	}
	s.overflow[token] = at
}

// unlink removes an indexed token. s.mu must be held, and its record must
// still be intact.
func (s *Store) unlink(token string) {
	h := s.hash(token)
	if old, ok := s.index[h]; ok && string(s.slot(old).token()) == token {
		delete(s.index, h)
		return
	}
	delete(s.overflow, token)
}
