package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Write-ahead log.
//
// The committer does not write bbolt. It appends each group commit's effects
// as one frame to a WAL segment and fdatasyncs it; a checkpoint later moves
// the effects of tens of thousands of records into bbolt, a key range per
// transaction (checkpoint.go). That turns about 60 random 4 KiB page writes
// and two fsyncs per commit into a few KiB written sequentially and one
// fdatasync.
//
// Layout: two segment files next to the database, <db>.wal.0 and
// <db>.wal.1, used in turn, each beginning with a header (below). Each is zero-filled to its full size when it is
// created, so an append overwrites blocks that are already allocated and
// fdatasync has no size or extent change to journal (measured on this
// machine: 8 KiB write + fdatasync ran 3,000/s into a preallocated file,
// 1,500/s appending to a growing one).
//
// A frame is a 16-byte header, epoch (uint64), payload length (uint32) and
// CRC-32C (uint32, over the first 12 header bytes and the payload), then the
// payload. Every use of a segment gets a new epoch, larger than any before,
// and writes frames from just after the segment header; the frames of a previous use that lie
// beyond are left in place and recognised as stale by their epoch.
//
// Durability: a frame is written with one WriteAt and acknowledged only
// after fdatasync returns, and frames are written one at a time by one
// goroutine. So every acknowledged frame is on disk, and a frame that a
// crash tore (short or failing its CRC) was never acknowledged, nor was
// anything after it. Replay reads each segment from its first frame to the
// zero header that ends the log, drops a torn last frame and says so, and
// refuses a damaged frame that valid ones follow (see walscan.go).
//
// Reuse: a segment is reused only once everything it held is in bbolt (the
// checkpoint of its memtable committed), so at any moment the two segments
// hold the current epoch and the one before it, or, right after a switch,
// the previous two epochs (the new segment's first frame is still from its
// previous use). In both cases replaying both segments in epoch order
// re-applies the latest history in order, and nothing in bbolt is newer
// than it.

// defaultSegmentSize is the size of each WAL segment. A segment that
// would overflow forces a checkpoint, so it bounds how much the memtables
// hold between checkpoints: a tokenization logs about 200 bytes, so 32 MiB
// is ~160k records, more than a default checkpoint. Both segments are
// preallocated: 64 MiB whatever the vault's size, 67 bytes per token at 1M
// tokens (64 MiB segments made that 134 and the total 450 bytes per token,
// at the 450 budget). A variable only so that tests under the race
// detector, where scanning 64 MiB at every Open takes seconds, can use
// smaller segments (race_test.go).
var defaultSegmentSize int64 = 32 << 20

// frameHeader is the size of a WAL frame's header.
const frameHeader = 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errFrameTooLarge: one group commit's effects do not fit a whole segment.
var errFrameTooLarge = errors.New("commit too large for a wal segment")

// Segment header. Every segment begins with segHeaderSize bytes naming the
// vault it belongs to and the first epoch of the ring since its last reset:
// a segment of another vault is never replayed, and a vault
// file older than its log (a damaged meta page made bbolt fall back to an
// older transaction, or an old copy of tok.db was put back without removing
// the log) is refused instead of silently missing the history in between.
// Frames start after it. Segments written before segments had headers have none
// (frames from offset 0): a vault without a vault id is read that way once,
// and its segments are rewritten with headers by the reset that follows.
//
//	[0:8]   magic "tokwal\x00\x02"
//	[8:24]  vault id
//	[24:32] base epoch (uint64, little-endian): bbolt holds every epoch below it
//	[32:36] segment index (uint32)
//	[36:40] CRC-32C of [0:36]
const segHeaderSize = 64

var segMagic = []byte("tokwal\x00\x02")

// segHeader is a decoded segment header.
type segHeader struct {
	id    [16]byte
	base  uint64
	index uint32
}

func (h segHeader) encode() []byte {
	b := make([]byte, segHeaderSize)
	copy(b, segMagic)
	copy(b[8:24], h.id[:])
	binary.LittleEndian.PutUint64(b[24:], h.base)
	binary.LittleEndian.PutUint32(b[32:], h.index)
	binary.LittleEndian.PutUint32(b[36:], crc32.Checksum(b[:36], castagnoli))
	return b
}

// decodeSegHeader decodes b (segHeaderSize bytes); ok is false if it is not
// a valid header.
func decodeSegHeader(b []byte) (segHeader, bool) {
	if len(b) < segHeaderSize || !bytes.Equal(b[:8], segMagic) ||
		binary.LittleEndian.Uint32(b[36:]) != crc32.Checksum(b[:36], castagnoli) {
		return segHeader{}, false
	}
	var h segHeader
	copy(h.id[:], b[8:24])
	h.base = binary.LittleEndian.Uint64(b[24:])
	h.index = binary.LittleEndian.Uint32(b[32:])
	return h, true
}

