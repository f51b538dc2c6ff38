package proxy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// MaxBatch is the most PANs one POST /handle may carry in pan_numbers.
const MaxBatch = 1000

// Paths that store records, as tok_records_created_total labels them.
const (
	pathHandleAnonymous = "handle_anonymous"
	pathHandleClient    = "handle_client"
	pathInbound         = "inbound"
	pathEgressResponse  = "egress_response" // card numbers in a provider's answer
)

// AnonymousClient is the audit log's client for unauthenticated callers of
// /handle; config refuses it as a client name.
const AnonymousClient = "anonymous"

// anonymousSpec is how the public /handle tokenizes: a fresh pan token on
// every call, neither looked up nor stored under a fingerprint. Its answer
// cannot tell anyone whether a card already has a token, so holding a token
// and calling /handle with candidates recovers nothing.
var anonymousSpec = vault.Spec{Unique: true}

// clientSpec is how the auth listener's /handle tokenizes for a logged-in
// client: convergent, in the fingerprint domain of inbound routes' default
// pan fields, so the token is the one /checkout gave (a stable card id).
var clientSpec = vault.Spec{}

type handleRequest struct {
	PAN  *string  `json:"pan_number"`
	PANs []string `json:"pan_numbers"`
	// Metadata asks for each card's metadata beside its token.
	Metadata bool `json:"metadata"`
}

type handleResponse struct {
	Token  string     `json:"token,omitempty"`
	Tokens []string   `json:"tokens,omitempty"`
	Card   *CardMeta  `json:"card,omitempty"`  // with metadata and pan_number
	Cards  []CardMeta `json:"cards,omitempty"` // with metadata and pan_numbers, in their order
}

// handleInput is a checked /handle body.
type handleInput struct {
	values   []string
	single   bool // pan_number, not pan_numbers
	metadata bool
}

// serveHandle is POST /handle on the public listener, for anyone:
// {"pan_number": "..."} → {"token": "..."}, or {"pan_numbers": [...]} →
// {"tokens": [...]} in one durable commit; with "metadata": true the answer
// adds each card's [CardMeta], without its fingerprint (an anonymous caller
// may not match cards). Every call mints fresh tokens (anonymousSpec),
// spends the caller address's budget, and writes one audit line.
func (s *Server) serveHandle(w http.ResponseWriter, r *http.Request) error {
	ev := audit.Event{Event: "handle", Client: AnonymousClient}
	return s.audited(w, r, &ev, func() (*handleResponse, error) {
		in, err := s.readHandle(w, r, &ev)
		if err != nil {
			return nil, err
		}
		b := s.opts.Budgets
		if err := s.spend(w, s.budgets.handleAnonymous, budgetHandleAnonymous, sourceKey(r, s.opts.Budgets.TrustedProxies), len(in.values), b.HandleAnonymous); err != nil {
			return nil, err
		}
		return s.mint(r, in, anonymousSpec, pathHandleAnonymous, false)
	})
}

// serveClientHandle is POST /handle on the auth listener, for a logged-in
// client (session cookie or certificate): the same request and answer as
// the public /handle, but convergent (the same card gets the same token),
// and so an oracle, bounded by the client's budget in values. Its metadata
// carries the card's fingerprint: a client that gets the card's stable
// token learns nothing more from it.
func (s *Server) serveClientHandle(w http.ResponseWriter, r *http.Request) error {
	ev := audit.Event{Event: "handle"}
	return s.audited(w, r, &ev, func() (*handleResponse, error) {
		if err := httpx.AllowMethods(w, r, http.MethodPost); err != nil {
			return nil, err
		}
		sess, client, err := s.auth.Session(r)
		if err != nil {
			return nil, err
		}
		ev.Client, ev.Session = client.Name, sess.ID
		in, err := s.readHandle(w, r, &ev)
		if err != nil {
			return nil, err
		}
		size := clientBudget(client.HandleBudget, s.opts.Budgets.HandleClient)
		if err := s.spend(w, s.budgets.handleClient, budgetHandleClient, client.Name, len(in.values), size); err != nil {
			return nil, err
		}
		return s.mint(r, in, clientSpec, pathHandleClient, true)
	})
}

