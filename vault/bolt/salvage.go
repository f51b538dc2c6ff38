package bolt

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tokproxy/tok/vault"
)

// Recovery: what `tok vault recover` runs. Diagnose reads a
// vault and its log without changing anything and says exactly what can
// be recovered and what cannot; Salvage (`tok vault recover -salvage`)
// writes into the vault file every valid frame of the log above what it
// holds, in order, stepping over the damage, and moves the damaged
// segments aside, so that tok starts again. What the damage destroyed is
// gone either way; Diagnose says how much.

// Diagnosis is what [Diagnose] found.
type Diagnosis struct {
	Path    string
	VaultID string // "" if the vault file cannot be read
	// FileProblem is "" if the vault file passes the integrity check and
	// opens; else what is wrong with it (salvage cannot help: restore a
	// backup).
	FileProblem string
	Epoch       uint64 // the last epoch the vault file holds
	WALOpen     bool   // the vault was not stopped cleanly
	Segments    []SegmentDiagnosis
	// Frames and Records are what Salvage would replay; Damaged lists the
	// regions of the log it would step over or could not find, each with
	// what was lost there.
	Frames, Records int
	Damaged         []string
	// Relinked is set by Salvage: records whose fingerprint entry was
	// missing and was put back (see relink).
	Relinked int
	frames   []frameRef
}

// SegmentDiagnosis is one WAL segment's state.
type SegmentDiagnosis struct {
	Path    string
	Problem string // "" if it exists, is whole and has this vault's header
	Epoch   uint64 // the epoch of its run of frames (0: none above the vault file's)
	Frames  int    // valid frames above the vault file's epoch, strays included
	Records int    // token records in them
}

// OK reports whether nothing is wrong: Open would start without losing
// anything.
func (d Diagnosis) OK() bool { return d.FileProblem == "" && len(d.Damaged) == 0 }

// Diagnose inspects the vault at path and its WAL segments without
// changing them (no process may have the vault open).
func Diagnose(path string, opts Options) (Diagnosis, error) {
	opts = opts.withDefaults()
	d := Diagnosis{Path: path}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		state := "missing"
		if err == nil {
			state = "empty (0 bytes)"
		} else if !errors.Is(err, fs.ErrNotExist) {
			state = err.Error()
		}
		d.FileProblem = fmt.Sprintf("the vault file is %s: only a backup brings back its tokens (tok vault restore); the log alone holds only the writes since the last checkpoint", state)
		return d, nil
	}
	if _, err := checkFile(path); err != nil {
		d.FileProblem = err.Error()
		return d, nil
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return d, fmt.Errorf("vault file %q is in use (is tok running? stop it first): %w", path, ErrLocked)
	}
	if err != nil {
		d.FileProblem = err.Error()
		return d, nil
	}
	defer db.Close()
	var id [16]byte
	legacy := false
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: no meta bucket", ErrNotVault)
		}
		if v := meta.Get(keyVaultID); len(v) == len(id) {
			copy(id[:], v)
		} else {
			legacy = true
		}
		if v := meta.Get(keyWALEpoch); len(v) == 8 {
			d.Epoch = binary.BigEndian.Uint64(v)
		}
		w := meta.Get(keyWALOpen)
		d.WALOpen = len(w) != 1 || w[0] != 0
		return nil
	})
	if err != nil {
		d.FileProblem = err.Error()
		return d, nil
	}
	if !legacy {
		d.VaultID = formatID(id)
	}
	d.diagnoseLog(path, opts.segmentSize, id, legacy)
	return d, nil
}

