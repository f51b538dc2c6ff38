package proxy

import (
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
	Event   string    `json:"event"` // login, lookup, reveal, logout
	Client  string    `json:"client,omitempty"`
	Session string    `json:"session,omitempty"`
	Token   string    `json:"token,omitempty"`
	// Egress reveals also name the route, the field and the provider.
	Route    string `json:"route,omitempty"`
	Field    string `json:"field,omitempty"`
	Upstream string `json:"upstream,omitempty"`
	Source   string `json:"source"`
	Outcome  string `json:"outcome"` // ok, or the refusal's error code
}

// auditLog serializes audit lines onto one writer. A nil writer discards.
type auditLog struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

func newAuditLog(w io.Writer, now func() time.Time) *auditLog {
	if w == nil {
		w = io.Discard
	}
	return &auditLog{w: w, now: now}
}

// write appends e as one JSON line. Each line goes out in a single Write, so
// concurrent tok goroutines never interleave. An error means the event was
// not recorded; callers revealing data must then refuse.
func (a *auditLog) write(r *http.Request, e auditEvent) error {
	e.Time = a.now().UTC()
	e.Source = sourceAddr(r)
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.w.Write(b); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
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
