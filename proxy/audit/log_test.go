package audit

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// flakyWriter appends to b, except while failing: then it takes the
// first room bytes of a write (a disk that fills up mid-line) and fails.
type flakyWriter struct {
	b       bytes.Buffer
	failing bool
	room    int
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	if !w.failing {
		return w.b.Write(p)
	}
	n := min(w.room, len(p))
	w.b.Write(p[:n])
	w.room -= n
	return n, errors.New("no space left on device")
}

// TestLogChain: events written through a Log verify under its key, take
// the Source their caller gives, and Seq follows the chain's head.
func TestLogChain(t *testing.T) {
	var w flakyWriter
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	l := New(&w, Tail{}, key, Options{Now: func() time.Time { return now }})
	for _, ev := range []string{"login", "reveal", "logout"} {
		if err := l.Write(Event{Event: ev, Client: "shop", Source: "192.0.2.1", Outcome: "ok"}); err != nil {
			t.Fatalf("Write(%s) = %v", ev, err)
		}
	}
	if l.Seq() != 3 {
		t.Errorf("Seq() = %d, want 3", l.Seq())
	}
	if !strings.Contains(w.b.String(), `"source":"192.0.2.1"`) {
		t.Errorf("log lacks the source its caller gave:\n%s", w.b.String())
	}
	rep, err := Verify(strings.NewReader(w.b.String()), key, false)
	if err != nil || rep.Lines != 3 || rep.LastSeq != 3 {
		t.Fatalf("Verify = %+v, %v; want 3 lines, nil", rep, err)
	}
	if _, err := Verify(strings.NewReader(w.b.String()), []byte("another key, the same length.."), false); err == nil {
		t.Error("Verify under another key passed")
	}
}

// TestLogGap: a write the disk cut short fails (the caller refuses or
// logs, by its policy), and the next write seals what it left with a gap
// line, so the log still verifies and reports the outage.
func TestLogGap(t *testing.T) {
	var w flakyWriter
	key := []byte("0123456789abcdef0123456789abcdef")
	l := New(&w, Tail{}, key, Options{})
	if err := l.Write(Event{Event: "login", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	w.failing, w.room = true, 20
	if err := l.Write(Event{Event: "reveal", Outcome: "ok"}); err == nil {
		t.Fatal("Write on a full disk = nil, want an error")
	}
	if torn, pending := l.Torn(); !pending || torn != 20 {
		t.Errorf("Torn() = %d, %v; want 20 torn bytes, a gap due", torn, pending)
	}
	w.failing = false
	if err := l.Write(Event{Event: "logout", Outcome: "ok"}); err != nil {
		t.Fatalf("Write once the disk has room = %v", err)
	}
	rep, err := Verify(strings.NewReader(w.b.String()), key, false)
	if err != nil {
		t.Fatalf("Verify = %v; log:\n%s", err, w.b.String())
	}
	if len(rep.Gaps) != 1 || rep.Gaps[0].Lost != 1 || rep.Gaps[0].TornBytes != 20 {
		t.Errorf("Verify gaps = %+v, want one with 1 event lost and 20 torn bytes", rep.Gaps)
	}
	if rep.LastSeq != 3 { // login, gap, logout
		t.Errorf("LastSeq = %d, want 3", rep.LastSeq)
	}
}

// BenchmarkLogWrite is the cost of one audit line (a /handle writes one
// per request), to io.Discard so that the write(2) is left out.
func BenchmarkLogWrite(b *testing.B) {
	l := New(io.Discard, Tail{}, []byte("0123456789abcdef0123456789abcdef"), Options{})
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Write(Event{Event: "handle", Client: "shop", Source: "192.0.2.1", Outcome: "ok"}); err != nil {
			b.Fatal(err)
		}
	}
}