// diagnoseLog fills in the segments, the frames salvage would replay and
// the damage.
func (d *Diagnosis) diagnoseLog(path string, size int64, id [16]byte, legacy bool) {
	base, issues := checkSegments(path, size, id)
	if !legacy && base > d.Epoch+1 {
		d.Damaged = append(d.Damaged, fmt.Sprintf("the vault file holds epochs up to %d but its log began at epoch %d: writes of epochs %d to %d were checkpointed into a vault file state that is gone (a damaged meta page, or an older copy of the file): they are lost unless a backup has them",
			d.Epoch, base, d.Epoch+1, base-1))
	}
	for i, p := range walPaths(path) {
		sd := SegmentDiagnosis{Path: p}
		for _, is := range issues {
			if is.path == p {
				sd.Problem = is.problem
			}
		}
		f, err := os.Open(p)
		if err != nil {
			d.Segments = append(d.Segments, sd)
			if d.WALOpen {
				d.Damaged = append(d.Damaged, fmt.Sprintf("%s is missing: the writes it held since the last checkpoint are lost", p))
			}
			continue
		}
		fi, _ := f.Stat()
		start := int64(segHeaderSize)
		if legacy {
			start = 0
		}
		sc, err := scanSegment(f, i, p, start, min(size, fi.Size()), d.Epoch)
		f.Close()
		if err != nil {
			sd.Problem = err.Error()
			d.Segments = append(d.Segments, sd)
			continue
		}
		if sd.Problem != "" && d.WALOpen {
			d.Damaged = append(d.Damaged, fmt.Sprintf("%s: %s: what it held beyond what is readable is lost", p, sd.Problem))
		}
		frames := append([]frameRef(nil), sc.strays...)
		if sc.epoch > d.Epoch {
			sd.Epoch = sc.epoch
			frames = append(sc.run, frames...)
		}
		if sc.kind == endTorn && (sc.epoch == 0 || sc.epoch > d.Epoch) {
			what := "a torn last frame (a crash mid-write: never acknowledged)"
			if len(sc.strays) > 0 {
				what = fmt.Sprintf("a damaged frame followed by %d valid frame(s): its writes were acknowledged and are lost", len(sc.strays))
			}
			d.Damaged = append(d.Damaged, fmt.Sprintf("%s offset %d: %s (%d bytes)", p, sc.end, what, sc.torn))
		} else if len(sc.strays) > 0 {
			d.Damaged = append(d.Damaged, fmt.Sprintf("%s offset %d: a zeroed frame header followed by %d valid frame(s): the frames in between are lost", p, sc.end, len(sc.strays)))
		}
		sd.Frames = len(frames)
		sd.Records = countRecords(p, frames)
		d.Frames += sd.Frames
		d.Records += sd.Records
		d.frames = append(d.frames, frames...)
		d.Segments = append(d.Segments, sd)
	}
	// Epochs the frames should cover without a gap, from the vault file's on.
	slices.SortFunc(d.frames, func(a, b frameRef) int {
		return cmp.Or(cmp.Compare(a.epoch, b.epoch), cmp.Compare(a.seg, b.seg), cmp.Compare(a.off, b.off))
	})
	next := d.Epoch + 1
	for _, fr := range d.frames {
		if fr.epoch > next {
			d.Damaged = append(d.Damaged, fmt.Sprintf("epochs %d to %d are in neither segment: their writes are lost", next, fr.epoch-1))
		}
		next = max(next, fr.epoch+1)
	}
}

// countRecords counts the token records in frames of the segment at p.
func countRecords(p string, frames []frameRef) int {
	f, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for _, fr := range frames {
		payload := make([]byte, fr.n)
		if _, err := f.ReadAt(payload, fr.off+frameHeader); err != nil {
			continue
		}
		decodePayload(payload, func(b bucket, _, v []byte) error {
			if b == bTokens && v != nil {
				n++
			}
			return nil
		})
	}
	return n
}

