package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// auditEvent is one line of the audit log (ARCHITECTURE invariant 4): who,
// what token, when, from where, and the outcome. It never holds a PAN, a
// secret or a session cookie; Session is the session's public id.
type auditEvent struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // login, lookup, reveal, logout, delete, handle, rekey (Token: its cursor)
	Client  string    `json:"client,omitempty"`
	Session string    `json:"session,omitempty"`
	Token   string    `json:"token,omitempty"`
	// Count is how many card numbers a /handle call carried (never the
	// numbers themselves).
	Count int `json:"count,omitempty"`
	// Egress reveals also name the route, the field and the provider.
	Route    string `json:"route,omitempty"`
	Field    string `json:"field,omitempty"`
	Upstream string `json:"upstream,omitempty"`
	Source   string `json:"source"`
	Outcome  string `json:"outcome"` // ok, or the refusal's error code
	// Seq numbers the lines of this process's chain; Prev is the SHA-256
	// of the previous line (as written, without its newline), so editing,
	// reordering or deleting a line breaks the chain (issue 6).
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
}

// auditLog serializes audit lines onto one writer, each chained to the
// one before by its hash. A nil writer discards.
type auditLog struct {
	mu   sync.Mutex
	w    io.Writer
	now  func() time.Time
	prev [sha256.Size]byte // hash of the last line written (zero: none yet)
	seq  uint64
}

// newAuditLog continues the chain after last, the last line already in the
// log (nil for a new log).
func newAuditLog(w io.Writer, now func() time.Time, last []byte) *auditLog {
	if w == nil {
		w = io.Discard
	}
	a := &auditLog{w: w, now: now}
	if len(last) > 0 {
		a.prev = sha256.Sum256(last)
		var e auditEvent
		if json.Unmarshal(last, &e) == nil {
			a.seq = e.Seq
		}
	}
	return a
}

// write appends e as one JSON line. Each line goes out in a single Write, so
// concurrent tok goroutines never interleave. An error means the event was
// not recorded; callers revealing data must then refuse.
func (a *auditLog) write(r *http.Request, e auditEvent) error {
	e.Time = a.now().UTC()
	e.Source = sourceAddr(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	e.Seq = a.seq + 1
	e.Prev = hex.EncodeToString(a.prev[:])
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := a.w.Write(append(b, '\n')); err != nil {
		// The chain does not advance: the next line links to the last one
		// that was written.
		return fmt.Errorf("audit: %w", err)
	}
	a.prev, a.seq = sha256.Sum256(b), e.Seq
	return nil
}

// sourceAddr is the peer's IP. X-Forwarded-For is not trusted: any client
// can write it.
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
