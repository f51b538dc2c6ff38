package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The integrity check at Open.
//
// bbolt trusts its file: with NoFreelistSync it walks every page at open to
// rebuild the freelist, and a damaged page header makes that walk panic in
// a goroutine of its own (no recover can catch it), and a file cut short
// makes it fault on the mapping. So before bbolt sees the file, checkFile
// reads it with plain reads and bounds checks everywhere: both meta pages
// (magic, version, checksum; bbolt falls back to the other one when one is
// damaged, which may roll back the last transaction: see the base epoch in
// wal.go, which catches that), the file's length against the newest meta's
// high-water mark, the freelist page if there is one, and every page the
// tree reaches (its id, its type, its element bounds, and no page reached
// twice). It reads each reachable page once: the same work bbolt's freelist
// rebuild does at every open anyway. Key order and values are left to the
// full check (`tok vault check`: bbolt's own tx.Check, and every record
// decrypted).

// bbolt's file format (go.etcd.io/bbolt/internal/common, version 2).
const (
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	pageHeaderSize   = 16
	elementSize      = 16 // branch and leaf page elements alike
	bucketHeaderSize = 16 // root pgid, sequence
	metaSize         = 56 // magic … txid: the bytes the checksum covers
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	flagBucketValue  = 0x01 // a leaf element holding a nested bucket
	noFreelist       = ^uint64(0)
)

// boltMeta is a decoded meta page.
type boltMeta struct {
	page     int // 0 or 1
	pageSize int64
	root     uint64
	freelist uint64
	hwm      uint64 // pages in use: the high-water mark
	txid     uint64
}

// FileCheck is what checkFile found in a vault file that it accepts.
type FileCheck struct {
	PageSize int64
	Pages    uint64 // the high-water mark
	Reached  uint64 // pages the tree reaches
	TxID     uint64 // the transaction of the meta page bbolt will use
	// DamagedMeta is -1, or the meta page (0 or 1) that failed its
	// checksum: bbolt uses the other one.
	DamagedMeta int
	MetaProblem string
}

// DamageError is a vault file tok refuses to open: Problem names what is
// wrong and where. It wraps [ErrVaultDamaged].
type DamageError struct {
	File    string
	Problem string
	// notVault: neither meta page is valid, so the file may not be a
	// bbolt file at all; the error also wraps [ErrNotVault].
	notVault bool
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("%v: %s: %s; tok refuses to start on it: restore the vault from a backup (see README, Operations: vault file damage)", ErrVaultDamaged, e.File, e.Problem)
}

func (e *DamageError) Unwrap() []error {
	if e.notVault {
		return []error{ErrVaultDamaged, ErrNotVault}
	}
	return []error{ErrVaultDamaged}
}

