package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// What the harness knows of tok's files, read independently of tok's code
// so that a bug there cannot hide itself: the WAL's frame layout (a 64-byte
// segment header, then frames of a 16-byte header — epoch, length, CRC —
// and a payload) and bbolt's pages.

const (
	segHeader   = 64
	frameHeader = 16
)

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

// frame is a frame in a WAL segment: its offset and total length.
type frame struct{ off, n int64 }

// walFrames returns the frames of a segment's current run, following the
// length fields from the first frame while the epoch stays the same, and
// their epoch.
func walFrames(path string) ([]frame, uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var out []frame
	var epoch uint64
	for off := int64(segHeader); off+frameHeader <= int64(len(b)); {
		e := binary.LittleEndian.Uint64(b[off:])
		n := int64(binary.LittleEndian.Uint32(b[off+8:]))
		if e == 0 || (epoch != 0 && e != epoch) || off+frameHeader+n > int64(len(b)) {
			break
		}
		epoch = e
		out = append(out, frame{off, frameHeader + n})
		off += frameHeader + n
	}
	return out, epoch, nil
}

// newestRun returns the WAL segment of the vault at db whose run has the
// newest epoch, and its frames.
func newestRun(db string) (string, []frame, error) {
	var best string
	var bestFrames []frame
	var bestEpoch uint64
	for _, p := range []string{db + ".wal.0", db + ".wal.1"} {
		fr, e, err := walFrames(p)
		if err != nil {
			return "", nil, err
		}
		if e > bestEpoch && len(fr) > 0 {
			best, bestFrames, bestEpoch = p, fr, e
		}
	}
	if best == "" {
		return "", nil, errors.New("no frames in the write-ahead log")
	}
	return best, bestFrames, nil
}

// flip inverts n bytes of path at off.
func flip(path string, off int64, n int) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	for i := range b {
		b[i] ^= 0xff
	}
	_, err = f.WriteAt(b, off)
	return err
}

// boltFile is what the harness reads of a bbolt file.
type boltFile struct {
	b        []byte
	pageSize int64
	newest   int    // the meta page (0 or 1) with the larger transaction id
	root     uint64 // the root bucket's page
	hwm      uint64 // pages in use
}

func readBolt(path string) (*boltFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 4096*2 {
		return nil, errors.New("too short for a bbolt file")
	}
	m0 := b[16:]
	ps := int64(binary.LittleEndian.Uint32(m0[8:]))
	m1 := b[ps+16:]
	f := &boltFile{b: b, pageSize: ps}
	m := m0
	if binary.LittleEndian.Uint64(m1[48:]) > binary.LittleEndian.Uint64(m0[48:]) {
		f.newest, m = 1, m1
	}
	f.root, f.hwm = binary.LittleEndian.Uint64(m[16:]), binary.LittleEndian.Uint64(m[40:])
	return f, nil
}

func (f *boltFile) page(id uint64) []byte { return f.b[int64(id)*f.pageSize:] }

// bucketRoot returns the root page of the top-level bucket name.
func (f *boltFile) bucketRoot(name string) (uint64, error) {
	return f.find(f.root, name)
}

// find looks name up in the tree at page id and returns the root page of
// the bucket stored under it.
func (f *boltFile) find(id uint64, name string) (uint64, error) {
	p := f.page(id)
	flags, count := binary.LittleEndian.Uint16(p[8:]), int(binary.LittleEndian.Uint16(p[10:]))
	for i := range count {
		e := p[16+i*16:]
		if flags == 0x01 { // branch: descend into every child (few pages)
			if r, err := f.find(binary.LittleEndian.Uint64(e[8:]), name); err == nil {
				return r, nil
			}
			continue
		}
		pos, ks, vs := binary.LittleEndian.Uint32(e[4:]), binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
		k := e[pos : pos+ks]
		if string(k) == name && vs >= 16 {
			return binary.LittleEndian.Uint64(e[pos+ks:]), nil
		}
	}
	return 0, fmt.Errorf("bucket %q not found under page %d", name, id)
}

// firstLeaf descends from page id along first children to a leaf.
func (f *boltFile) firstLeaf(id uint64) uint64 {
	for binary.LittleEndian.Uint16(f.page(id)[8:]) == 0x01 {
		id = binary.LittleEndian.Uint64(f.page(id)[16+8:])
	}
	return id
}

// leafValues returns the file offset and length of every value on leaf
// page id, and its keys.
func (f *boltFile) leafValues(id uint64) (offs []int64, lens []int, keys []string) {
	p := f.page(id)
	count := int(binary.LittleEndian.Uint16(p[10:]))
	for i := range count {
		e := 16 + i*16
		pos, ks, vs := int(binary.LittleEndian.Uint32(p[e+4:])), int(binary.LittleEndian.Uint32(p[e+8:])), int(binary.LittleEndian.Uint32(p[e+12:]))
		offs = append(offs, int64(id)*f.pageSize+int64(e+pos+ks))
		lens = append(lens, vs)
		keys = append(keys, string(p[e+pos:e+pos+ks]))
	}
	return offs, lens, keys
}
