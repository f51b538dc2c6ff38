package bolt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
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
// <db>.wal.1, used in turn. Each is zero-filled to its full size when it is
// created, so an append overwrites blocks that are already allocated and
// fdatasync has no size or extent change to journal (measured on this
// machine: 8 KiB write + fdatasync ran 3,000/s into a preallocated file,
// 1,500/s appending to a growing one).
//
// A frame is a 16-byte header, epoch (uint64), payload length (uint32) and
// CRC-32C (uint32, over the first 12 header bytes and the payload), then the
// payload. Every use of a segment gets a new epoch, larger than any before,
// and writes frames from offset 0; the frames of a previous use that lie
// beyond are left in place and recognised as stale by their epoch.
//
// Durability: a frame is written with one WriteAt and acknowledged only
// after fdatasync returns, and frames are written one at a time by one
// goroutine. So every acknowledged frame is on disk, and a frame that a
// crash tore (zero, short or failing its CRC) was never acknowledged, nor
// was anything after it. Replay therefore reads each segment from the start
// and stops at the first frame that is zero, stale (another epoch), short,
// or fails its CRC.
//
// Reuse: a segment is reused only once everything it held is in bbolt (the
// checkpoint of its memtable committed), so at any moment the two segments
// hold the current epoch and the one before it, or, right after a switch,
// the previous two epochs (the new segment's first frame is still from its
// previous use). In both cases replaying both segments in epoch order
// re-applies the latest history in order, and nothing in bbolt is newer
// than it.

// Segment defaults.
const (
	// defaultSegmentSize is the size of each WAL segment. A segment that
	// would overflow forces a checkpoint, so it bounds how much the
	// memtables hold between checkpoints: a tokenization logs about 200
	// bytes, so 32 MiB is ~160k records, more than a default checkpoint.
	// Both segments are preallocated: 64 MiB whatever the vault's size,
	// 67 bytes per token at 1M tokens (64 MiB segments made that 134 and
	// the total 450 bytes per token, at the 450 budget).
	defaultSegmentSize = 32 << 20
	frameHeader        = 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errFrameTooLarge: one group commit's effects do not fit a whole segment.
var errFrameTooLarge = errors.New("commit too large for a wal segment")

// wal is the ring of two segments. Only the committer appends and
// switches; Open replays and resets it before the committer starts.
type wal struct {
	segs  [2]*os.File
	size  int64  // usable bytes per segment
	cur   int    // segment being appended to
	off   int64  // next write offset in segs[cur]
	epoch uint64 // epoch of the frames being appended
	buf   []byte // frame being encoded, reused
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
// database at dbPath.
func openWAL(dbPath string, size int64) (*wal, error) {
	w := &wal{size: size}
	created := false
	for i, p := range walPaths(dbPath) {
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

// write appends payload as one frame; see append.
func (w *wal) write(payload []byte) error {
	if frameHeader+int64(len(payload)) > w.size {
		return fmt.Errorf("%w: %d bytes", errFrameTooLarge, len(payload))
	}
	b := w.buf[:0]
	b = binary.LittleEndian.AppendUint64(b, w.epoch)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = append(b, payload...)
	crc := crc32.Update(crc32.Checksum(b[:12], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(b[12:], crc)
	w.buf = b
	if err := w.writeAt(b, w.off); err != nil {
		return fmt.Errorf("write wal: %w", err)
	}
	if err := w.sync(); err != nil {
		return fmt.Errorf("sync wal: %w", err)
	}
	w.off += int64(len(b))
	return nil
}

// rotate switches appends to the other segment under a new epoch. The
// caller guarantees that everything the other segment held is in bbolt,
// and that canRotate.
func (w *wal) rotate() {
	w.cur ^= 1
	w.off = 0
	w.epoch++
}

// scan calls fn (if not nil) with the payload of each valid frame of
// segment i, in order, and returns the segment's epoch (0 if it holds no
// valid frame). It stops without error at the first zero, stale, short or
// corrupt frame: that is the end of the log (see the durability argument
// above). Payloads passed to fn are only valid during the call.
func (w *wal) scan(i int, fn func(payload []byte) error) (uint64, error) {
	r := bufio.NewReaderSize(io.NewSectionReader(w.segs[i], 0, w.size), 1<<20)
	var epoch uint64
	var hdr [frameHeader]byte
	var payload []byte
	for off := int64(0); ; {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return epoch, nil // end of segment
		}
		e := binary.LittleEndian.Uint64(hdr[0:])
		n := int64(binary.LittleEndian.Uint32(hdr[8:]))
		if e == 0 || (epoch != 0 && e != epoch) || off+frameHeader+n > w.size {
			return epoch, nil
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return epoch, nil
		}
		crc := crc32.Update(crc32.Checksum(hdr[:12], castagnoli), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(hdr[12:]) {
			return epoch, nil
		}
		epoch = e
		if fn != nil {
			if err := fn(payload); err != nil {
				return epoch, err
			}
		}
		off += frameHeader + n
	}
}

// replay calls fn with the payload of every valid frame of both segments
// whose epoch is above done, the older epoch's segment first, and returns
// the largest epoch seen. done is the last epoch bbolt holds in full: a
// segment at or below it is history bbolt already has, and replaying it
// could undo newer changes when the segment after it is gone (a kill
// between reset's two header wipes leaves just that).
func (w *wal) replay(done uint64, fn func(payload []byte) error) (uint64, error) {
	var epochs [2]uint64
	for i := range w.segs {
		e, err := w.scan(i, nil)
		if err != nil {
			return 0, err
		}
		epochs[i] = e
	}
	order := []int{0, 1}
	if epochs[1] < epochs[0] {
		order = []int{1, 0}
	}
	for _, i := range order {
		if epochs[i] == 0 || epochs[i] <= done {
			continue
		}
		if _, err := w.scan(i, fn); err != nil {
			return 0, fmt.Errorf("replay wal segment %d: %w", i, err)
		}
	}
	return max(epochs[0], epochs[1]), nil
}

// reset empties the ring once its contents are in bbolt: it zeroes the
// first frame header of both segments (so replay finds nothing and stale
// frames behind it cannot be mistaken for current ones, being of older
// epochs) and starts appending to segment 0 with epoch.
func (w *wal) reset(epoch uint64) error {
	var zero [frameHeader]byte
	for _, f := range w.segs {
		if _, err := f.WriteAt(zero[:], 0); err != nil {
			return fmt.Errorf("reset wal: %w", err)
		}
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("reset wal: %w", err)
		}
	}
	w.cur, w.off, w.epoch = 0, 0, epoch
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
