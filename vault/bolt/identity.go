package bolt

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/bbolt"
)

// Vault identity (tok never starts on a
// vault it cannot prove is the one it had).
//
// A vault gets a random 16-byte id when it is created, kept in its meta
// bucket, in a marker file beside it (<db>.id) and in both WAL segments'
// headers. So:
//   - a vault file that is missing, empty or new while the marker, a WAL
//     segment or another trace of an older vault (Options.Traces: the
//     audit log) is beside it is refused: the older vault's tokens would
//     be gone, and its log replayed into a new file. Creating a vault
//     there takes Options.Init, which moves the older files aside, never
//     deletes them and never replays them;
//   - a vault file whose id is not the marker's, or a WAL segment of
//     another vault, is refused: a file was swapped.

var (
	keyVaultID = []byte("vault-id") // meta bucket: the vault's id (16 bytes)
	// keyWALOpen in the meta bucket is 1 from Open's replay until Close's
	// final checkpoint, 0 after it: while it is 1 the WAL may hold
	// acknowledged writes bbolt does not, so a segment that is missing,
	// short or without its header is refused rather than recreated.
	keyWALOpen = []byte("wal-open")
)

// idSuffix names the marker file beside the vault.
const idSuffix = ".id"

// idMarker is the marker file's content before the hex id.
const idMarker = "tok vault id "

// formatID returns id as an operator reads it.
func formatID(id [16]byte) string { return hex.EncodeToString(id[:]) }

// newID returns a random vault id.
func newID() [16]byte {
	var id [16]byte
	rand.Read(id[:])
	return id
}

// readIDFile reads the marker beside the vault at path; ok is false if it
// does not exist.
func readIDFile(path string) (id [16]byte, ok bool, err error) {
	b, err := os.ReadFile(path + idSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, fmt.Errorf("read vault id marker: %w", err)
	}
	s, found := strings.CutPrefix(strings.TrimSpace(string(b)), idMarker)
	raw, herr := hex.DecodeString(s)
	if !found || herr != nil || len(raw) != len(id) {
		return id, true, fmt.Errorf("%w: %s does not hold a vault id (%q)", ErrForeignVault, path+idSuffix, truncate(string(b), 60))
	}
	copy(id[:], raw)
	return id, true, nil
}

// writeIDFile writes the marker beside the vault at path, durably.
func writeIDFile(path string, id [16]byte) error {
	p := path + idSuffix
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write vault id marker: %w", err)
	}
	_, err = f.WriteString(idMarker + formatID(id) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil {
		err = syncDir(filepath.Dir(p))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write vault id marker: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// traces returns the files beside the vault at path that an older vault
// left (its WAL segments, its id marker) and those of extra (other files
// only an older vault writes, such as the audit log) that exist and are
// not empty.
func traces(path string, extra []string) []string {
	var out []string
	w := walPaths(path)
	for _, p := range []string{w[0], w[1], path + idSuffix} {
		if _, err := os.Lstat(p); err == nil {
			out = append(out, p)
		}
	}
	for _, p := range extra {
		if fi, err := os.Stat(p); err == nil && fi.Size() > 0 {
			out = append(out, p)
		}
	}
	return out
}

// moveAside renames the older vault's own files among found (WAL segments
// and id marker; not the extra traces, which the caller owns) with a
// suffix naming the time, so that a new vault never replays them and
// nothing is deleted. It returns the new names.
func moveAside(path string, found []string) ([]string, error) {
	suffix := ".orphaned-" + time.Now().UTC().Format("20060102T150405Z")
	w := walPaths(path)
	var moved []string
	for _, p := range found {
		if p != w[0] && p != w[1] && p != path+idSuffix {
			continue
		}
		if err := os.Rename(p, p+suffix); err != nil {
			return moved, fmt.Errorf("move %s aside: %w", p, err)
		}
		moved = append(moved, p+suffix)
	}
	if len(moved) > 0 {
		if err := syncDir(filepath.Dir(path)); err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// missingError is the refusal to create a vault where an older one left
// traces.
func missingError(path, state string, found []string) error {
	return fmt.Errorf("%w: the vault file %s is %s, but an older vault left %s beside it: its tokens are not in this file, and tok will not start an empty vault in their place. Put the vault file back (from a backup: see README, Operations: restore), or, to start a NEW empty vault and give up the old tokens, run tok once with -init-vault (the old files are moved aside, not deleted)",
		ErrVaultMissing, path, state, strings.Join(found, ", "))
}

// identify reads the vault id and the WAL state from the meta bucket of
// an existing vault, giving a vault from before vault ids existed its id.
func identify(tx *bbolt.Tx) (id [16]byte, legacy, walOpen bool, err error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keyVaultID)
	if len(v) == 0 {
		id, legacy = newID(), true
		if err := meta.Put(keyVaultID, bytes.Clone(id[:])); err != nil {
			return id, legacy, true, err
		}
		return id, legacy, true, nil // unknown: as if open
	}
	if len(v) != len(id) {
		return id, false, true, fmt.Errorf("%w: the vault id in the meta bucket is %d bytes", ErrNotVault, len(v))
	}
	copy(id[:], v)
	w := meta.Get(keyWALOpen)
	return id, false, len(w) != 1 || w[0] != 0, nil
}

// putWALOpen records whether the WAL may hold writes bbolt does not.
func putWALOpen(tx *bbolt.Tx, open bool) error {
	v := []byte{0}
	if open {
		v[0] = 1
	}
	return tx.Bucket(bucketMeta).Put(keyWALOpen, v)
}
