package proxy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tokproxy/tok/proxy/audit"
)

// shortWriter is an audit file on a disk with room bytes left: a write
// past it is cut short with ENOSPC, as write(2) on a full disk does.
// room < 0 is a disk with room to spare.
type shortWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	room int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.room < 0 || len(p) <= w.room {
		if w.room >= 0 {
			w.room -= len(p)
		}
		return w.buf.Write(p)
	}
	n := w.room
	w.buf.Write(p[:n])
	w.room = 0
	return n, &os.PathError{Op: "write", Path: "audit.log", Err: syscall.ENOSPC}
}

func (w *shortWriter) setRoom(n int) {
	w.mu.Lock()
	w.room = n
	w.mu.Unlock()
}

func (w *shortWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// loginStatus posts a login (right or wrong secret) and returns the status.
func (e *testEnv) loginStatus(client, secret string) response {
	e.t.Helper()
	return do(e.t, nil, "POST", e.auth.URL+"/login", "application/json",
		`{"bank_coordinates": "`+client+`", "secret": "`+secret+`"}`)
}

// TestAuditFullDisk: a write cut short by a full disk
// used to leave a torn line that `tok audit verify` reported as a break
// forever, and failed logins during the outage got 401 unaudited. Now
// every login the log cannot take is refused with 503, the torn bytes are
// sealed by a gap line once the disk has room, and verify reports the
// outage as such; an edited line still breaks the chain.
func TestAuditFullDisk(t *testing.T) {
	w := &shortWriter{room: -1}
	e := newTestEnv(t, nil, func(o *Options) { o.Audit = w })
	key := audit.Key(e.vault.Keyring())
	if r := e.loginStatus("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Fatalf("POST /login = %d %s", r.StatusCode, r.body)
	}
	e.loginStatus("cih", "wrong")
	// The disk fills in the middle of the next line.
	const cut = 57
	w.setRoom(cut)
	for _, secret := range []string{"wrong", testSecrets["cih"], "wrong"} {
		wantError(t, e.loginStatus("cih", secret), 503, "audit_unavailable")
	}
	wantError(t, e.loginStatus("nobody", "x"), 503, "audit_unavailable")
	torn := w.String()
	if rep, err := audit.Verify(strings.NewReader(torn), key, false); err != nil || rep.TornTail != cut || len(rep.Gaps) != 0 {
		t.Errorf("VerifyAudit during the outage = %+v, %v; want a torn tail of %d bytes, no break", rep, err, cut)
	}
	// Room again: the next line seals the outage first.
	w.setRoom(-1)
	if r := e.loginStatus("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Fatalf("POST /login after the outage = %d %s", r.StatusCode, r.body)
	}
	log := w.String()
	rep, err := audit.Verify(strings.NewReader(log), key, false)
	if err != nil {
		t.Fatalf("VerifyAudit after the outage = %v\n%s", err, log)
	}
	if len(rep.Gaps) != 1 {
		t.Fatalf("VerifyAudit found gaps %+v, want 1", rep.Gaps)
	}
	g := rep.Gaps[0]
	if g.Line != 4 || g.TornLines != 1 || g.TornBytes != cut || g.Lost != 4 || g.Cause != "no space left on device" || g.Since.IsZero() {
		t.Errorf("gap = %+v, want line 4 sealing 1 torn line of %d bytes, 4 events lost to ENOSPC", g, cut)
	}
	if rep.Lines != 5 || rep.LastSeq != 4 {
		t.Errorf("VerifyAudit = %d lines, last seq %d; want 5 lines (one torn), seq 4", rep.Lines, rep.LastSeq)
	}

	// Tampering still breaks the chain: an edited line before the gap,
	// an edited torn line, a torn line inserted without a gap.
	lines := strings.SplitAfter(strings.TrimSuffix(log, "\n"), "\n")
	for name, tc := range map[string]struct {
		lines []string
		line  int
	}{
		"edited line":      {replaceAt(lines, 0, strings.Replace(lines[0], `"outcome":"ok"`, `"outcome":"no"`, 1)), 1},
		"edited torn line": {replaceAt(lines, 2, strings.Replace(lines[2], `"`, `'`, 1)), 3},
		"torn line added":  {append(append(append([]string{}, lines[:1]...), `{"seq":2,"ev`+"\n"), lines[1:]...), 2},
		"gap removed":      {append(append([]string{}, lines[:3]...), lines[4:]...), 3},
	} {
		_, err := audit.Verify(strings.NewReader(strings.Join(tc.lines, "")), key, false)
		var br *audit.Break
		if !errors.As(err, &br) || br.Line != tc.line {
			t.Errorf("%s: VerifyAudit = %v, want a break at line %d", name, err, tc.line)
		}
	}
}

// TestAuditLineCutBeforeNewline: a write that left all of its line but the
// newline recorded the event; the next line starts with the newline.
func TestAuditLineCutBeforeNewline(t *testing.T) {
	w := &shortWriter{room: -1}
	e := newTestEnv(t, nil, func(o *Options) { o.Audit = w })
	e.loginStatus("cih", "wrong")
	n := len(w.String())
	w.setRoom(n - 1) // the same line again, but for its newline
	e.loginStatus("cih", "wrong")
	w.setRoom(-1)
	e.loginStatus("cih", "wrong")
	rep, err := audit.Verify(strings.NewReader(w.String()), audit.Key(e.vault.Keyring()), false)
	if err != nil || rep.Lines != 3 || len(rep.Gaps) != 0 {
		t.Errorf("VerifyAudit = %+v, %v; want 3 lines, no gap\n%s", rep, err, w.String())
	}
}

// TestAuditTornAtStart: a tok that crashed (or whose disk filled) in the
// middle of a line left it torn; the next tok seals it at start.
func TestAuditTornAtStart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	f, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, nil, func(o *Options) { o.Audit = f })
	keys := e.vault.Keyring()
	e.loginStatus("cih", "wrong")
	e.loginStatus("cih", "wrong")
	f.Close()
	b, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(b), "\n")
	// The crash cut the second line.
	os.WriteFile(path, []byte(lines[0]+lines[1][:40]), 0o600)

	f, err = audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if len(f.Tail.Torn) != 40 || string(f.Tail.Last) != strings.TrimSuffix(lines[0], "\n") {
		t.Fatalf("OpenAuditFile tail = last %q, torn %q", f.Tail.Last, f.Tail.Torn)
	}
	e2 := newTestEnvKeys(t, nil, keys, func(o *Options) { o.Audit = f; o.AuditTail = f.Tail })
	if !strings.Contains(e2.log.String(), "audit log ends in a write cut short") {
		t.Errorf("no warning logged at start:\n%s", e2.log.String())
	}
	e2.loginStatus("cih", "wrong")
	b, _ = os.ReadFile(path)
	rep, err := audit.Verify(bytes.NewReader(b), audit.Key(keys), false)
	if err != nil || len(rep.Gaps) != 1 || rep.Gaps[0].TornBytes != 40 || rep.Gaps[0].Lost != 0 || rep.LastSeq != 3 {
		t.Errorf("VerifyAudit after the restart = %+v, %v; want one gap of 40 torn bytes, last seq 3\n%s", rep, err, b)
	}
}

