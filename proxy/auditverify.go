package proxy

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
	"os"
)

// maxAuditLine bounds one audit line when reading a log back.
const maxAuditLine = 64 << 10

// AuditBreak says where an audit log's chain is broken.
type AuditBreak struct {
	Line   int    // 1-based line number of the first line that does not follow
	Reason string // what is wrong with it
}

func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit log broken at line %d: %s", b.Line, b.Reason)
}

// AuditReport is what [VerifyAudit] found in a log that verifies.
type AuditReport struct {
	Lines   int    // lines verified
	Unkeyed int    // of them, lines of the old unkeyed chain (at the start of the log)
	LastSeq uint64 // seq of the last line: the chain's head
	Head    string // hex link of the last line (its mac): compare with a copy kept off the host
}

// ErrAuditKeyNeeded: the log has keyed lines and no key was given.
var ErrAuditKeyNeeded = errors.New("the audit log is keyed: verifying it needs the keyring (the audit key is derived from it)")

// VerifyAudit reads an audit log and checks its chain: every line must be
// JSON whose seq is one more than the line before's and whose prev links
// to it (see auditEvent), and every keyed line's mac must be the
// HMAC-SHA256 under key of the line without it. It returns what it
// verified and, if the chain breaks, an *AuditBreak naming the first line
// that does not follow: an edited, inserted, reordered or deleted line.
//
// Lines written before the chain was keyed (issue 19) carry no mac: they
// are accepted only at the start of the log and only with allowUnkeyed,
// since whoever can write the log could have rewritten them; an unkeyed
// line after a keyed one is a break. A nil key with keyed lines gives
// [ErrAuditKeyNeeded]. Lines cut from the end leave a valid shorter
// chain: compare LastSeq with the tok_audit_seq metric's history, or Head
// with a copy kept elsewhere, to detect that.
func VerifyAudit(r io.Reader, key []byte, allowUnkeyed bool) (AuditReport, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxAuditLine)
	var rep AuditReport
	var prev [sha256.Size]byte
	keyed := false
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return rep, &AuditBreak{n, "not a JSON audit line"}
		}
		body, mac, hasMac := splitMac(line)
		switch {
		case e.Mac != "" && !hasMac:
			return rep, &AuditBreak{n, "mac is not the line's last field"}
		case e.Mac == "" && keyed:
			return rep, &AuditBreak{n, "unkeyed line after keyed lines (forged, or edited to drop its mac)"}
		case e.Mac == "" && !allowUnkeyed:
			return rep, &AuditBreak{n, "unkeyed line (written before tok keyed its audit chain, or forged): accept unkeyed lines at the start of the log with -allow-unkeyed"}
		case hasMac && key == nil:
			return rep, ErrAuditKeyNeeded
		case hasMac && !hmac.Equal(mac, lineMac(key, body)):
			return rep, &AuditBreak{n, "mac does not match the line (edited, forged, or another vault's keyring)"}
		case e.Prev != hex.EncodeToString(prev[:]):
			return rep, &AuditBreak{n, "prev does not link to the line before"}
		case e.Seq != rep.LastSeq+1:
			return rep, &AuditBreak{n, fmt.Sprintf("seq %d follows %d", e.Seq, rep.LastSeq)}
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
	if n > 0 {
		rep.Head = hex.EncodeToString(prev[:])
	}
	return rep, nil
}

// LastAuditLine returns the last line of the audit log at path (without
// its newline), or nil if the file is missing or empty, so a restarted tok
// continues the chain.
func LastAuditLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	size := st.Size()
	off := max(0, size-maxAuditLine)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	buf = bytes.TrimRight(buf, "\n")
	if len(buf) == 0 {
		return nil, nil
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		return buf[i+1:], nil
	} else if off > 0 {
		return nil, fmt.Errorf("read audit log: last line longer than %d bytes", maxAuditLine)
	}
	return buf, nil
}
