package proxy

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// transactionTimeLayout is the prototype's transaction_time format (UTC).
const transactionTimeLayout = "2006-01-02 15:04:05"

type meRequest struct {
	Token string `json:"token"`
	// Bound, with Token a card token, asks for the value bound to that card
	// under this token (a CVC), which reveals only together with it.
	Bound string `json:"bound"`
}

// meResponse is the prototype's /@me answer plus masked_pan. PAN,
// EncryptedPAN and Hash are set only for clients allowed to reveal: a
// masked-only client has no use for the ciphertext or the fingerprint,
// and the fingerprint is what convergence matches on.
type meResponse struct {
	Token           string `json:"token"`
	EncryptedPAN    string `json:"encrypted_pan,omitempty"`
	Hash            string `json:"hash,omitempty"` // the card's keyed fingerprint, hex
	TransactionTime string `json:"transaction_time"`
	MaskedPAN       string `json:"masked_pan"`
	PAN             string `json:"pan,omitempty"`
	Format          string `json:"format"`
	KeyVersion      uint32 `json:"key_version"`
	// BoundTo is the card token a bound value (a CVC) was looked up with.
	BoundTo string `json:"bound_to,omitempty"`
	// Card is the card's metadata, for a token of a card number (not of a
	// bound value); its fingerprint only for clients allowed to reveal,
	// as for Hash.
	Card *CardMeta `json:"card,omitempty"`
	// RevealPolicy is the token's reveal policy; absent when it has none.
	RevealPolicy *RevealPolicy `json:"reveal_policy,omitempty"`
}

// RevealPolicy is a token's [vault.RevealPolicy] as /@me shows it: the
// routes it reveals through (absent: any), its max_reveals with the
// reveals counted so far (absent: unlimited), and the end of its window
// (absent: none).
type RevealPolicy struct {
	RevealTo    []string   `json:"reveal_to,omitempty"`
	MaxReveals  uint32     `json:"max_reveals,omitempty"`
	Reveals     *uint32    `json:"reveals,omitempty"`
	RevealUntil *time.Time `json:"reveal_until,omitempty"`
}

// NewRevealPolicy is p as /@me and tok export show it, with reveals, the
// count so far (shown only for a policy with a MaxReveals).
func NewRevealPolicy(p vault.RevealPolicy, reveals uint32) *RevealPolicy {
	rp := &RevealPolicy{RevealTo: p.Routes, MaxReveals: p.MaxReveals}
	if !p.Until.IsZero() {
		u := p.Until.UTC()
		rp.RevealUntil = &u
	}
	if p.MaxReveals > 0 {
		rp.Reveals = &reveals
	}
	return rp
}

// revealPolicy is rv's policy for the /@me answer, with its count: the
// one this reveal made, or the store's.
func (s *Server) revealPolicy(r *http.Request, rv vault.Revealed) (*RevealPolicy, error) {
	n := rv.Reveals
	if n == 0 && rv.Policy.MaxReveals > 0 {
		var err error
		if n, err = s.opts.Vault.Reveals(r.Context(), rv.Record); err != nil {
			return nil, err
		}
	}
	return NewRevealPolicy(rv.Policy, n), nil
}

