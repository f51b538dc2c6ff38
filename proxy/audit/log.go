package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync/atomic"
	"time"

	"github.com/tokproxy/tok/vault"
)

// KeyPurpose is what the audit chain's key is derived for from the
// keyring ([vault.Keyring.DeriveKey]).
const KeyPurpose = "audit chain v1"

// Key returns the key of the audit log's chain for keys: derived
// from the fingerprint key, so it is stable across rotations and unknown
// to whoever can write the log but not read the keyring.
func Key(keys *vault.Keyring) []byte { return keys.DeriveKey(KeyPurpose) }

// Event is one line of the audit log: every detokenization, login attempt
// and admin action is recorded with who, what token, when, from where, and
// the outcome. It never holds a PAN, a
// secret or a session cookie; Session is the session's public id.
type Event struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // login, lookup, reveal, logout, delete, handle, rekey (Token: its cursor), backup, keys, keys_retire, pprof, gap, import, export
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
	// Endpoint is "METHOD /path" of an admin call.
	Endpoint string `json:"endpoint,omitempty"`
	// File is the file a tok import read or a tok export wrote, and
	// Recipient the SHA-256 of the public key an export was sealed to.
	File      string `json:"file,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// Gap, on a "gap" line, accounts for what an outage of the log's
	// disk left: see Gap.
	Gap *Gap `json:"gap,omitempty"`
	// Source is the caller's address (the peer's IP, never a header the
	// client wrote); the caller of [Log.Write] sets it.
	Source  string `json:"source"`
	Outcome string `json:"outcome"` // ok, or the refusal's error code
	// Seq numbers the lines of the chain; Prev links to the line before:
	// its Mac if it has one, else the SHA-256 of it as written (the
	// unkeyed chain older logs start with). Mac, always the last field, is
	// HMAC-SHA256 under the audit key ([Key]) of the line as it reads
	// without the Mac field: whoever can edit the log but not
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

// Log serializes audit lines onto one writer, each chained to the
// one before and keyed with the audit key. A nil writer discards.
//
// A write that fails (a full disk) leaves the chain where it was, and may
// leave part of its line in the file: that torn region, and the count of
// events lost, are sealed by a chained "gap" line before the next line is
// written (see Gap), so a disk outage reads as an outage in
// `tok audit verify`, never as a broken chain.
type Log struct {
	// slot is held (filled) while a line is written; it serializes
	// writers like a mutex, but a writer can give up waiting for it.
	slot chan struct{}
	w    io.Writer
	now  func() time.Time
	// timeout bounds how long write waits for the file (a stalled disk
	// blocks write(2)); zero waits as long as it takes.
	timeout time.Duration
	// writing is when the write in progress began (UnixNano), 0 if none:
	// /readyz reports a write stuck for longer than timeout.
	writing atomic.Int64
	// dropped counts events that gave up waiting for their turn (the
	// write before them was stuck): the next gap line counts them lost.
	dropped atomic.Int64

	// Owned by the holder of slot.
	prev [sha256.Size]byte // link to the last line written (zero: none yet)
	seq  uint64
	// mac is HMAC-SHA256 under the audit key, Reset for each line:
	// keying a new one would cost every line two more SHA-256 blocks.
	mac    hash.Hash
	endsNL bool       // the file ends with a newline (or is empty)
	torn   tornRegion // what failed writes left behind since the last line
	// head is the chain's last seq, readable without the slot (see
	// [Log.Seq]).
	head atomic.Uint64
}

// Options tunes a [Log]. The zero value is usable.
type Options struct {
	// Now replaces time.Now for the events' times. If nil, time.Now.
	Now func() time.Time
	// Timeout bounds how long [Log.Write] waits for the file (a stalled
	// disk blocks write(2)). If zero, Write waits as long as it takes.
	Timeout time.Duration
}

// ErrStalled: the audit log did not take a line within the timeout.
var ErrStalled = errors.New("audit log write stalled (a frozen or hung disk?)")

// New continues the chain after tail (the end of the log already
// written; the zero Tail for a new log), keying new lines with key.
// A torn region in tail is sealed by the first line written.
func New(w io.Writer, tail Tail, key []byte, opts Options) *Log {
	if w == nil {
		w = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a := &Log{slot: make(chan struct{}, 1), w: w, now: opts.Now, timeout: opts.Timeout, endsNL: !tail.Unterminated,
		mac: hmac.New(sha256.New, key)}
	if last := tail.Last; len(last) > 0 {
		a.prev = chainLink(last)
		var e Event
		if json.Unmarshal(last, &e) == nil {
			a.seq = e.Seq
		}
	}
	if len(tail.Torn) > 0 {
		a.torn.add(tail.Torn, tail.Since)
		a.endsNL = tail.Torn[len(tail.Torn)-1] == '\n'
	}
	a.head.Store(a.seq)
	return a
}

// Seq is the seq of the last line written to the chain (0: none yet). A
// monitoring system that keeps its history notices a log cut short: its
// last seq falls below a value Seq once had.
func (a *Log) Seq() uint64 { return a.head.Load() }

// Torn reports the bytes of the torn region a gap line has yet to seal
// (what a crash or a full disk left), and whether one is due at all.
func (a *Log) Torn() (bytes int64, pending bool) {
	a.slot <- struct{}{}
	defer func() { <-a.slot }()
	return a.torn.n, a.torn.pending()
}

// Write appends e as one JSON line (after sealing what earlier failed
// writes left, if anything). Each line goes out in a single Write, so
// concurrent tok goroutines never interleave. An error means the event
// was not recorded; callers revealing data or logging in must then refuse.
//
// With a timeout, write gives up waiting after it and returns an error,
// while the line it handed over is still written if the disk comes back:
// the log may then hold an event whose request was refused, never the
// reverse.
func (a *Log) Write(e Event) error {
	e.Time = a.now().UTC()
	if a.timeout <= 0 {
		a.slot <- struct{}{}
		defer func() { <-a.slot }()
		return a.append(e)
	}
	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	select {
	case a.slot <- struct{}{}:
	case <-timer.C:
		a.dropped.Add(1)
		return fmt.Errorf("audit: %w: no turn within %v", ErrStalled, a.timeout)
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-a.slot }()
		done <- a.append(e)
	}()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("audit: %w: not written within %v", ErrStalled, a.timeout)
	}
}

// Stalled reports how long the write in progress has taken, if longer
// than the timeout.
func (a *Log) Stalled() (time.Duration, bool) {
	start := a.writing.Load()
	if start == 0 || a.timeout <= 0 {
		return 0, false
	}
	d := time.Since(time.Unix(0, start))
	return d, d > a.timeout
}

// append writes e, sealing a torn region first. The caller holds slot.
func (a *Log) append(e Event) error {
	if n := a.dropped.Swap(0); n > 0 {
		a.torn.lost += int(n)
		a.torn.fail(e.Time, ErrStalled)
	}
	if a.torn.pending() {
		if err := a.seal(e.Time); err != nil {
			a.torn.lost++
			return err
		}
	}
	if err := a.emit(&e); err != nil {
		a.torn.lost++
		a.torn.fail(e.Time, err)
		return err
	}
	return nil
}

// SealNow seals the torn region, if any, at now: at start, so a cut write
// a crash left is accounted for before the next event.
func (a *Log) SealNow(now time.Time) error {
	a.slot <- struct{}{}
	defer func() { <-a.slot }()
	if !a.torn.pending() {
		return nil
	}
	return a.seal(now.UTC())
}

// seal writes the gap line that accounts for the torn region and the
// events lost since the last line.
func (a *Log) seal(now time.Time) error {
	g := a.torn.gap()
	e := Event{Time: now, Event: "gap", Outcome: "sealed", Gap: &g}
	if err := a.emit(&e); err != nil {
		a.torn.fail(now, err)
		return err
	}
	a.torn = tornRegion{}
	return nil
}

// emit chains e after the last line, keys it and writes it; on success the
// chain advances. A write that leaves all of the line but its newline in
// the file counts as written (the next line starts with the newline).
func (a *Log) emit(e *Event) error {
	e.Seq = a.seq + 1
	e.Prev = hex.EncodeToString(a.prev[:])
	e.Mac = ""
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	a.mac.Reset()
	a.mac.Write(b)
	var sum [sha256.Size]byte
	mac := a.mac.Sum(sum[:0])
	buf := make([]byte, 0, 1+len(b)+macSuffixLen+1)
	prefixed := !a.endsNL
	if prefixed {
		buf = append(buf, '\n') // ends the torn region, or a line cut before its newline
	}
	buf = append(buf, b[:len(b)-1]...)
	buf = append(buf, `,"mac":"`...)
	buf = hex.AppendEncode(buf, mac)
	buf = append(buf, "\"}\n"...)
	a.writing.Store(time.Now().UnixNano())
	n, err := a.w.Write(buf)
	a.writing.Store(0)
	if err == nil || n >= len(buf)-1 {
		copy(a.prev[:], mac)
		a.seq = e.Seq
		a.head.Store(a.seq)
		a.endsNL = n == len(buf)
		return nil
	}
	// The line is not in the log; whatever part of it is belongs to the
	// torn region (a newline that ended a whole line before it does not).
	written := buf[:n]
	if prefixed && n > 0 && !a.torn.has() {
		written = written[1:]
	}
	a.torn.add(written, e.Time)
	if n > 0 {
		a.endsNL = buf[n-1] == '\n'
	}
	return fmt.Errorf("audit: %w", err)
}
