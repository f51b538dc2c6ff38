package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// maxLine bounds one audit line when reading a log back.
const maxLine = 64 << 10

// Break says where an audit log's chain is broken.
type Break struct {
	Line   int    // 1-based line number of the first line that does not follow
	Reason string // what is wrong with it
}

func (b *Break) Error() string {
	return fmt.Sprintf("audit log broken at line %d: %s", b.Line, b.Reason)
}

// Report is what [Verify] found in a log that verifies.
type Report struct {
	Lines   int    // lines verified (gap lines and the torn lines they seal included)
	Unkeyed int    // of them, lines of the old unkeyed chain (at the start of the log)
	LastSeq uint64 // seq of the last line: the chain's head
	Head    string // hex link of the last line (its mac): compare with a copy kept off the host
	// Gaps are the outages of the log's disk that tok sealed.
	Gaps []Outage
	// TornTail is the number of bytes of lines at the end of the log that
	// are not audit lines: a write cut short (a full disk, a crash) that
	// no gap line seals yet. tok seals it at its next start, or its next
	// write once the disk takes one.
	TornTail int64
}

// Outage is one outage of the audit log's disk, sealed by a gap line.
type Outage struct {
	Line      int       // line number of the gap line
	TornLines int       // lines of partly written events before it
	TornBytes int64     // their bytes (without the newlines ending them)
	Lost      int       // events tok failed to write (0 if found at start: unknown)
	Since     time.Time // when the outage began (or, found at start, the log's last write)
	Cause     string    // the write error, if tok saw one
}

// ErrKeyNeeded: the log has keyed lines and no key was given.
var ErrKeyNeeded = errors.New("the audit log is keyed: verifying it needs the keyring (the audit key is derived from it)")

// Verify reads an audit log and checks its chain: every line must be
// JSON whose seq is one more than the line before's and whose prev links
// to it (see Event), and every keyed line's mac must be the
// HMAC-SHA256 under key of the line without it. It returns what it
// verified and, if the chain breaks, an *Break naming the first line
// that does not follow: an edited, inserted, reordered or deleted line.
//
// Lines that do not follow are accepted in one case only: they
// are the torn region of an outage, and the next line that follows is a
// keyed gap line whose torn_bytes and torn_sha256 match them exactly (see
// Gap); the outage is reported in Gaps. Torn lines (not JSON) at the
// very end of the log are reported in TornTail, not as a break.
//
// Lines written before the chain was keyed (older logs) carry no mac: they
// are accepted only at the start of the log and only with allowUnkeyed,
// since whoever can write the log could have rewritten them; an unkeyed
// line after a keyed one is a break. A nil key with keyed lines gives
// [ErrKeyNeeded]. Lines cut from the end leave a valid shorter
// chain: compare LastSeq with the tok_audit_seq metric's history, or Head
// with a copy kept elsewhere, to detect that.
func Verify(r io.Reader, key []byte, allowUnkeyed bool) (Report, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	sc.Split(scanLines)
	var rep Report
	var prev [sha256.Size]byte
	var junk junkLines
	junkJSON := 0 // the first torn line that is JSON (not a cut write), 0 if none
	keyed := false
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		var e Event
		reason := ""
		hasMac := false
		if err := json.Unmarshal(line, &e); err != nil {
			reason = "not a JSON audit line"
		} else {
			var body, mac []byte
			body, mac, hasMac = splitMac(line)
			switch {
			case e.Mac != "" && !hasMac:
				reason = "mac is not the line's last field"
			case e.Mac == "" && keyed:
				reason = "unkeyed line after keyed lines (forged, or edited to drop its mac)"
			case e.Mac == "" && !allowUnkeyed:
				reason = "unkeyed line (written before tok keyed its audit chain, or forged): accept unkeyed lines at the start of the log with -allow-unkeyed"
			case hasMac && key == nil:
				return rep, ErrKeyNeeded
			case hasMac && !hmac.Equal(mac, lineMac(key, body)):
				reason = "mac does not match the line (edited, forged, or another vault's keyring)"
			case e.Prev != hex.EncodeToString(prev[:]):
				reason = "prev does not link to the line before"
			case e.Seq != rep.LastSeq+1:
				reason = fmt.Sprintf("seq %d follows %d", e.Seq, rep.LastSeq)
			}
			if reason != "" && junkJSON == 0 {
				junkJSON = n
			}
		}
		if reason != "" {
			junk.add(line, n, reason)
			continue
		}
		if junk.first != 0 || e.Event == "gap" {
			switch {
			case e.Event != "gap" || e.Gap == nil || !hasMac:
				return rep, &Break{junk.first, junk.reason}
			case !junk.sealedBy(e.Gap) && junk.first != 0:
				return rep, &Break{junk.first, junk.reason + " (the gap line after it does not account for it)"}
			case !junk.sealedBy(e.Gap):
				return rep, &Break{n, "gap line accounts for torn bytes that are not before it"}
			}
			torn := 0
			if junk.first != 0 {
				torn = n - junk.first
			}
			rep.Gaps = append(rep.Gaps, Outage{Line: n, TornLines: torn, TornBytes: e.Gap.TornBytes,
				Lost: e.Gap.Lost, Since: e.Gap.Since, Cause: e.Gap.Cause})
			junk, junkJSON = junkLines{}, 0
		}
		keyed = keyed || hasMac
		if !hasMac {
			rep.Unkeyed++
		}
		prev, rep.LastSeq, rep.Lines = chainLink(line), e.Seq, n
	}
	if err := sc.Err(); err != nil {
		return rep, fmt.Errorf("read audit log: %w", err)
	}
	if junk.first != 0 {
		if junkJSON != 0 {
			// A whole line that does not follow is no cut write.
			return rep, &Break{junk.first, junk.reason}
		}
		rep.TornTail = junk.n
	}
	if rep.LastSeq > 0 || rep.Lines > 0 {
		rep.Head = hex.EncodeToString(prev[:])
	}
	return rep, nil
}

// scanLines is bufio.ScanLines without its dropping of a final \r: a torn
// line's bytes are hashed as written.
func scanLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if atEOF && len(data) == 0 {
		return 0, nil, nil
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// LastLine returns the last whole audit line of the log at path
// (without its newline), or nil if the file is missing or holds none; see
// [ReadTail], which also returns what follows it.
func LastLine(path string) ([]byte, error) {
	tail, err := ReadTail(path)
	return tail.Last, err
}