// serveMe is GET /@me?token=... or POST /@me {"token": "..."}: look a token
// up for the logged-in client, revealing the PAN only to clients allowed to.
func (s *Server) serveMe(w http.ResponseWriter, r *http.Request) error {
	if err := httpx.AllowMethods(w, r, http.MethodGet, http.MethodPost, http.MethodDelete); err != nil {
		return err
	}
	sess, client, err := s.auth.Session(r)
	if err != nil {
		// A refused session is audited too (PCI DSS 10.2.1):
		// which token was asked for stays out (the caller is unknown), and
		// so does the cookie.
		s.tryRecord(r, audit.Event{Event: "session", Endpoint: httpx.SafeMethod(r.Method) + " /@me", Outcome: toAPIError(err).Code})
		return err
	}
	if r.Method == http.MethodDelete {
		return s.deleteToken(w, r, sess, client)
	}
	token, bound := r.URL.Query().Get("token"), r.URL.Query().Get("bound")
	if r.Method == http.MethodPost {
		var req meRequest
		if err := httpx.DecodeJSON(w, r, 4<<10, &req); err != nil {
			return err
		}
		token, bound = req.Token, req.Bound
	}
	if token == "" {
		return httpx.Errorf(http.StatusBadRequest, CodeMissingField, "token is required")
	}
	kind := "lookup"
	if client.Reveal {
		kind = "reveal"
	}
	ev := audit.Event{Event: kind, Client: client.Name, Session: sess.ID}
	// Every lookup spends the client's budget before the vault is asked,
	// found or not: enumerating short tokens is mostly misses.
	size := clientBudget(client.RevealBudget, s.opts.Budgets.Reveal)
	if err := s.spend(w, s.budgets.reveal, budgetReveal, client.Name, 1, size); err != nil {
		ev.Token, ev.Outcome = auditToken(token, false), toAPIError(err).Code
		s.metrics.revealed.WithLabelValues(kind, "error").Inc()
		s.tryRecord(r, ev)
		return err
	}
	start := time.Now()
	var rv vault.Revealed
	// A full-number reveal is a reveal under the token's policy, as the
	// route "@me": allowed, counted and refused like an egress one. A
	// masked lookup reveals nothing and is not counted.
	switch {
	case bound != "" && client.Reveal:
		// A bound value (a CVC) is looked up with the card token it is
		// bound to, never alone, and under that card's policy.
		rv, err = s.opts.Vault.RevealBoundFor(r.Context(), token, bound, vault.RevealToMe)
	case bound != "":
		rv, err = s.opts.Vault.RevealBound(r.Context(), token, bound)
	case client.Reveal:
		rv, err = s.opts.Vault.RevealFor(r.Context(), token, vault.RevealToMe)
	default:
		rv, err = s.opts.Vault.Reveal(r.Context(), token)
	}
	found := err == nil || vault.RevealRefused(err)
	if bound != "" {
		ev.BoundTo = auditToken(token, found)
		token = bound
	}
	s.metrics.revealDur.Observe(time.Since(start).Seconds())
	ev.Token = auditToken(token, found)
	ev.Outcome = "ok"
	if err != nil {
		ev.Outcome = toAPIError(err).Code
	}
	s.metrics.revealed.WithLabelValues(kind, outcome(err)).Inc()
	if aerr := s.mustRecord(r, ev, "reveal"); aerr != nil {
		return aerr
	}
	if err != nil {
		return err
	}
	resp := meResponse{
		Token:           rv.Token,
		TransactionTime: rv.Created.UTC().Format(transactionTimeLayout),
		MaskedPAN:       vault.Mask(rv.Value),
		Format:          rv.Format.String(),
		KeyVersion:      rv.KeyID,
	}
	if bound != "" {
		resp.BoundTo = ev.BoundTo
	} else if d, err := vault.NormalizePAN(rv.Value); err == nil {
		m := s.cardMeta(d, client.Reveal)
		resp.Card = &m
	}
	if !rv.Policy.IsZero() {
		p, err := s.revealPolicy(r, rv)
		if err != nil {
			return err
		}
		resp.RevealPolicy = p
	}
	if client.Reveal {
		resp.PAN = rv.Value
		resp.EncryptedPAN = base64.StdEncoding.EncodeToString(rv.Ciphertext)
		fp := rv.Fingerprint
		if len(fp) == 0 {
			// A unique token stores no fingerprint, so that nothing can
			// match on it; a client that sees the card anyway gets the
			// card's fingerprint in its format's default domain, as the
			// prototype's hash field promised.
			fp = s.opts.Vault.Keyring().Fingerprint(vault.Spec{Format: rv.Format}.Domain(), rv.Value)
		}
		resp.Hash = hex.EncodeToString(fp)
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// auditToken is how a requested token appears in the audit log. A token
// with a record is logged as is. Anything else may be a card number pasted
// where a token belongs: it is masked if it is long enough to be one, and dropped if it
// is not token-shaped at all.
func auditToken(token string, found bool) string {
	switch {
	case found:
		return token
	case !vault.ValidToken(token):
		return ""
	case len(token) >= vault.MinPANLength && token[0] >= '0' && token[0] <= '9':
		return vault.Mask(token) // digits with no record: perhaps a PAN, Luhn-valid or not
	default:
		return token
	}
}

// deleteToken is DELETE /@me?token=...: erase a token, for clients allowed
// to (configured with delete: true). Audit-logged like a reveal; no audit
// line, no erasure.
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request, sess vault.Session, client Client) error {
	token, bound := r.URL.Query().Get("token"), r.URL.Query().Get("bound")
	if token == "" {
		return httpx.Errorf(http.StatusBadRequest, CodeMissingField, "token is required")
	}
	ev := audit.Event{Event: "delete", Client: client.Name, Session: sess.ID, Token: auditToken(token, false)}
	if bound != "" {
		ev.Token, ev.BoundTo = auditToken(bound, false), auditToken(token, false)
	}
	if !client.Delete {
		ev.Outcome = "forbidden"
		s.tryRecord(r, ev)
		return httpx.Errorf(http.StatusForbidden, httpx.CodeForbidden, "this client may not delete tokens")
	}
	var err error
	if bound != "" {
		_, err = s.opts.Vault.RevealBound(r.Context(), token, bound)
	} else {
		_, err = s.opts.Vault.Lookup(r.Context(), token)
	}
	if err != nil {
		ev.Outcome = toAPIError(err).Code
		s.tryRecord(r, ev)
		return err
	}
	// Two lines: the intent must be on record before the irreversible
	// erasure, the result after it. Erasing a card erases the values
	// bound to it (its CVCs) too.
	ev.Token, ev.Outcome = token, "started"
	if bound != "" {
		ev.Token, ev.BoundTo = bound, token
	}
	if err := s.mustRecord(r, ev, "delete"); err != nil {
		return err
	}
	if bound != "" {
		err = s.opts.Vault.DeleteBound(r.Context(), token, bound)
	} else {
		err = s.opts.Vault.Delete(r.Context(), token)
	}
	ev.Outcome = "ok"
	if err != nil {
		ev.Outcome = toAPIError(err).Code
	}
	s.tryRecord(r, ev)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "deleted", "token": ev.Token})
	return nil
}