// audited runs a /handle call and writes its audit line: who, how many
// values, the outcome. No audit line, no tokens: the answer is withheld
// if the line cannot be written, as for a reveal.
func (s *Server) audited(w http.ResponseWriter, r *http.Request, ev *audit.Event, call func() (*handleResponse, error)) error {
	resp, err := call()
	if err != nil {
		ev.Outcome = toAPIError(err).Code
		s.tryRecord(r, *ev)
		return err
	}
	ev.Outcome = "ok"
	if err := s.mustRecord(r, *ev, "tokenize"); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
	return nil
}

// readHandle reads and checks a /handle body, and sets ev.Count to the
// number of values it holds.
func (s *Server) readHandle(w http.ResponseWriter, r *http.Request, ev *audit.Event) (handleInput, error) {
	if err := httpx.AllowMethods(w, r, http.MethodPost); err != nil {
		return handleInput{}, err
	}
	var req handleRequest
	if err := httpx.DecodeJSON(w, r, s.opts.MaxBody, &req); err != nil {
		return handleInput{}, err
	}
	ev.Count = len(req.PANs)
	if req.PAN != nil {
		ev.Count++
	}
	switch {
	case req.PAN != nil && req.PANs != nil:
		return handleInput{}, httpx.Errorf(http.StatusBadRequest, CodeInvalidRequest, "send pan_number or pan_numbers, not both")
	case req.PAN == nil && req.PANs == nil:
		return handleInput{}, httpx.Errorf(http.StatusBadRequest, CodeMissingField, "pan_number is required")
	case req.PANs != nil && len(req.PANs) == 0:
		return handleInput{}, httpx.Errorf(http.StatusBadRequest, CodeInvalidRequest, "pan_numbers is empty")
	case len(req.PANs) > MaxBatch:
		return handleInput{}, httpx.Errorf(http.StatusRequestEntityTooLarge, CodeBatchTooLarge, "pan_numbers holds %d values; at most %d per request", len(req.PANs), MaxBatch)
	}
	values := req.PANs
	if req.PAN != nil {
		values = []string{*req.PAN}
	}
	for i, v := range values {
		if _, err := vault.NormalizePAN(v); err != nil {
			field := "pan_number"
			if req.PAN == nil {
				field = fmt.Sprintf("pan_numbers[%d]", i)
			}
			return handleInput{}, httpx.NewError(http.StatusBadRequest, CodeInvalidPAN, field+" must be 12 to 19 digits (spaces and dashes allowed)", nil)
		}
	}
	return handleInput{values: values, single: req.PAN != nil, metadata: req.Metadata}, nil
}

// mint tokenizes in's values under spec and builds the answer, with each
// card's metadata if asked (its fingerprint only with withFingerprint).
func (s *Server) mint(r *http.Request, in handleInput, spec vault.Spec, path string, withFingerprint bool) (*handleResponse, error) {
	reqs := make([]vault.Request, len(in.values))
	for i, v := range in.values {
		reqs[i] = vault.Request{Value: v, Spec: spec}
	}
	tokens, err := s.tokenize(r, reqs, path)
	if err != nil {
		return nil, err
	}
	var cards []CardMeta
	if in.metadata {
		cards = make([]CardMeta, len(in.values))
		for i, v := range in.values {
			d, _ := vault.NormalizePAN(v) // readHandle checked it
			cards[i] = s.cardMeta(d, withFingerprint)
		}
	}
	if in.single {
		resp := &handleResponse{Token: tokens[0]}
		if cards != nil {
			resp.Card = &cards[0]
		}
		return resp, nil
	}
	return &handleResponse{Tokens: tokens, Cards: cards}, nil
}

// tokenize runs the vault and records metrics; every tokenizing path uses
// it, naming itself in path for tok_records_created_total.
func (s *Server) tokenize(r *http.Request, reqs []vault.Request, path string) ([]string, error) {
	start := time.Now()
	tokens, created, err := s.opts.Vault.TokenizeCount(r.Context(), reqs)
	s.metrics.observeTokenize(len(reqs), time.Since(start), err)
	if err == nil {
		s.metrics.recordsCreated.WithLabelValues(path).Add(float64(created))
	}
	return tokens, err
}
