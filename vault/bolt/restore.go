package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// RestoreReport says what [Restore] did.
type RestoreReport struct {
	VaultID    string   // the restored vault's id
	Records    int      // records in the backup
	MovedAside []string // the files it replaced, renamed aside
	// OtherVault is the id of the vault that was in place (its marker),
	// when the backup is of another vault; "" otherwise.
	OtherVault string
	// KeptLog: the vault's write-ahead log was left in place, to be
	// replayed onto the backup at the next start (see Restore).
	KeptLog bool
}

// Restore puts the backup file (a snapshot [Store.Backup] wrote) in place
// of the vault at path, which no process may have open. It checks the
// backup (see checkFile), copies it beside path and syncs it, moves the
// vault file and its id marker aside (renamed with a ".replaced-TIME"
// suffix, never deleted) and renames the copy into place.
//
// The vault's write-ahead log holds the writes acknowledged since its last
// checkpoint, which may be newer than the backup. If both segments are
// this vault's and discardLog is false, they stay, and the next Open
// replays them onto the backup: every write since the backup comes back
// if the log reaches back to it, and otherwise Open refuses with the gap,
// for `tok vault recover -salvage` to apply what the log has. Else (or
// with discardLog) they are moved aside too, and the vault starts from the
// backup alone with a fresh log: writes acknowledged after the backup are
// not in it.
func Restore(backup, path string, discardLog bool) (RestoreReport, error) {
	var rep RestoreReport
	if _, err := checkFile(backup); err != nil {
		return rep, fmt.Errorf("restore: the backup: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	tmp := path + ".restoring"
	if err := copySynced(backup, tmp); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: DefaultTimeout, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return rep, fmt.Errorf("restore: open the backup: %w", err)
	}
	var id [16]byte
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil || tx.Bucket(bucketTokens) == nil {
			return fmt.Errorf("%w: the backup holds no vault", ErrNotVault)
		}
		var err error
		if id, _, _, err = identify(tx); err != nil {
			return err
		}
		rep.Records = tx.Bucket(bucketTokens).Stats().KeyN
		if !discardLog {
			var epoch uint64
			if v := meta.Get(keyWALEpoch); len(v) == 8 {
				epoch = binary.BigEndian.Uint64(v)
			}
			rep.KeptLog = logReaches(path, id, epoch)
		}
		return putWALOpen(tx, rep.KeptLog)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	rep.VaultID = formatID(id)
	if marked, ok, err := readIDFile(path); err == nil && ok && marked != id {
		rep.OtherVault = formatID(marked)
	}
	// Take the vault file's lock while moving it: no tok may run on it.
	if _, err := os.Stat(path); err == nil {
		cur, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: DefaultTimeout, ReadOnly: true})
		if errors.Is(err, berrors.ErrTimeout) {
			return rep, fmt.Errorf("restore: %s is in use: stop tok first: %w", path, ErrLocked)
		}
		if err == nil {
			cur.Close()
		}
	}
	suffix := ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
	w := walPaths(path)
	move := []string{path, path + idSuffix}
	if !rep.KeptLog {
		move = append(move, w[0], w[1])
	}
	for _, p := range move {
		if err := os.Rename(p, p+suffix); err == nil {
			rep.MovedAside = append(rep.MovedAside, p+suffix)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return rep, fmt.Errorf("restore: move %s aside: %w", p, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	if err := writeIDFile(path, id); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	return rep, nil
}

// copySynced copies src to a new file dst (mode 0600) and syncs it.
func copySynced(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// logReaches reports whether the WAL beside path is this vault's (id) and
// has something to replay onto a vault file holding epochs up to epoch:
// it reaches back to it, or holds frames above it (then Open refuses the
// gap and tok vault recover -salvage applies them). An empty log that
// began after the backup is of no use to it.
func logReaches(path string, id [16]byte, epoch uint64) bool {
	base, issues := checkSegments(path, defaultSegmentSize, id)
	if len(issues) > 0 {
		return false
	}
	if base <= epoch+1 {
		return true
	}
	for i, p := range walPaths(path) {
		f, err := os.Open(p)
		if err != nil {
			return false
		}
		sc, err := scanSegment(f, i, p, segHeaderSize, defaultSegmentSize, epoch)
		f.Close()
		if err == nil && (sc.epoch > epoch || len(sc.strays) > 0) {
			return true
		}
	}
	return false
}
