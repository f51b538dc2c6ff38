package bolt

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// Memtable storage.
//
// A memtable holds up to a few hundred thousand entries for seconds, in a
// process whose whole footprint should stay within 64 MB, and the garbage
// collector marks it on every cycle. So it keeps no pointer per entry: each
// entry, key and value, is copied into an arena of byte blocks, and each
// bucket's index is an open-addressing hash table of uint64 slots (a 32-bit
// hash and a 32-bit reference into the arena), which the collector does not
// scan. Measured with BenchmarkMemtableBytes (records as /handle writes
// them): 94 bytes of heap per entry, against 184 with a map[string][]byte
// per bucket and a key and a value allocated per entry. On sustained
// /handle (300k requests), the collector's marking fell from about 5% of
// the CPU to about 1% (the smaller checkpoint transactions helping too).
//
// Entries are never modified or freed: an overwrite appends a new entry
// and repoints the slot (the memtables that see overwrites, the committer's
// op and batch ones, are reset often; a store's active memtable rarely
// sees one), and a value handed out stays valid, and unchanged, as long as
// the memtable is not reset.

const (
	arenaBlock     = 64 << 10 // bytes per arena block; a larger entry gets a block of its own
	arenaFirst     = 1 << 10  // size of the first block: op and batch memtables are small
	maxArenaBlocks = 1<<16 - 1
)

// hashSeed keys the memtables' hash: lookups of attacker-chosen keys
// (tokens, session keys) must not be steerable into long probe runs.
var hashSeed = maphash.MakeSeed()

func hashKey(key []byte) uint32 {
	h := maphash.Bytes(hashSeed, key)
	return uint32(h) ^ uint32(h>>32)
}

// ref locates an entry in an arena: block index << 16 | offset in block.
// Every entry starts below offset 1<<16: blocks are at most arenaBlock
// long, but for one holding a single larger entry at offset 0.
type ref uint32

// arena is an append-only store of entries, each encoded as uvarint key
// length, key, uvarint value tag (0: tombstone, else value length + 1),
// value.
type arena struct {
	// blocks[i] has the block's capacity and, as length, the bytes used;
	// entries go in the last one.
	blocks [][]byte
}

// add copies an entry into the arena; v nil makes it a tombstone.
func (a *arena) add(key, v []byte) ref {
	var tag uint64
	if v != nil {
		tag = uint64(len(v)) + 1
	}
	size := uvarintLen(uint64(len(key))) + len(key) + uvarintLen(tag) + len(v)
	i := len(a.blocks) - 1
	if i < 0 || cap(a.blocks[i])-len(a.blocks[i]) < size {
		a.grow(size)
		i = len(a.blocks) - 1
	}
	blk := a.blocks[i]
	off := len(blk)
	blk = binary.AppendUvarint(blk, uint64(len(key)))
	blk = append(blk, key...)
	blk = binary.AppendUvarint(blk, tag)
	a.blocks[i] = append(blk, v...) // within capacity: never moves
	return ref(i<<16 | off)
}

// grow starts a block with room for size bytes: twice the last one, up to
// arenaBlock, or exactly size if more.
func (a *arena) grow(size int) {
	if len(a.blocks) >= maxArenaBlocks {
		// Not reachable: a memtable holds at most what two WAL segments
		// do (64 MiB by default), and 65535 blocks hold 4 GiB.
		panic("bolt: memtable arena over 65535 blocks")
	}
	n := arenaFirst
	if k := len(a.blocks); k > 0 {
		n = min(arenaBlock, max(n, 2*cap(a.blocks[k-1])))
	}
	a.blocks = append(a.blocks, make([]byte, 0, max(n, size)))
}

// entry decodes the entry at r; v is nil for a tombstone. Both alias the
// arena and have no spare capacity, so appending to them copies.
func (a *arena) entry(r ref) (key, v []byte) {
	blk := a.blocks[r>>16][r&0xffff:]
	kl, n := binary.Uvarint(blk)
	blk = blk[n:]
	key, blk = blk[:kl:kl], blk[kl:]
	tag, n := binary.Uvarint(blk)
	if tag == 0 {
		return key, nil
	}
	blk = blk[n:]
	return key, blk[: tag-1 : tag-1]
}

func (a *arena) key(r ref) []byte {
	k, _ := a.entry(r)
	return k
}

// reset empties the arena, keeping its last block for reuse unless that
// was one entry's own.
func (a *arena) reset() {
	var last []byte
	if k := len(a.blocks); k > 0 && cap(a.blocks[k-1]) <= arenaBlock {
		last = a.blocks[k-1][:0]
	}
	clear(a.blocks)
	a.blocks = a.blocks[:0]
	if last != nil {
		a.blocks = append(a.blocks, last)
	}
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// table is one bucket's index: open addressing with linear probing, at
// most 3/4 full. A slot is 0 if empty, else hash<<32 | (ref+1).
type table struct {
	slots []uint64
	n     int // slots used
}

// find returns the slot of key (hash h) and whether it is there; if it is
// not, the slot is the empty one where it would go.
func (t *table) find(a *arena, h uint32, key []byte) (int, bool) {
	mask := len(t.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, false
		}
		if uint32(s>>32) == h && bytes.Equal(a.key(ref(uint32(s)-1)), key) {
			return i, true
		}
	}
}

// reserve makes room for one more slot used.
func (t *table) reserve() {
	if 4*(t.n+1) <= 3*len(t.slots) {
		return
	}
	old := t.slots
	t.slots = make([]uint64, max(8, 2*len(old)))
	mask := len(t.slots) - 1
	for _, s := range old {
		if s == 0 {
			continue
		}
		i := int(s>>32) & mask
		for t.slots[i] != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

func (t *table) reset() {
	clear(t.slots)
	t.n = 0
}
