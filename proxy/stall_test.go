package proxy

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/memory"
)

// eventually polls cond (a state, not a timing) for up to the test's own
// generous deadline of 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStalledStore: with the vault's disk stalled (its
// WAL fdatasync does not return, as on a frozen filesystem), /handle used
// to hang until the connection dropped with no status and no log line,
// and /readyz stayed 200. Now /handle gets 503 vault_unavailable past the
// commit deadline, logged; /readyz says the store is stalled; and when the
// disk comes back both recover without a restart.
func TestStalledStore(t *testing.T) {
	faults := &bolt.Faults{}
	const deadline = 100 * time.Millisecond // the test's own, short to be quick
	store, err := bolt.Open(filepath.Join(t.TempDir(), "tok.db"), bolt.Options{Faults: faults, CommitTimeout: deadline})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := newTestEnv(t, store, func(o *Options) { o.CommitTimeout = deadline })
	e.handle(seedPAN)

	release := make(chan struct{})
	faults.StallWALSyncs(release)
	r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number": "4111111111111111"}`)
	wantError(t, r, 503, "vault_unavailable")
	if log := e.log.String(); !strings.Contains(log, `"code":"vault_unavailable"`) || !strings.Contains(log, "store stalled") {
		t.Errorf("no log line names the stalled commit:\n%s", log)
	}
	eventually(t, "/readyz to report the stall", func() bool {
		r := do(t, nil, "GET", e.admin.URL+"/readyz", "", "")
		return r.StatusCode == 503 && strings.Contains(string(r.body), "stalled")
	})

	faults.StallWALSyncs(nil)
	close(release)
	eventually(t, "/readyz to recover", func() bool { return do(t, nil, "GET", e.admin.URL+"/readyz", "", "").StatusCode == 200 })
	e.handle("4111111111111111")
}

// blockingWriter is an audit file on a frozen disk: writes wait for
// release.
type blockingWriter struct {
	mu      sync.Mutex
	buf     strings.Builder
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	rel := w.release
	w.mu.Unlock()
	if rel != nil {
		<-rel
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.WriteString(string(p))
}

// TestStalledAudit: an audit log whose disk stalls refuses logins with 503
// audit_unavailable past the deadline instead of hanging them, /readyz
// says so, and the chain stays intact once the disk comes back (the
// stalled line is written then: the log may hold an event whose request
// was refused, never the reverse).
func TestStalledAudit(t *testing.T) {
	const deadline = 100 * time.Millisecond
	w := &blockingWriter{release: make(chan struct{})}
	release := w.release
	e := newTestEnv(t, nil, func(o *Options) { o.Audit = w; o.CommitTimeout = deadline })
	wantError(t, e.loginStatus("cih", testSecrets["cih"]), 503, "audit_unavailable")
	wantError(t, e.loginStatus("cih", "wrong"), 503, "audit_unavailable") // waits for its turn behind the stuck one
	eventually(t, "/readyz to report the stalled audit log", func() bool {
		r := do(t, nil, "GET", e.admin.URL+"/readyz", "", "")
		return r.StatusCode == 503 && strings.Contains(string(r.body), "audit log is stalled")
	})
	w.mu.Lock()
	w.release = nil
	w.mu.Unlock()
	close(release)
	eventually(t, "/readyz to recover", func() bool { return do(t, nil, "GET", e.admin.URL+"/readyz", "", "").StatusCode == 200 })
	if r := e.loginStatus("cih", testSecrets["cih"]); r.StatusCode != 200 {
		t.Fatalf("POST /login after the stall = %d %s", r.StatusCode, r.body)
	}
	w.mu.Lock()
	log := w.buf.String()
	w.mu.Unlock()
	// The first login's line was written late; the second gave up
	// waiting for its turn, and the gap line says one event was lost.
	rep, err := audit.Verify(strings.NewReader(log), audit.Key(e.vault.Keyring()), false)
	if err != nil || len(rep.Gaps) != 1 || rep.Gaps[0].Lost != 1 || rep.Gaps[0].TornBytes != 0 || !strings.Contains(rep.Gaps[0].Cause, "stalled") {
		t.Errorf("VerifyAudit after the stall = %+v, %v; want one gap of 1 lost event, cause stalled\n%s", rep, err, log)
	}
}

// hangingStore's Ping hangs until release is closed, as a store on a hung
// disk or a silent server may.
type hangingStore struct {
	vault.Durable
	release chan struct{}
	pings   atomic.Int32
}

func (h *hangingStore) Ping(ctx context.Context) error {
	h.pings.Add(1)
	<-h.release
	return h.Durable.Ping(ctx)
}

// TestReadyzStoreHangs: a store ping that never returns still gets /readyz
// a 503 (not a hung probe, then a dropped connection), and probes that
// come while it hangs share it instead of piling up.
func TestReadyzStoreHangs(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	h := &hangingStore{Durable: mem, release: make(chan struct{})}
	e := newTestEnv(t, h)
	for range 2 {
		r := do(t, nil, "GET", e.admin.URL+"/readyz", "", "")
		wantError(t, r, 503, "not_ready")
		if !strings.Contains(string(r.body), "stalled") {
			t.Errorf("GET /readyz with a hung store = %s, want the stall named", r.body)
		}
	}
	if n := h.pings.Load(); n != 1 {
		t.Errorf("%d pings in flight for 2 probes, want 1", n)
	}
	close(h.release)
	eventually(t, "/readyz to recover", func() bool { return do(t, nil, "GET", e.admin.URL+"/readyz", "", "").StatusCode == 200 })
}
