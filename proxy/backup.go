package proxy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// backupWriteTimeout is how long the backup download may go without
// progress: each write gets its own deadline (the admin server's
// WriteTimeout would cut a large vault short), but a client that stops
// reading cannot hold the store's snapshot open forever.
const backupWriteTimeout = time.Minute

// serveBackup answers GET /backup on the admin listener with a consistent
// snapshot of the vault (see Options.Backup) as one file. Before the first
// byte it can still refuse with a JSON error (a failing checkpoint gives
// 503); after it, a failure cannot change the status, so the connection is
// aborted: the client sees a truncated transfer, never a "complete" corrupt
// file.
func (s *Server) serveBackup(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Backup == nil {
		return httpx.Errorf(http.StatusNotFound, CodeNotFound, "no such endpoint: this vault store is not backed up through tok")
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return httpx.Errorf(http.StatusMethodNotAllowed, httpx.CodeMethodNotAllowed, "use GET")
	}
	// The whole vault leaves the host: no audit line, no backup (PCI DSS
	// 10.2.1; fail closed, as reveals are). A second line says how it ended.
	ev := audit.Event{Event: "backup", Endpoint: "GET /backup", Outcome: "started"}
	if err := s.mustRecord(r, ev, "send the vault"); err != nil {
		return err
	}
	bw := &backupWriter{w: w, rc: http.NewResponseController(w), name: "tok-" + s.opts.Now().UTC().Format("20060102T150405Z") + ".db"}
	start := time.Now()
	n, err := s.opts.Backup(r.Context(), bw)
	if err != nil && !bw.started {
		return err // nothing sent yet: an ordinary error response (adminGuard audits it)
	}
	if err != nil {
		s.log.Error("backup aborted midway: connection reset so the client cannot take a truncated file for a whole one",
			"bytes", n, "err", err.Error(), "remote", r.RemoteAddr)
		ev.Outcome = "aborted"
		s.tryRecord(r, ev)
		panic(http.ErrAbortHandler)
	}
	ev.Outcome = "ok"
	s.tryRecord(r, ev)
	s.log.Info("backup sent", "bytes", n, "duration", time.Since(start).Round(time.Millisecond), "remote", r.RemoteAddr)
	return nil
}

// backupWriter sends the headers with the first byte of the snapshot, and
// refreshes the write deadline at every write.
type backupWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	name    string
	started bool
}

func (b *backupWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", b.name))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		b.w.WriteHeader(http.StatusOK)
	}
	b.rc.SetWriteDeadline(time.Now().Add(backupWriteTimeout)) // not every writer supports it: best effort
	return b.w.Write(p)
}
