package proxy

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/tokproxy/tok/proxy/audit"
)

// sendState is what happened to one egress request: the values revealed
// for it and whether it reached the provider. The transport's writer sets
// wrote; everything else runs on the handler's goroutine.
type sendState struct {
	revealed revealedSet
	count    int             // values revealed
	paths    map[string]bool // the fields they were revealed at
	wrote    atomic.Bool     // the request's headers were written to the provider
	status   int             // the provider's status, 0 if it did not answer
	withheld bool            // the provider answered and tok refused the answer
	counted  []string        // tokens whose reveal was counted against their max_reveals
	would    *wouldRefuse    // report mode: the first refusal reject mode would make
}

type sendKey struct{}

// sendFrom returns the state of the egress request of ctx (a fresh one if
// there is none, so that a guard run outside a request has somewhere to
// write).
func sendFrom(ctx context.Context) *sendState {
	if s, _ := ctx.Value(sendKey{}).(*sendState); s != nil {
		return s
	}
	return &sendState{}
}

// auditSend writes what happened to an egress request whose values were
// revealed: sent (the provider answered), sent_no_answer (it was sent and
// no answer came: the provider may have acted), sent_answer_withheld (the
// provider answered and tok refused the answer) or not_sent (refused
// before it left tok, or the provider could not be reached). A request
// that revealed nothing writes no line: its refusals are audited per
// field.
func (e *egress) auditSend(r *http.Request, rt *egressRoute, st *sendState) {
	if st.count == 0 {
		return
	}
	ev := audit.Event{Event: "egress_send", Route: rt.Name, Upstream: rt.Upstream.Host, Count: st.count}
	if len(st.revealed.cards) > 0 {
		ev.Token = st.revealed.cards[0][1]
	}
	switch {
	case st.withheld:
		ev.Outcome = "sent_answer_withheld"
	case st.status != 0:
		ev.Outcome = "sent"
	case st.wrote.Load():
		ev.Outcome = "sent_no_answer"
	default:
		ev.Outcome = "not_sent"
	}
	e.s.tryRecord(r, ev)
}

// giveBack returns the reveals counted for an egress request that never
// left tok: refused after they were counted (a later field, the unrevealed
// token check), or its provider could not be reached (no connection, a
// failed TLS handshake). "Left tok" is the transport's WroteHeaders: once
// the request's headers were written the provider may have read it, so its
// reveals stay counted even if no answer came. A give-back that fails is
// logged and the reveal stays spent: the policy errs on the side of fewer
// reveals.
func (e *egress) giveBack(r *http.Request, rt *egressRoute, st *sendState) {
	if len(st.counted) == 0 || st.wrote.Load() {
		return
	}
	ctx := context.WithoutCancel(r.Context())
	for _, tok := range st.counted {
		if err := e.s.opts.Vault.UncountReveal(ctx, tok); err != nil {
			e.s.log.Warn("egress: a reveal of a request that was not sent could not be given back; it stays counted",
				"route", rt.Name, "token", tok, "err", err)
		}
	}
}
