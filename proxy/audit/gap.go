package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash"
	"os"
	"time"
)

// Gap is what a "gap" line of the audit log records: an
// outage of the log's disk (a full disk, a crash in the middle of a
// write) lost Lost events from Since on, and left TornBytes bytes of
// partly written lines, whose SHA-256 is TornSHA256, between the line
// before the gap and the gap line. `tok audit verify` accepts those bytes
// only when they match, so the outage reads as an outage, while an edited
// line still breaks the chain: the gap line is keyed like every other.
//
// The torn bytes are the lines between the two, joined by newlines (the
// region's raw bytes without its final newline). Lost counts events this
// process failed to write; a gap sealed at start, over a tail a crashed
// tok left, counts none (they were never known) and gives as Since the
// log file's last modification time.
type Gap struct {
	Since      time.Time `json:"since"`
	Lost       int       `json:"lost"`
	TornBytes  int64     `json:"torn_bytes"`
	TornSHA256 string    `json:"torn_sha256,omitempty"`
	Cause      string    `json:"cause,omitempty"` // the write error, e.g. "no space left on device"
}

// tornRegion accumulates what failed writes left since the last line.
// Bytes are hashed as they come, never kept: the final newline of the
// region is held back (pendingNL), since the gap's hash leaves it out.
type tornRegion struct {
	h         hash.Hash // nil until bytes are added
	n         int64     // bytes hashed
	pendingNL bool
	lost      int
	since     time.Time
	cause     string
}

// has reports whether any torn bytes are in the file.
func (g *tornRegion) has() bool { return g.n > 0 || g.pendingNL }

// pending reports whether a gap line is due.
func (g *tornRegion) pending() bool { return g.has() || g.lost > 0 }

// add records b, written to the file at at by a write that failed.
func (g *tornRegion) add(b []byte, at time.Time) {
	if g.since.IsZero() {
		g.since = at
	}
	if len(b) == 0 {
		return
	}
	if g.h == nil {
		g.h = sha256.New()
	}
	if g.pendingNL {
		g.h.Write([]byte{'\n'})
		g.n++
	}
	g.pendingNL = b[len(b)-1] == '\n'
	if g.pendingNL {
		b = b[:len(b)-1]
	}
	g.h.Write(b)
	g.n += int64(len(b))
}

// fail records a failed write at at.
func (g *tornRegion) fail(at time.Time, err error) {
	if g.since.IsZero() {
		g.since = at
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the errno, not the path
	}
	if err != nil && g.cause == "" {
		g.cause = err.Error()
		if len(g.cause) > 200 {
			g.cause = g.cause[:200]
		}
	}
}

// gap is the record that seals g.
func (g *tornRegion) gap() Gap {
	out := Gap{Since: g.since.UTC(), Lost: g.lost, TornBytes: g.n, Cause: g.cause}
	if g.has() {
		if g.h == nil {
			g.h = sha256.New()
		}
		out.TornSHA256 = hex.EncodeToString(g.h.Sum(nil))
	}
	return out
}

// junkLines accumulates, in Verify, lines that do not follow the
// chain, until a gap line accounts for them.
type junkLines struct {
	first  int    // line number of the first, 0 if none
	reason string // why the first does not follow
	h      hash.Hash
	n      int64
}

func (j *junkLines) add(line []byte, n int, reason string) {
	if j.first == 0 {
		j.first, j.reason, j.h = n, reason, sha256.New()
	} else {
		j.h.Write([]byte{'\n'})
		j.n++
	}
	j.h.Write(line)
	j.n += int64(len(line))
}

// sealedBy reports whether gap accounts for exactly these lines.
func (j *junkLines) sealedBy(g *Gap) bool {
	if j.first == 0 {
		return g.TornBytes == 0
	}
	return g.TornBytes == j.n && g.TornSHA256 == hex.EncodeToString(j.h.Sum(nil))
}

// isLine reports whether line is a JSON audit line (whatever its
// chain says): a write cut short never is, since it lacks at least the
// closing brace.
func isLine(line []byte) bool {
	var e Event
	return json.Unmarshal(line, &e) == nil
}