// wal is the ring of two segments. Only the committer appends and
// switches; Open replays and resets it before the committer starts.
type wal struct {
	segs  [2]*os.File
	paths [2]string
	size  int64    // bytes per segment, header included
	start int64    // offset of the first frame: segHeaderSize, or 0 for a segment without a header
	id    [16]byte // the vault id the headers carry
	cur   int      // segment being appended to
	off   int64    // next write offset in segs[cur]
	epoch uint64   // epoch of the frames being appended
	buf   []byte   // frame being encoded, reused
	// pending is set when a failed append could not be undone: the header
	// at off may still hold the failed frame. See append.
	pending bool
	faults  *Faults // injected failures (tests); nil in production
}

// walPaths returns the segment file names for the database at dbPath.
func walPaths(dbPath string) [2]string {
	return [2]string{dbPath + ".wal.0", dbPath + ".wal.1"}
}

// openWAL opens (creating and zero-filling if needed) both segments of the
// database at dbPath. Open has already refused segments that are missing
// or short when they may hold acknowledged writes (see checkSegments);
// start is where frames begin in the segments as they are now.
func openWAL(dbPath string, size, start int64, id [16]byte) (*wal, error) {
	w := &wal{size: size, start: start, off: start, id: id, paths: walPaths(dbPath)}
	created := false
	for i, p := range w.paths {
		f, isNew, err := openSegment(p, size)
		if err != nil {
			w.close()
			return nil, err
		}
		w.segs[i] = f
		created = created || isNew
	}
	if created {
		// Make the new directory entries durable too.
		if err := syncDir(filepath.Dir(dbPath)); err != nil {
			w.close()
			return nil, err
		}
	}
	return w, nil
}

// openSegment opens the segment at p, zero-filling it to size if it is
// shorter, and reports whether it had to be extended.
func openSegment(p string, size int64) (*os.File, bool, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open wal segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("open wal segment: %w", err)
	}
	if fi.Size() >= size {
		return f, false, nil
	}
	zero := make([]byte, 1<<20)
	for off := fi.Size(); off < size; {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("preallocate wal segment: %w", err)
		}
		off += n
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("preallocate wal segment: %w", err)
	}
	return f, true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	return nil
}

// fits reports whether a payload of n bytes fits the current segment.
func (w *wal) fits(n int) bool {
	return w.off+frameHeader+int64(n) <= w.size
}

// append writes payload as one frame at the end of the current segment and
// fdatasyncs it. When it returns nil the frame is durable. On error the
// offset does not advance and the frame's header is zeroed (and synced), so
// the failed frame, whose callers are told it was not written, can never be
// replayed.
//
// If even that undo fails (the disk refuses every write), the WAL is left
// pending: every later append, and probe, first retries the undo and
// appends nothing until it succeeds, and the committer does not switch
// segments meanwhile (canRotate), since a switch would leave the failed
// frame right after the old segment's last valid one, where replay would
// find it. So the WAL recovers by itself once the disk does, and it never
// resurrects a failed frame, except if the process dies while the disk
// still refuses the undo: then nothing tok could do would remove the frame.
func (w *wal) append(payload []byte) error {
	if err := w.ready(); err != nil {
		return err
	}
	if err := w.write(payload); err != nil {
		if uerr := w.zeroHeader(); uerr != nil {
			w.pending = true
		}
		return err
	}
	return nil
}

// ready retries a pending undo; see append.
func (w *wal) ready() error {
	if !w.pending {
		return nil
	}
	if err := w.zeroHeader(); err != nil {
		return fmt.Errorf("wal: undo of a failed append: %w", err)
	}
	w.pending = false
	return nil
}

// canRotate reports whether appends may switch segments: not while a
// failed frame may remain at the current offset.
func (w *wal) canRotate() bool { return !w.pending }

// probe checks that the current segment takes a write and an fdatasync, as
// the next append will need: it retries a pending undo, or else zeroes the
// header at the append offset (nothing valid lies there: replay stops at
// that offset anyway) and syncs it.
func (w *wal) probe() error {
	if w.pending {
		return w.ready()
	}
	if err := w.zeroHeader(); err != nil {
		return fmt.Errorf("wal: probe: %w", err)
	}
	return nil
}

// zeroHeader zeroes the frame header at the append offset and syncs it.
func (w *wal) zeroHeader() error {
	var zero [frameHeader]byte
	if w.off+frameHeader <= w.size { // else no frame can start there
		if err := w.writeAt(zero[:], w.off); err != nil {
			return err
		}
	}
	return w.sync()
}

