package bolt

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
)

// Reading the log back (replay that tells).
//
// A segment is read from its first frame on, as a run of valid frames of
// one epoch. The run ends at a zero frame header (the log's normal end:
// every frame is written followed by one, see write), at the segment's
// end, at a valid frame of another epoch (the segment's previous use: only
// where a segment was rotated to and not written yet, or in segments
// written before headers existed), or at anything else: a torn or damaged
// frame.
//
// The rule is etcd's: a torn LAST frame is what a crash in the middle of a
// write leaves, and that frame was never acknowledged (a frame is
// acknowledged only after its fdatasync, and frames are written one at a
// time): it is dropped, and Open says so. A damaged frame followed by valid
// frames is corruption: the frames after it were acknowledged, so were the
// damaged frame's writes, and replaying around it would lose them
// silently; Open refuses and names the file and offset. To tell the two
// apart, the rest of every segment is searched for valid frames of an epoch
// above the one bbolt holds ("strays"): after a damaged frame, after a zero
// header, or in the other segment after a torn tail. Stale frames of the
// segments' previous uses are at or below that epoch (a segment is reused
// only once its contents are in bbolt), so they never count.

// maxEpochAhead bounds the epochs the stray search considers above bbolt's
// (real ones are at most two ahead): a cheap filter before the CRC.
const maxEpochAhead = 1 << 20

// endKind says how a segment's run of frames ended.
type endKind int

const (
	endClean endKind = iota // a zero frame header, or the end of the segment
	endStale                // a valid frame of another epoch
	endTorn                 // a frame that is short, runs past the segment or fails its CRC
)

// frameRef is a valid frame in a segment.
type frameRef struct {
	seg   int
	off   int64  // offset of its header
	epoch uint64 // its epoch
	n     int64  // payload bytes
}

// segScan is what scanSegment found in one segment.
type segScan struct {
	index  int
	path   string
	epoch  uint64     // the run's epoch; 0 if the segment holds no valid first frame
	run    []frameRef // the run's frames, in order
	end    int64      // offset where the run ended
	kind   endKind
	torn   int64      // endTorn: bytes the torn frame claims (header included), bounded by the segment
	strays []frameRef // valid frames above bbolt's epoch outside the run, in offset order
}

