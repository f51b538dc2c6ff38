package bolt

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Memtables.
//
// Writes acknowledged by the WAL but not yet checkpointed live in memory:
// the active memtable takes each group commit's effects after its frame is
// durable; at a checkpoint it becomes the frozen memtable, which the
// checkpointer writes to bbolt while a new active one fills. A lookup reads
// active, then frozen, then bbolt, and the first layer that knows the key
// wins; a tombstone (a deleted key) in a memtable hides older values below.

// bucket identifies one of the data buckets in memtables and WAL frames.
type bucket uint8

// Data buckets, in the order of bucketNames.
const (
	bTokens bucket = iota
	bFingerprints
	bSessions
	bLockouts
	bReveals
	numBuckets
)

// bucketNames maps a bucket to its bbolt name.
var bucketNames = [numBuckets][]byte{bucketTokens, bucketFingerprints, bucketSessions, bucketLockouts, bucketReveals}

// memtable is a set of puts and deletes per bucket. A nil value is a
// tombstone. It copies what it is given into its own arena (see arena.go),
// and the values it hands out stay valid, and must not be modified, until
// it is reset. It has no lock of its own: see Store.memMu.
type memtable struct {
	tabs  [numBuckets]table
	arena arena
	n     int // entries, tombstones included
}

func newMemtable() *memtable { return &memtable{} }

// get returns the value of key and whether t knows the key at all; a known
// key with a nil value was deleted.
func (t *memtable) get(b bucket, key []byte) ([]byte, bool) {
	tab := &t.tabs[b]
	if tab.n == 0 {
		return nil, false
	}
	i, ok := tab.find(&t.arena, hashKey(key), key)
	if !ok {
		return nil, false
	}
	_, v := t.arena.entry(ref(uint32(tab.slots[i]) - 1))
	return v, true
}

// set puts a copy of key and v (nil: a tombstone) into bucket b.
func (t *memtable) set(b bucket, key, v []byte) {
	tab := &t.tabs[b]
	tab.reserve()
	h := hashKey(key)
	i, ok := tab.find(&t.arena, h, key)
	r := t.arena.add(key, v)
	tab.slots[i] = uint64(h)<<32 | uint64(r+1)
	if !ok {
		tab.n++
		t.n++
	}
}

// each calls fn for every entry of bucket b, in no particular order; key
// and v alias t.
func (t *memtable) each(b bucket, fn func(r ref, key, v []byte)) {
	for _, sl := range t.tabs[b].slots {
		if sl != 0 {
			r := ref(uint32(sl) - 1)
			key, v := t.arena.entry(r)
			fn(r, key, v)
		}
	}
}

// merge copies src's entries over t's.
func (t *memtable) merge(src *memtable) {
	for b := range bucket(numBuckets) {
		src.each(b, func(_ ref, key, v []byte) { t.set(b, key, v) })
	}
}

// reset empties t for reuse, keeping some of its memory; values it handed
// out become invalid.
func (t *memtable) reset() {
	for i := range t.tabs {
		t.tabs[i].reset()
	}
	t.arena.reset()
	t.n = 0
}

// appendPayload encodes t as a WAL frame payload: per entry, one byte
// (bucket<<1 | 1 if put), uvarint key length, key, and for a put uvarint
// value length and value. Only final values are encoded: a frame is applied
// whole or not at all, so the order of writes inside it does not matter.
func (t *memtable) appendPayload(p []byte) []byte {
	for b := range bucket(numBuckets) {
		t.each(b, func(_ ref, k, v []byte) {
			tag := byte(b) << 1
			if v != nil {
				tag |= 1
			}
			p = append(p, tag)
			p = binary.AppendUvarint(p, uint64(len(k)))
			p = append(p, k...)
			if v != nil {
				p = binary.AppendUvarint(p, uint64(len(v)))
				p = append(p, v...)
			}
		})
	}
	return p
}

// decodePayload calls fn for each entry of a frame payload; v is nil for a
// delete. key and v alias p.
func decodePayload(p []byte, fn func(b bucket, key, v []byte) error) error {
	for len(p) > 0 {
		tag := p[0]
		b, put := bucket(tag>>1), tag&1 == 1
		if b >= numBuckets {
			return fmt.Errorf("wal entry for bucket %d: %w", b, errCorrupt)
		}
		key, rest, ok := uvarintBytes(p[1:])
		if !ok || len(key) == 0 {
			return fmt.Errorf("wal entry key: %w", errCorrupt)
		}
		var v []byte
		if put {
			if v, rest, ok = uvarintBytes(rest); !ok {
				return fmt.Errorf("wal entry value: %w", errCorrupt)
			}
			if v == nil {
				v = []byte{}
			}
		}
		if err := fn(b, key, v); err != nil {
			return err
		}
		p = rest
	}
	return nil
}

// uvarintBytes splits a uvarint-length-prefixed byte string off p.
func uvarintBytes(p []byte) (s, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	return p[k : k+int(n) : k+int(n)], p[k+int(n):], true
}

// span is a run of a memtable's entries in one bucket, in key order.
type span struct {
	t    *memtable
	b    bucket
	refs []ref
}

// chunk is what one checkpoint transaction writes: consecutive keys in
// bbolt's order (a chunk may end one bucket and begin the next).
type chunk []span