// Salvage writes into the vault file at path every valid frame of its
// log above the epoch it holds (the frames Diagnose counts, in epoch and
// file order, stepping over damage), records the log as closed, and moves
// both segments aside (".damaged-TIME", never deleted), so that the next
// Open starts with a fresh log. It refuses a vault file that fails the
// integrity check: restore a backup first. It returns the diagnosis it
// acted on.
func Salvage(path string, opts Options) (Diagnosis, error) {
	opts = opts.withDefaults()
	d, err := Diagnose(path, opts)
	if err != nil {
		return d, err
	}
	if d.FileProblem != "" {
		return d, fmt.Errorf("salvage: the vault file cannot be used: %s", d.FileProblem)
	}
	db, err := openBolt(path, opts)
	if err != nil {
		return d, err
	}
	s := &Store{db: db, path: path, opts: opts}
	m := newMemtable()
	var last uint64
	segs := walPaths(path)
	for _, fr := range d.frames {
		payload, err := readFrame(segs[fr.seg], fr)
		if err != nil {
			db.Close()
			return d, fmt.Errorf("salvage: %w", err)
		}
		err = decodePayload(payload, func(b bucket, key, v []byte) error {
			m.set(b, key, v)
			return nil
		})
		if err != nil {
			db.Close()
			return d, fmt.Errorf("salvage: frame at %s offset %d: %w", segs[fr.seg], fr.off, err)
		}
		last = max(last, fr.epoch)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketMeta).Get(keyVaultID) == nil {
			id := newID()
			return tx.Bucket(bucketMeta).Put(keyVaultID, id[:])
		}
		return nil
	})
	if err == nil {
		err = s.commitChunks(m.chunks(opts.checkpointChunk), max(d.Epoch, last), false)
	}
	if err == nil {
		d.Relinked, err = relink(db)
	}
	var id [16]byte
	if err == nil {
		err = db.View(func(tx *bbolt.Tx) error {
			copy(id[:], tx.Bucket(bucketMeta).Get(keyVaultID))
			return nil
		})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d, fmt.Errorf("salvage: %w", err)
	}
	suffix := ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	for _, p := range segs {
		if err := os.Rename(p, p+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return d, fmt.Errorf("salvage: move %s aside: %w", p, err)
		}
	}
	if marked, ok, _ := readIDFile(path); !ok || marked != id {
		if ok {
			os.Rename(path+idSuffix, path+idSuffix+suffix)
		}
		if err := writeIDFile(path, id); err != nil {
			return d, err
		}
	}
	return d, nil
}

// relink puts back the fingerprint entry of every record that has a
// fingerprint no entry maps (and says how many it put back). What salvage
// works with can leave a record without its entry: the transaction a
// damaged meta page lost may have held the fingerprint half of records
// whose token half an earlier one committed, and the frames holding both
// may be gone. Such a card would be given a second token by its next
// tokenization; the record is the truth, so its entry is rebuilt from it.
// An entry that maps another token is left alone.
func relink(db *bbolt.DB) (int, error) {
	n := 0
	err := db.Update(func(tx *bbolt.Tx) error {
		toks, fps := tx.Bucket(bucketTokens), tx.Bucket(bucketFingerprints)
		var missing [][2][]byte
		err := toks.ForEach(func(k, v []byte) error {
			rec, err := vault.UnmarshalRecord(string(k), v)
			if err != nil || len(rec.Fingerprint) == 0 || fps.Get(rec.Fingerprint) != nil {
				return nil
			}
			missing = append(missing, [2][]byte{rec.Fingerprint, bytes.Clone(k)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range missing {
			if err := fps.Put(m[0], m[1]); err != nil {
				return err
			}
		}
		n = len(missing)
		return nil
	})
	return n, err
}

// readFrame reads fr's payload from the segment at p.
func readFrame(p string, fr frameRef) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	payload := make([]byte, fr.n)
	if _, err := f.ReadAt(payload, fr.off+frameHeader); err != nil {
		return nil, fmt.Errorf("read frame at %s offset %d: %w", p, fr.off, err)
	}
	return payload, nil
}

// CheckRecords runs bbolt's own consistency check (tx.Check: every page,
// the freelist, key order) on the vault file at path, opened read-only,
// and then calls fn with every record in it, for the caller to decrypt
// (err is set, and rec holds only the token, for a record that does not
// even decode).
// It runs checkFile first, since tx.Check rebuilds the freelist with the
// same walk that panics on a damaged page. No process may have the vault
// open. Records still only in the WAL are not visited: Open replays
// them.
func CheckRecords(path string, fn func(rec vault.Record, err error) error) (int, error) {
	if _, err := checkFile(path); err != nil {
		return 0, err
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: DefaultTimeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return 0, fmt.Errorf("vault file %q is in use (is tok running? stop it first): %w", path, ErrLocked)
	}
	if err != nil {
		return 0, fmt.Errorf("open vault %q: %w", path, err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return &DamageError{File: path, Problem: "bbolt's consistency check: " + errors.Join(errs...).Error()}
		}
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return fmt.Errorf("%w: no tokens bucket", ErrNotVault)
		}
		return b.ForEach(func(k, v []byte) error {
			n++
			rec, err := vault.UnmarshalRecord(string(k), v)
			if err != nil {
				return fn(vault.Record{Token: string(k)}, err)
			}
			return fn(rec, nil)
		})
	})
	return n, err
}
