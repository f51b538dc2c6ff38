package proxy

import (
	"bufio"
	"bytes"
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

// AuditBreak says where an audit log's hash chain is broken.
type AuditBreak struct {
	Line   int    // 1-based line number of the first line that does not follow
	Reason string // what is wrong with it
}

func (b *AuditBreak) Error() string {
	return fmt.Sprintf("audit log broken at line %d: %s", b.Line, b.Reason)
}

// VerifyAudit reads an audit log and checks its hash chain: every line
// must be JSON whose prev is the SHA-256 of the line before it and whose
// seq is one more (a restarted tok continues both). It returns the number
// of lines verified and, if the chain breaks, an *AuditBreak naming the
// first line that does not follow: an edited, inserted, reordered or
// deleted line. Lines cut from the end leave a valid shorter chain: ship
// the log off the host (or keep its last hash elsewhere) to detect that.
func VerifyAudit(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxAuditLine)
	var prev [sha256.Size]byte
	var seq uint64
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		var e auditEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return n - 1, &AuditBreak{n, "not a JSON audit line"}
		}
		switch {
		case e.Prev != hex.EncodeToString(prev[:]):
			return n - 1, &AuditBreak{n, "prev does not match the hash of the line before"}
		case e.Seq != seq+1:
			return n - 1, &AuditBreak{n, fmt.Sprintf("seq %d follows %d", e.Seq, seq)}
		}
		prev, seq = sha256.Sum256(line), e.Seq
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("read audit log: %w", err)
	}
	return n, nil
}

// LastAuditLine returns the last line of the audit log at path (without
// its newline), or nil if the file is missing or empty, so a restarted tok
// continues the hash chain.
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
