package proxy

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// The audit policy: every detokenization, login attempt and admin action
// is written to the audit log, and each call site says what happens when
// the log cannot take its line.
//
//   - [Server.mustRecord]: no line, no effect. The event's effect (a
//     reveal, a login, a deletion, a backup, a tokenization) happens only
//     after its line is written; if the log cannot take it, the request is
//     refused with 503 audit_unavailable, so a disk outage can neither hide
//     a reveal nor a password-guessing run.
//   - [Server.tryRecord]: best effort. The line records something already
//     decided (a refusal, the end of an operation that has started); a
//     failed write is logged and the request goes on as it would have.

// mustRecord writes ev, from r's peer, to the audit log; if it cannot, it
// returns the refusal the caller must answer with instead of doing what
// ev records (action names it: "reveal", "log in", ...).
func (s *Server) mustRecord(r *http.Request, ev audit.Event, action string) error {
	ev.Source = httpx.PeerAddr(r)
	if err := s.auditLog.Write(ev); err != nil {
		return httpx.NewError(http.StatusServiceUnavailable, CodeAuditUnavailable, "the audit log cannot be written; refusing to "+action, err)
	}
	return nil
}

// tryRecord writes ev, from r's peer, to the audit log; a failure is
// logged and otherwise ignored.
func (s *Server) tryRecord(r *http.Request, ev audit.Event) {
	ev.Source = httpx.PeerAddr(r)
	if err := s.auditLog.Write(ev); err != nil {
		s.log.Error("audit log write failed", "event", ev.Event, "outcome", ev.Outcome, "err", err)
	}
}

// openAuditLog continues the audit chain opts.Audit ends with, exports its
// head as tok_audit_seq and seals a write a crash or a full disk cut short
// (if the disk is still full, the next write seals it).
func openAuditLog(opts Options, log *slog.Logger) *audit.Log {
	tail := opts.AuditTail
	if tail.Last == nil && tail.Torn == nil {
		tail = audit.Tail{Last: opts.AuditLast}
	}
	a := audit.New(opts.Audit, tail, audit.Key(opts.Vault.Keyring()), audit.Options{Now: opts.Now, Timeout: opts.CommitTimeout})
	opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tok_audit_seq",
		Help: "Seq of the last line written to the audit log's chain. A log whose last seq is below a value this metric once had was cut short.",
	}, func() float64 { return float64(a.Seq()) }))
	if torn, pending := a.Torn(); pending {
		log.Warn("audit log ends in a write cut short (a full disk or a crash): sealing it with a gap line",
			"torn_bytes", torn, "last_seq", a.Seq())
		if err := a.SealNow(opts.Now()); err != nil {
			log.Error("audit log: sealing the cut write failed; the next write retries", "err", err)
		}
	}
	return a
}