// writeAt writes b at off in the current segment.
func (w *wal) writeAt(b []byte, off int64) error {
	f := w.segs[w.cur]
	if err := w.faults.writeErr(f); err != nil {
		return err
	}
	_, err := f.WriteAt(b, off)
	return err
}

// sync fdatasyncs the current segment.
func (w *wal) sync() error {
	f := w.segs[w.cur]
	if err := w.faults.syncErr(f); err != nil {
		return err
	}
	return fdatasync(f)
}

// write appends payload as one frame; see append. The frame is followed,
// in the same write, by a zero frame header (when the segment has room for
// one), which the next frame overwrites: so the log always ends at a zero
// header, and anything else found where replay stops is a torn or damaged
// frame rather than the stale bytes of the segment's previous use.
func (w *wal) write(payload []byte) error {
	if frameHeader+int64(len(payload)) > w.size-w.start {
		return fmt.Errorf("%w: %d bytes", errFrameTooLarge, len(payload))
	}
	b := w.buf[:0]
	b = binary.LittleEndian.AppendUint64(b, w.epoch)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, payload...)
	crc := crc32.Update(crc32.Checksum(b[:12], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(b[12:], crc)
	n := int64(len(b))
	if w.off+n+frameHeader <= w.size {
		b = append(b, make([]byte, frameHeader)...)
	}
	w.buf = b
	if err := w.writeAt(b, w.off); err != nil {
		return fmt.Errorf("write wal: %w", err)
	}
	if err := w.sync(); err != nil {
		return fmt.Errorf("sync wal: %w", err)
	}
	w.off += n
	return nil
}

// rotate switches appends to the other segment under a new epoch. The
// caller guarantees that everything the other segment held is in bbolt,
// and that canRotate.
func (w *wal) rotate() {
	w.cur ^= 1
	w.off = w.start
	w.epoch++
}

// reset empties the ring once its contents are in bbolt: it writes both
// segments' headers with base epoch (bbolt holds every epoch below it),
// zeroes the first frame header behind them (so replay finds nothing, and
// stale frames further on, being of older epochs, cannot be mistaken for
// current ones) and starts appending to segment 0 with epoch. Segments
// read without a header get one here.
func (w *wal) reset(epoch uint64) error {
	for i, f := range w.segs {
		b := append(segHeader{id: w.id, base: epoch, index: uint32(i)}.encode(), make([]byte, frameHeader)...)
		if _, err := f.WriteAt(b, 0); err != nil {
			return fmt.Errorf("reset wal: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("reset wal: %w", err)
		}
	}
	w.start = segHeaderSize
	w.cur, w.off, w.epoch = 0, w.start, epoch
	return nil
}

// close closes both segment files.
func (w *wal) close() error {
	var errs []error
	for i, f := range w.segs {
		if f != nil {
			errs = append(errs, f.Close())
			w.segs[i] = nil
		}
	}
	return errors.Join(errs...)
}

// segIssue is a segment that cannot be used as it is.
type segIssue struct {
	path, problem string
	foreign       bool // it has a valid header of another vault
}

// checkSegments inspects the segments of the vault at path (id) without
// changing them. It returns the largest base epoch their headers record
// and what is wrong with each that cannot be used as it is.
func checkSegments(path string, size int64, id [16]byte) (uint64, []segIssue) {
	var base uint64
	var issues []segIssue
	for _, p := range walPaths(path) {
		fi, err := os.Lstat(p)
		if err != nil {
			issues = append(issues, segIssue{path: p, problem: "missing"})
			continue
		}
		if fi.Size() < size {
			issues = append(issues, segIssue{path: p, problem: fmt.Sprintf("cut short: %d bytes, a segment has %d", fi.Size(), size)})
			continue
		}
		b := make([]byte, segHeaderSize)
		f, err := os.Open(p)
		if err == nil {
			_, err = f.ReadAt(b, 0)
			f.Close()
		}
		if err != nil {
			issues = append(issues, segIssue{path: p, problem: "unreadable: " + err.Error()})
			continue
		}
		h, ok := decodeSegHeader(b)
		switch {
		case !ok:
			issues = append(issues, segIssue{path: p, problem: "its segment header is gone (zeroed or overwritten)"})
		case h.id != id:
			issues = append(issues, segIssue{path: p, problem: fmt.Sprintf("it belongs to vault %s, not to this vault (%s)", formatID(h.id), formatID(id)), foreign: true})
		default:
			base = max(base, h.base)
		}
	}
	return base, issues
}
