package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxTail bounds how much of the end of an audit log is read at start
// to find its last line and what a cut write left after it.
const maxTail = 1 << 20

// Tail is the end of an audit log as a restarted tok finds it: the
// last whole line, so the keyed chain continues, and the torn region after
// it, which the first line tok writes seals with a gap line.
type Tail struct {
	// Last is the last audit line (without its newline); nil if none.
	Last []byte
	// Unterminated: Last lacks its newline (a write cut just before it).
	Unterminated bool
	// Torn is what follows Last: lines that are not audit lines, left by
	// writes cut short (a full disk, a crash). Nil if none.
	Torn []byte
	// Since is the log file's last modification: when Torn was written.
	Since time.Time
}

// ReadTail reads the end of the audit log at path; a missing or empty
// file gives the zero Tail. Lines at the end that are not JSON audit
// lines (a write cut short never is) are the torn region; the last line
// before them that is, whatever its chain says, is Last: an edited line
// is left for `tok audit verify` to find, never sealed as torn.
func ReadTail(path string) (Tail, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Tail{}, nil
	}
	if err != nil {
		return Tail{}, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	return readTail(f)
}

func readTail(f *os.File) (Tail, error) {
	st, err := f.Stat()
	if err != nil {
		return Tail{}, fmt.Errorf("read audit log: %w", err)
	}
	size := st.Size()
	off := max(0, size-maxTail)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return Tail{}, fmt.Errorf("read audit log: %w", err)
	}
	tail := Tail{Since: st.ModTime()}
	// Walk back over the lines; end is where the torn region starts.
	end := len(buf)
	for end > 0 {
		stop := end
		if buf[stop-1] == '\n' {
			stop--
		}
		start := bytes.LastIndexByte(buf[:stop], '\n') + 1
		if start == 0 && off > 0 {
			return Tail{}, fmt.Errorf("read audit log: no audit line in its last %d bytes", maxTail)
		}
		line := buf[start:stop]
		if isLine(line) {
			tail.Last = bytes.Clone(line)
			tail.Unterminated = stop == len(buf)
			break
		}
		end = start
	}
	if end < len(buf) {
		tail.Torn = bytes.Clone(buf[end:])
	}
	return tail, nil
}

// File is an audit log opened for appending by one tok: [OpenFile]
// holds an exclusive lock on it until Close, so a second tok pointed at
// the same file refuses to start instead of forking its chain.
type File struct {
	*os.File
	Tail Tail
}

// ErrLocked: another process holds the audit log.
var ErrLocked = errors.New("audit log in use by another process")

// OpenFile opens (creating, mode 0600) the audit log at path for
// appending, takes an exclusive lock on it (flock; [ErrLocked] if
// another tok holds it) and reads its tail.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("audit log %s: %w (another tok writing to it? each tok needs an audit log of its own: two would fork its chain)", path, err)
		}
		return nil, fmt.Errorf("lock audit log %s: %w", path, err)
	}
	tail, err := readTail(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &File{File: f, Tail: tail}, nil
}