// chunks sorts t's keys and cuts them into chunks of at most size entries
// (one empty chunk if t is empty, so that a checkpoint always has a
// transaction to record its epoch in). Sorted, a chunk's keys fall in one
// key range of each tree, so its transaction dirties only the leaves of
// that range. t must not change while the chunks are in use.
func (t *memtable) chunks(size int) []chunk {
	var out []chunk
	var cur chunk
	room := size
	var keyed []keyedRef // reused across buckets
	for b := range bucket(numBuckets) {
		keyed = t.sorted(b, keyed[:0])
		refs := make([]ref, len(keyed))
		for i, k := range keyed {
			refs[i] = k.r
		}
		for len(refs) > 0 {
			n := min(room, len(refs))
			cur = append(cur, span{t, b, refs[:n:n]})
			refs, room = refs[n:], room-n
			if room == 0 {
				out, cur, room = append(out, cur), nil, size
			}
		}
	}
	if len(cur) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	return out
}

// keyedRef is an entry's ref with the first 8 bytes of its key, big-endian
// and zero-padded, so that sorting compares integers and decodes the keys
// from the arena only where the prefixes tie.
type keyedRef struct {
	prefix uint64
	r      ref
}

// sorted appends bucket b's entries to out in key order. Tokens and
// fingerprints are random, so their first 8 bytes nearly always differ:
// ordering by prefix first sorted 192k entries 2 to 3 times faster than
// comparing keys decoded from the arena at every step (BenchmarkChunks:
// 50-78 ms against 137-155).
func (t *memtable) sorted(b bucket, out []keyedRef) []keyedRef {
	t.each(b, func(r ref, key, _ []byte) {
		var p [8]byte
		copy(p[:], key)
		out = append(out, keyedRef{binary.BigEndian.Uint64(p[:]), r})
	})
	slices.SortFunc(out, func(x, y keyedRef) int {
		if x.prefix != y.prefix {
			return cmp.Compare(x.prefix, y.prefix)
		}
		return bytes.Compare(t.arena.key(x.r), t.arena.key(y.r))
	})
	return out
}

// entries returns how many puts and deletes c holds.
func (c chunk) entries() int {
	n := 0
	for _, sp := range c {
		n += len(sp.refs)
	}
	return n
}

// applyTo writes c's entries into tx's buckets. bbolt keeps the keys and
// values it is given until the transaction ends: they alias the memtable,
// which does not change meanwhile.
func (c chunk) applyTo(tx *bbolt.Tx) error {
	for _, sp := range c {
		bk := tx.Bucket(bucketNames[sp.b])
		for _, r := range sp.refs {
			key, v := sp.t.arena.entry(r)
			if err := applyEntry(bk, key, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func applyEntry(bk *bbolt.Bucket, key, v []byte) error {
	if v == nil {
		return bk.Delete(key)
	}
	return bk.Put(key, v)
}

// txn is the committer's view of the vault while it runs one batch: the
// current op's own writes, then the writes of the batch's earlier ops, then
// the active memtable, the frozen one and a bbolt read transaction. Ops
// read and write through it; nothing reaches the memtables until the
// batch's frame is durable.
type txn struct {
	tx *bbolt.Tx
	// cursors holds a cursor per bucket of tx, made on first use: bbolt's
	// Bucket.Get makes a new one, and its stack, for every lookup, and an
	// insert looks up two keys.
	cursors [numBuckets]*bbolt.Cursor
	active  *memtable // read without memMu: only the committer writes it
	frozen  *memtable // nil if none; immutable once frozen
	batch   *memtable // effects of the batch's ops that succeeded
	op      *memtable // effects of the op running now
}

// get returns the current value of key in bucket b, or nil. The value is
// valid until the batch ends and must not be modified.
func (t *txn) get(b bucket, key []byte) []byte {
	for _, m := range []*memtable{t.op, t.batch, t.active, t.frozen} {
		if m == nil {
			continue
		}
		if v, ok := m.get(b, key); ok {
			return v
		}
	}
	c := t.cursors[b]
	if c == nil {
		c = t.tx.Bucket(bucketNames[b]).Cursor()
		t.cursors[b] = c
	}
	if k, v := c.Seek(key); bytes.Equal(k, key) {
		return v // nil only if key named a nested bucket, and data buckets have none
	}
	return nil
}

// put sets key to v in bucket b. It refuses what bbolt would refuse at the
// checkpoint, so a durable frame always applies.
func (t *txn) put(b bucket, key, v []byte) error {
	switch {
	case len(key) == 0:
		return berrors.ErrKeyRequired
	case len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("key of %d bytes: %w", len(key), berrors.ErrKeyTooLarge)
	case int64(len(v)) > bbolt.MaxValueSize:
		return fmt.Errorf("value of %d bytes: %w", len(v), berrors.ErrValueTooLarge)
	case v == nil:
		v = []byte{}
	}
	t.op.set(b, key, v)
	return nil
}

// del deletes key from bucket b (a tombstone until the checkpoint).
func (t *txn) del(b bucket, key []byte) {
	if len(key) > 0 {
		t.op.set(b, key, nil)
	}
}

// keep adds the current op's effects to the batch; drop discards them
// (the op failed, and its caller alone sees the error).
func (t *txn) keep() { t.batch.merge(t.op); t.op.reset() }
func (t *txn) drop() { t.op.reset() }