// scanSegment reads segment f (size bytes, frames from start) and returns
// its run and, unless the run is history bbolt holds (its epoch at or below
// done), the strays behind it.
func scanSegment(f *os.File, index int, path string, start, size int64, done uint64) (segScan, error) {
	sc := segScan{index: index, path: path, end: start}
	r := bufio.NewReaderSize(io.NewSectionReader(f, start, size-start), 1<<20)
	var hdr [frameHeader]byte
	var payload []byte
	for off := start; ; {
		sc.end = off
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			sc.kind = endClean // no room for another frame
			break
		}
		e := binary.LittleEndian.Uint64(hdr[0:])
		n := int64(binary.LittleEndian.Uint32(hdr[8:]))
		if hdr == ([frameHeader]byte{}) {
			sc.kind = endClean
			break
		}
		if e == 0 || off+frameHeader+n > size {
			sc.kind, sc.torn = endTorn, min(frameHeader+n, size-off)
			break
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			sc.kind, sc.torn = endTorn, size-off
			break
		}
		if crc32.Update(crc32.Checksum(hdr[:12], castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(hdr[12:]) {
			sc.kind, sc.torn = endTorn, frameHeader+n
			break
		}
		if sc.epoch != 0 && e != sc.epoch {
			sc.kind = endStale
			break
		}
		sc.epoch = e
		sc.run = append(sc.run, frameRef{seg: index, off: off, epoch: e, n: n})
		off += frameHeader + n
	}
	if sc.epoch != 0 && sc.epoch <= done && sc.kind != endTorn {
		return sc, nil // history: everything in it is in bbolt
	}
	strays, err := findFrames(f, index, sc.end, size, done)
	if err != nil {
		return sc, fmt.Errorf("read wal segment %s: %w", path, err)
	}
	sc.strays = strays
	return sc, nil
}

// findFrames returns every valid frame with an epoch above done that
// starts at or after from in segment f, trying every byte offset (a
// damaged header cannot be trusted for the length of what follows).
func findFrames(f *os.File, index int, from, size int64, done uint64) ([]frameRef, error) {
	var out []frameRef
	const chunk = 1 << 20
	buf := make([]byte, chunk+frameHeader)
	var payload []byte
	for base := from; base+frameHeader <= size; base += chunk {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if err != nil && err != io.EOF {
			return nil, err
		}
		b := buf[:n]
		for i := 0; i+frameHeader <= len(b) && i < chunk; i++ {
			e := binary.LittleEndian.Uint64(b[i:])
			if e <= done || e-done > maxEpochAhead {
				continue
			}
			off := base + int64(i)
			plen := int64(binary.LittleEndian.Uint32(b[i+8:]))
			if off+frameHeader+plen > size {
				continue
			}
			if int64(cap(payload)) < plen {
				payload = make([]byte, plen)
			}
			payload = payload[:plen]
			if _, err := f.ReadAt(payload, off+frameHeader); err != nil {
				return nil, err
			}
			if crc32.Update(crc32.Checksum(b[i:i+12], castagnoli), castagnoli, payload) != binary.LittleEndian.Uint32(b[i+12:]) {
				continue
			}
			out = append(out, frameRef{seg: index, off: off, epoch: e, n: plen})
			// Skip the frame: nothing inside it is a frame of its own.
			next := off + frameHeader + plen
			if next >= base+chunk {
				base = next - chunk // the loop adds chunk back
				break
			}
			i = int(next-base) - 1
		}
	}
	return out, nil
}

// ReplayReport says what Open's replay of the write-ahead log did.
type ReplayReport struct {
	Frames  int // frames replayed
	Records int // token records (puts of the tokens bucket) they held
	Entries int // puts and deletes they held, records included
	// TornFile, TornOffset and TornBytes describe a torn last frame that
	// was dropped (TornFile is "" if there was none): a crash in the
	// middle of its write, which nobody was told had succeeded.
	TornFile   string
	TornOffset int64
	TornBytes  int64
}

// WALError is a write-ahead log that tok refuses to replay: Problem says
// what is wrong, in File at Offset (-1 if the whole file). It wraps
// [ErrWALDamaged].
type WALError struct {
	File    string
	Offset  int64
	Problem string
}

func (e *WALError) Error() string {
	at := ""
	if e.Offset >= 0 {
		at = fmt.Sprintf(" at offset %d", e.Offset)
	}
	return fmt.Sprintf("%v: %s%s: %s; tok refuses to start rather than lose acknowledged tokens: run \"tok vault recover\" (see README, Operations: write-ahead log damage)",
		ErrWALDamaged, e.File, at, e.Problem)
}

func (e *WALError) Unwrap() error { return ErrWALDamaged }

// scanBoth scans both segments.
func (w *wal) scanBoth(done uint64) ([2]segScan, error) {
	var scans [2]segScan
	for i := range w.segs {
		sc, err := scanSegment(w.segs[i], i, w.paths[i], w.start, w.size, done)
		if err != nil {
			return scans, err
		}
		scans[i] = sc
	}
	return scans, nil
}

// plan checks the scans against the log's rules and returns the runs to
// replay, oldest first, or the reason to refuse: a valid frame outside the
// runs (after damage), a torn frame followed by a newer segment, or a gap
// between bbolt's epoch and the runs'.
func plan(scans [2]segScan, done uint64, legacy bool) ([]segScan, error) {
	for _, sc := range scans {
		if len(sc.strays) > 0 {
			s := sc.strays[0]
			what := "a damaged frame"
			if sc.kind == endClean {
				what = "a zeroed frame header"
			}
			return nil, &WALError{File: sc.path, Offset: sc.end, Problem: fmt.Sprintf(
				"%s is followed by %d valid frame(s) of epoch %d (the first at offset %d): acknowledged writes lie behind the damage",
				what, len(sc.strays), s.epoch, s.off)}
		}
	}
	var runs []segScan
	for _, sc := range scans {
		if sc.epoch > done {
			runs = append(runs, sc)
		}
	}
	slices.SortFunc(runs, func(a, b segScan) int { return cmp.Compare(a.epoch, b.epoch) })
	for i, sc := range runs {
		want := done + 1 + uint64(i)
		if sc.epoch != want {
			return nil, &WALError{File: sc.path, Offset: -1, Problem: fmt.Sprintf(
				"it holds epoch %d but the vault file holds epochs up to %d: the frames of epoch %d are missing (a segment was deleted, replaced or zeroed, or tok.db was replaced by an older copy)",
				sc.epoch, done, want)}
		}
		if !legacy && sc.kind == endTorn && i < len(runs)-1 {
			return nil, &WALError{File: sc.path, Offset: sc.end, Problem: fmt.Sprintf(
				"a damaged frame ends epoch %d, and epoch %d follows in %s: the damaged frame was acknowledged", sc.epoch, runs[i+1].epoch, runs[i+1].path)}
		}
	}
	return runs, nil
}

// replay checks the log (see plan) and calls fn with the payload of every
// frame of the runs above done, the older epoch's first, and returns the
// largest epoch seen and what it replayed. done is the last epoch bbolt
// holds in full: a segment at or below it is history bbolt already has,
// and replaying it could undo newer changes when the segment after it is
// gone (a kill between reset's two header writes leaves just that).
func (w *wal) replay(done uint64, fn func(payload []byte) error) (uint64, ReplayReport, error) {
	var rep ReplayReport
	scans, err := w.scanBoth(done)
	if err != nil {
		return 0, rep, err
	}
	legacy := w.start == 0
	runs, err := plan(scans, done, legacy)
	if err != nil {
		return 0, rep, err
	}
	var payload []byte
	for _, sc := range runs {
		for _, fr := range sc.run {
			if int64(cap(payload)) < fr.n {
				payload = make([]byte, fr.n)
			}
			payload = payload[:fr.n]
			if _, err := w.segs[sc.index].ReadAt(payload, fr.off+frameHeader); err != nil {
				return 0, rep, fmt.Errorf("replay wal segment %s: %w", sc.path, err)
			}
			if err := fn(payload); err != nil {
				return 0, rep, fmt.Errorf("replay wal segment %s, frame at offset %d: %w", sc.path, fr.off, err)
			}
			rep.Frames++
		}
	}
	// A torn frame is dropped only where it is the log's last: at the end
	// of the newest run, or alone in a segment that has no run above done.
	for _, sc := range scans {
		if legacy || sc.kind != endTorn || (sc.epoch != 0 && sc.epoch <= done) {
			continue
		}
		if len(runs) > 0 && sc.epoch != runs[len(runs)-1].epoch && sc.epoch != 0 {
			continue // plan refused this already
		}
		rep.TornFile, rep.TornOffset, rep.TornBytes = sc.path, sc.end, sc.torn
	}
	last := max(scans[0].epoch, scans[1].epoch)
	return last, rep, nil
}
