package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/vault"
)

// AuditKeyPurpose is what the audit chain's key is derived for from the
// keyring ([vault.Keyring.DeriveKey]).
const AuditKeyPurpose = "audit chain v1"

// AuditKey returns the key of the audit log's chain for keys: derived
// from the fingerprint key, so it is stable across rotations and unknown
// to whoever can write the log but not read the keyring.
func AuditKey(keys *vault.Keyring) []byte { return keys.DeriveKey(AuditKeyPurpose) }

// auditEvent is one line of the audit log (ARCHITECTURE invariant 4): who,
// what token, when, from where, and the outcome. It never holds a PAN, a
// secret or a session cookie; Session is the session's public id.
type auditEvent struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // login, lookup, reveal, logout, delete, handle, rekey (Token: its cursor), backup, keys, keys_retire, pprof
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
	// BoundTo is the card token a bound value (a CVC) was revealed with.
	BoundTo string `json:"bound_to,omitempty"`
	// Endpoint is "METHOD /path" of an admin call (issue 19).
	Endpoint string `json:"endpoint,omitempty"`
	Source   string `json:"source"`
	Outcome  string `json:"outcome"` // ok, or the refusal's error code
	// Seq numbers the lines of the chain; Prev links to the line before:
	// its Mac if it has one, else the SHA-256 of it as written (the
	// unkeyed chain of issue 6). Mac, always the last field, is
	// HMAC-SHA256 under the audit key ([AuditKey]) of the line as it reads
	// without the Mac field (issue 19): whoever can edit the log but not
	// read the keyring cannot recompute it, so editing, inserting,
	// reordering or deleting a line breaks the chain for good.
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	Mac  string `json:"mac,omitempty"`
}

// macSuffixLen is the length of `,"mac":"<64 hex>"}` ending a keyed line.
const macSuffixLen = len(`,"mac":""}`) + 2*sha256.Size

// splitMac returns the body a keyed line's Mac was computed over (the
// line with its Mac field cut) and the Mac, or ok false if line does not
// end in a Mac field.
func splitMac(line []byte) (body, mac []byte, ok bool) {
	if len(line) < macSuffixLen+1 {
		return nil, nil, false
	}
	cut := len(line) - macSuffixLen
	suffix := line[cut:]
	if !bytes.HasPrefix(suffix, []byte(`,"mac":"`)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return nil, nil, false
	}
	mac, err := hex.DecodeString(string(suffix[len(`,"mac":"`) : len(suffix)-2]))
	if err != nil {
		return nil, nil, false
	}
	body = append(bytes.Clone(line[:cut]), '}')
	return body, mac, true
}

// lineMac is the Mac of a keyed line's body.
func lineMac(key, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return m.Sum(nil)
}

// chainLink is what the line after line puts in Prev: line's Mac if it
// has one, else its SHA-256.
func chainLink(line []byte) [sha256.Size]byte {
	var link [sha256.Size]byte
	if _, mac, ok := splitMac(line); ok {
		copy(link[:], mac)
		return link
	}
	return sha256.Sum256(line)
}

// auditLog serializes audit lines onto one writer, each chained to the
// one before and keyed with the audit key. A nil writer discards.
type auditLog struct {
	mu   sync.Mutex
	w    io.Writer
	now  func() time.Time
	key  []byte
	prev [sha256.Size]byte // link to the last line written (zero: none yet)
	seq  uint64
	// head exports the chain's last seq (tok_audit_seq), so a monitoring
	// system that keeps history notices a log cut short.
	head prometheus.Gauge
}

// newAuditLog continues the chain after last, the last line already in the
// log (nil for a new log), keying new lines with key.
func newAuditLog(w io.Writer, now func() time.Time, last, key []byte) *auditLog {
	if w == nil {
		w = io.Discard
	}
	a := &auditLog{w: w, now: now, key: key, head: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tok_audit_seq",
		Help: "Seq of the last line written to the audit log's chain. A log whose last seq is below a value this metric once had was cut short.",
	})}
	if len(last) > 0 {
		a.prev = chainLink(last)
		var e auditEvent
		if json.Unmarshal(last, &e) == nil {
			a.seq = e.Seq
		}
	}
	a.head.Set(float64(a.seq))
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
	e.Mac = ""
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	mac := lineMac(a.key, b)
	line := make([]byte, 0, len(b)+macSuffixLen+1)
	line = append(line, b[:len(b)-1]...)
	line = append(line, `,"mac":"`...)
	line = hex.AppendEncode(line, mac)
	line = append(line, "\"}\n"...)
	if _, err := a.w.Write(line); err != nil {
		// The chain does not advance: the next line links to the last one
		// that was written.
		return fmt.Errorf("audit: %w", err)
	}
	copy(a.prev[:], mac)
	a.seq = e.Seq
	a.head.Set(float64(a.seq))
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