// TestAuditFileLocked: two toks on one audit log would fork its
// chain; the second refuses.
func TestAuditFileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	f, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = audit.OpenFile(path)
	if !errors.Is(err, audit.ErrLocked) || !strings.Contains(err.Error(), "each tok needs an audit log of its own") {
		t.Errorf("second OpenAuditFile = %v, want %v with advice", err, audit.ErrLocked)
	}
	f.Close()
	f, err = audit.OpenFile(path)
	if err != nil {
		t.Errorf("OpenAuditFile after the first closed = %v, want nil", err)
	} else {
		f.Close()
	}
}

// TestAuditRealFullDisk runs the outage on a real full filesystem: a
// 64 KiB tmpfs (root only; skipped otherwise).
func TestAuditRealFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	path := filepath.Join(dir, "audit.log")
	f, err := audit.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := newTestEnv(t, nil, func(o *Options) { o.Audit = f })
	key := audit.Key(e.vault.Keyring())
	// Fill the disk but for a little room, then log in until it is full.
	filler := filepath.Join(dir, "filler")
	fill, _ := os.Create(filler)
	chunk := make([]byte, 4096)
	for {
		if _, err := fill.Write(chunk); err != nil {
			break
		}
	}
	fill.Close()
	os.Truncate(filler, mustSize(t, filler)-6000) // ~1.5 pages: a dozen lines
	refused := 0
	for i := 0; i < 200 && refused < 3; i++ {
		if r := e.loginStatus("nobody", "wrong"); r.StatusCode == 503 {
			wantError(t, r, 503, "audit_unavailable")
			refused++
		}
	}
	if refused < 3 {
		t.Fatal("the full tmpfs never refused an audit line")
	}
	b, _ := os.ReadFile(path)
	rep, err := audit.Verify(bytes.NewReader(b), key, false)
	if err != nil {
		t.Errorf("VerifyAudit on the full disk = %v, want no break (a torn tail at most)", err)
	}
	t.Logf("on the full disk: %d lines, torn tail %d bytes", rep.Lines, rep.TornTail)
	// The operator frees space; tok goes on by itself.
	os.Remove(filler)
	if r := e.loginStatus("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Fatalf("POST /login once space is free = %d %s", r.StatusCode, r.body)
	}
	b, _ = os.ReadFile(path)
	rep, err = audit.Verify(bytes.NewReader(b), key, false)
	if err != nil || len(rep.Gaps) != 1 || rep.Gaps[0].Lost != 3 || rep.Gaps[0].Cause != "no space left on device" {
		t.Fatalf("VerifyAudit after the outage = %+v, %v; want one gap of 3 lost events (ENOSPC)", rep, err)
	}
	t.Logf("after the outage: %d lines, gap %+v", rep.Lines, rep.Gaps[0])
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