// checkFile checks the bbolt file at path as described above. The caller
// has made sure the file exists and is not empty.
func checkFile(path string) (FileCheck, error) {
	fc := FileCheck{DamagedMeta: -1}
	f, err := os.Open(path)
	if err != nil {
		return fc, fmt.Errorf("check vault file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fc, fmt.Errorf("check vault file: %w", err)
	}
	damaged := func(format string, args ...any) error {
		return &DamageError{File: path, Problem: fmt.Sprintf(format, args...)}
	}
	m, problems := readMetas(f)
	switch {
	case m[0] == nil && m[1] == nil:
		return fc, &DamageError{File: path, notVault: true, Problem: fmt.Sprintf("neither meta page is valid (%s; %s): it is not a bbolt file, or both were damaged", problems[0], problems[1])}
	case m[0] == nil:
		fc.DamagedMeta, fc.MetaProblem = 0, problems[0]
	case m[1] == nil:
		fc.DamagedMeta, fc.MetaProblem = 1, problems[1]
	}
	meta := m[0]
	if meta == nil || (m[1] != nil && m[1].txid > meta.txid) {
		meta = m[1]
	}
	ps := meta.pageSize
	fc.PageSize, fc.Pages, fc.TxID = ps, meta.hwm, meta.txid
	if need := int64(meta.hwm) * ps; fi.Size() < need {
		return fc, damaged("the file is %d bytes, but its meta page (transaction %d) says it holds %d pages of %d bytes (%d bytes): it was cut short", fi.Size(), meta.txid, meta.hwm, ps, need)
	}
	w := walker{f: f, ps: ps, hwm: meta.hwm, seen: make([]uint64, meta.hwm/64+1), path: path}
	if meta.freelist != noFreelist {
		p, err := w.page(meta.freelist, 0)
		if err != nil {
			return fc, err
		}
		if flags := binary.LittleEndian.Uint16(p[8:]); flags != flagFreelist {
			return fc, damaged("page %d (offset %d), the freelist, has page type %#x", meta.freelist, int64(meta.freelist)*ps, flags)
		}
	}
	if _, err := w.walk(meta.root, 0, nil, nil); err != nil {
		return fc, err
	}
	fc.Reached = w.reached
	return fc, nil
}

// readMetas reads and validates both meta pages; a nil entry comes with
// its problem.
func readMetas(f *os.File) ([2]*boltMeta, [2]string) {
	var out [2]*boltMeta
	var problems [2]string
	buf := make([]byte, pageHeaderSize+metaSize+8)
	m0, err := readMeta(f, 0, buf)
	if err == nil {
		out[0] = &m0
	} else {
		problems[0] = "meta page 0: " + err.Error()
	}
	// Meta page 1 sits one page in: the page size comes from meta 0, or,
	// if that is damaged, from whichever candidate gives a valid meta.
	sizes := []int64{4096, 8192, 16384, 32768, 65536, int64(os.Getpagesize())}
	if out[0] != nil {
		sizes = []int64{out[0].pageSize}
	}
	problems[1] = "meta page 1: not found at any page size"
	for _, ps := range sizes {
		m1, err := readMeta(f, ps, buf)
		if err == nil && m1.pageSize == ps {
			m1.page = 1
			out[1], problems[1] = &m1, ""
			break
		}
		if err != nil {
			problems[1] = "meta page 1: " + err.Error()
		}
	}
	return out, problems
}

// readMeta reads and validates the meta page at off.
func readMeta(f *os.File, off int64, buf []byte) (boltMeta, error) {
	if _, err := f.ReadAt(buf, off); err != nil {
		if err == io.EOF {
			return boltMeta{}, fmt.Errorf("past the end of the file")
		}
		return boltMeta{}, err
	}
	b := buf[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic {
		return boltMeta{}, fmt.Errorf("bad magic")
	}
	if le.Uint32(b[4:]) != boltVersion {
		return boltMeta{}, fmt.Errorf("format version %d, want %d", le.Uint32(b[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(b[:metaSize])
	if h.Sum64() != le.Uint64(b[metaSize:]) {
		return boltMeta{}, fmt.Errorf("checksum mismatch")
	}
	m := boltMeta{pageSize: int64(le.Uint32(b[8:])), root: le.Uint64(b[16:]), freelist: le.Uint64(b[32:]), hwm: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.root < 2 || m.root >= m.hwm {
		return boltMeta{}, fmt.Errorf("implausible page size %d or root page %d of %d", m.pageSize, m.root, m.hwm)
	}
	return m, nil
}

// walker walks the page tree with bounds checks.
type walker struct {
	f       *os.File
	path    string
	ps      int64
	hwm     uint64
	seen    []uint64 // bitmap of pages reached
	reached uint64
	bufs    [][]byte // one page buffer per tree level, reused
}

func (w *walker) damaged(id uint64, format string, args ...any) error {
	return &DamageError{File: w.path, Problem: fmt.Sprintf("page %d (offset %d): ", id, int64(id)*w.ps) + fmt.Sprintf(format, args...)}
}

// page reads page id with its overflow pages into the buffer of level
// depth (valid until the next read at that level).
func (w *walker) page(id uint64, depth int) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, w.damaged(id, "referenced, but outside the file's %d pages", w.hwm)
	}
	for len(w.bufs) <= depth {
		w.bufs = append(w.bufs, make([]byte, w.ps))
	}
	p := w.bufs[depth][:w.ps]
	if _, err := w.f.ReadAt(p, int64(id)*w.ps); err != nil {
		return nil, w.damaged(id, "unreadable: %v", err)
	}
	if got := binary.LittleEndian.Uint64(p); got != id {
		return nil, w.damaged(id, "its header says page %d", got)
	}
	if ov := uint64(binary.LittleEndian.Uint32(p[12:])); ov > 0 {
		if id+ov >= w.hwm {
			return nil, w.damaged(id, "%d overflow pages run past the file's %d pages", ov, w.hwm)
		}
		p = append(p, make([]byte, int64(ov)*w.ps)...)
		if _, err := w.f.ReadAt(p[w.ps:], int64(id+1)*w.ps); err != nil {
			return nil, w.damaged(id, "overflow unreadable: %v", err)
		}
		w.bufs[depth] = p
	}
	return p, nil
}

// walk checks the subtree at page id, whose keys must lie in [lo, hi)
// (nil: unbounded), and returns its largest key (a copy). bbolt's freelist
// rebuild checks the same key order and panics on a violation (a flipped
// byte in a key), so this check must catch what that one would.
func (w *walker) walk(id uint64, depth int, lo, hi []byte) ([]byte, error) {
	if depth > 64 {
		return nil, w.damaged(id, "the tree is more than 64 levels deep")
	}
	p, err := w.page(id, depth)
	if err != nil {
		return nil, err
	}
	ov := uint64(binary.LittleEndian.Uint32(p[12:]))
	for i := id; i <= id+ov; i++ {
		if w.seen[i/64]&(1<<(i%64)) != 0 {
			return nil, w.damaged(id, "reached twice (page %d belongs to two places in the tree)", i)
		}
		w.seen[i/64] |= 1 << (i % 64)
	}
	w.reached += ov + 1
	return w.node(id, p, depth, true, lo, hi)
}

// node checks the elements of page p (for an inline bucket's page: id is
// its parent's, and order is false, as bbolt does not check inline
// buckets' order) and walks what they point to.
func (w *walker) node(id uint64, p []byte, depth int, order bool, lo, hi []byte) ([]byte, error) {
	le := binary.LittleEndian
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if flags != flagBranch && flags != flagLeaf {
		return nil, w.damaged(id, "page type %#x where a branch or leaf page belongs", flags)
	}
	if pageHeaderSize+count*elementSize > len(p) {
		return nil, w.damaged(id, "%d elements do not fit the page", count)
	}
	if flags == flagBranch && count == 0 {
		return nil, w.damaged(id, "a branch page with no elements")
	}
	prev := lo
	var last []byte
	for i := range count {
		e := pageHeaderSize + i*elementSize
		if flags == flagBranch {
			pos, ksize := int(le.Uint32(p[e:])), int(le.Uint32(p[e+4:]))
			if e+pos+ksize > len(p) || pos < 0 || ksize < 0 {
				return nil, w.damaged(id, "element %d's key runs past the page", i)
			}
			key := p[e+pos : e+pos+ksize]
			if err := w.keyOrder(id, i, key, prev, hi); err != nil {
				return nil, err
			}
			next := hi
			if i < count-1 {
				ne := e + elementSize
				npos, nksize := int(le.Uint32(p[ne:])), int(le.Uint32(p[ne+4:]))
				if ne+npos+nksize > len(p) || npos < 0 || nksize < 0 {
					return nil, w.damaged(id, "element %d's key runs past the page", i+1)
				}
				next = p[ne+npos : ne+npos+nksize]
			}
			max, err := w.walk(le.Uint64(p[e+8:]), depth+1, key, next)
			if err != nil {
				return nil, err
			}
			prev, last = max, max
			continue
		}
		pos, ksize, vsize := int(le.Uint32(p[e+4:])), int(le.Uint32(p[e+8:])), int(le.Uint32(p[e+12:]))
		if pos < 0 || ksize < 0 || vsize < 0 || e+pos+ksize+vsize > len(p) {
			return nil, w.damaged(id, "element %d's key or value runs past the page", i)
		}
		key := p[e+pos : e+pos+ksize]
		if order {
			if err := w.keyOrder(id, i, key, prev, hi); err != nil {
				return nil, err
			}
		}
		prev, last = key, key
		if le.Uint32(p[e:])&flagBucketValue == 0 {
			continue
		}
		v := p[e+pos+ksize : e+pos+ksize+vsize]
		if len(v) < bucketHeaderSize {
			return nil, w.damaged(id, "element %d: a bucket value of %d bytes", i, len(v))
		}
		if root := le.Uint64(v); root != 0 {
			if _, err := w.walk(root, depth+1, nil, nil); err != nil {
				return nil, err
			}
			continue
		}
		inline := v[bucketHeaderSize:]
		if len(inline) < pageHeaderSize {
			return nil, w.damaged(id, "element %d: an inline bucket of %d bytes", i, len(inline))
		}
		if _, err := w.node(id, inline, depth+1, false, nil, nil); err != nil {
			return nil, err
		}
	}
	// The caller compares later keys with it after reading other pages
	// into this level's buffer.
	return bytes.Clone(last), nil
}

// keyOrder checks that key, element i of page id, lies after prev (at or
// after it for the first element: prev is then the parent's bound) and
// before hi.
func (w *walker) keyOrder(id uint64, i int, key, prev, hi []byte) error {
	c := bytes.Compare(prev, key)
	switch {
	case prev != nil && i == 0 && c > 0, prev != nil && i > 0 && c >= 0:
		return w.damaged(id, "element %d's key is out of order (a damaged key: bbolt would panic on it)", i)
	case hi != nil && bytes.Compare(key, hi) >= 0:
		return w.damaged(id, "element %d's key is beyond its parent's next key (a damaged key)", i)
	}
	return nil
}
