package proxy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tokproxy/tok/vault"
)

// MaxBatch is the most PANs one POST /handle may carry in pan_numbers.
const MaxBatch = 1000

type handleRequest struct {
	PAN  *string  `json:"pan_number"`
	PANs []string `json:"pan_numbers"`
}

type handleResponse struct {
	Token  string   `json:"token,omitempty"`
	Tokens []string `json:"tokens,omitempty"`
}

// serveHandle is POST /handle: {"pan_number": "..."} → {"token": "..."},
// or {"pan_numbers": [...]} → {"tokens": [...]} in one durable commit.
func (s *Server) serveHandle(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	var req handleRequest
	if err := decodeJSON(w, r, s.opts.MaxBody, &req); err != nil {
		return err
	}
	switch {
	case req.PAN != nil && req.PANs != nil:
		return errorf(http.StatusBadRequest, "invalid_request", "send pan_number or pan_numbers, not both")
	case req.PAN == nil && req.PANs == nil:
		return errorf(http.StatusBadRequest, "missing_field", "pan_number is required")
	case req.PANs != nil && len(req.PANs) == 0:
		return errorf(http.StatusBadRequest, "invalid_request", "pan_numbers is empty")
	case len(req.PANs) > MaxBatch:
		return errorf(http.StatusRequestEntityTooLarge, "batch_too_large", "pan_numbers holds %d values; at most %d per request", len(req.PANs), MaxBatch)
	}
	values := req.PANs
	if req.PAN != nil {
		values = []string{*req.PAN}
	}
	reqs := make([]vault.Request, len(values))
	for i, v := range values {
		if _, err := vault.NormalizePAN(v); err != nil {
			field := "pan_number"
			if req.PAN == nil {
				field = fmt.Sprintf("pan_numbers[%d]", i)
			}
			return &apiError{http.StatusBadRequest, "invalid_pan", field + " must be 12 to 19 digits (spaces and dashes allowed)", nil}
		}
		reqs[i] = vault.Request{Value: v}
	}
	tokens, err := s.tokenize(r, reqs)
	if err != nil {
		return err
	}
	if req.PAN != nil {
		writeJSON(w, http.StatusOK, handleResponse{Token: tokens[0]})
		return nil
	}
	writeJSON(w, http.StatusOK, handleResponse{Tokens: tokens})
	return nil
}

// tokenize runs the vault and records metrics; every tokenizing path uses it.
func (s *Server) tokenize(r *http.Request, reqs []vault.Request) ([]string, error) {
	start := time.Now()
	tokens, err := s.opts.Vault.Tokenize(r.Context(), reqs)
	s.metrics.observeTokenize(len(reqs), time.Since(start), err)
	return tokens, err
}
