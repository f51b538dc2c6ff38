package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/tokproxy/tok/proxy/auth"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// apiError is an error with what the client is told kept apart from what is
// logged: Code and Msg go to the client, Err (masked, never a PAN) to the log.
type apiError struct {
	Status int
	Code   string // stable, machine-readable
	Msg    string // short, human-readable, never a card number or secret
	Err    error  // detail for the log; may be nil
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Msg
}

func (e *apiError) Unwrap() error { return e.Err }

// errorf builds an apiError whose message is also its log text.
func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// toAPIError maps any error to what the client sees. It is the one place
// where sentinel errors become HTTP statuses.
func toAPIError(err error) *apiError {
	var ae *apiError
	var re *rewrite.Error
	var authErr *auth.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &authErr):
		return &apiError{authErr.Status, authErr.Code, authErr.Msg, nil}
	case errors.As(err, &re):
		// A body the rewrite engine refused: its status and stable code, and
		// a message naming the field, never the value.
		msg := re.Msg
		if re.Path != "" {
			msg = "field " + re.Path + ": " + re.Msg
		}
		return &apiError{re.Status, re.Code, msg, err}
	case errors.Is(err, vault.ErrInvalidValue):
		return &apiError{http.StatusBadRequest, CodeInvalidPAN, "card number must be 12 to 19 digits (spaces and dashes allowed)", err}
	case errors.Is(err, vault.ErrInvalidToken):
		return &apiError{http.StatusBadRequest, CodeInvalidToken, "not a token", err}
	case errors.Is(err, vault.ErrNotFound):
		return &apiError{http.StatusNotFound, CodeTokenNotFound, "no such token", err}
	case errors.Is(err, vault.ErrUnbound):
		return &apiError{http.StatusUnprocessableEntity, CodeUnboundToken,
			"a short token reveals only together with the card token it is bound to", err}
	case errors.Is(err, vault.ErrVaultFull):
		return &apiError{http.StatusInsufficientStorage, CodeVaultFull,
			"the vault has reached limits.vault_bytes: cards without a token are refused until it is raised (known cards keep theirs)", err}
	case errors.Is(err, vault.ErrCollision):
		// Not an outage: the format has no free token for this value
		// (a short unbound digits field, or one card with hundreds of
		// live bound values). 507: the server cannot store what the
		// request needs.
		return &apiError{http.StatusInsufficientStorage, CodeTokenSpaceExhausted,
			"no free token of this field's format is left; bind short fields to their card field (bind:) or use a longer format", err}
	case errors.Is(err, vault.ErrDecrypt), errors.Is(err, vault.ErrUnknownKey), errors.Is(err, vault.ErrMismatch):
		// The record is there but cannot be opened: a damaged vault page,
		// or an edited store. Its token is never handed out
		// (vault.checkFound); the metric tok_records_unreadable_total
		// counts these, and tok vault check lists them.
		return &apiError{http.StatusInternalServerError, CodeRecordUnreadable,
			"the vault holds a record for this that cannot be opened (damaged); the operator is alerted", err}
	case errors.Is(err, vault.ErrAmbiguous):
		return &apiError{http.StatusConflict, CodeAmbiguousToken, "this token stands for two values and is refused", err}
	case errors.Is(err, vault.ErrFull):
		return &apiError{http.StatusServiceUnavailable, CodeVolatileStoreFull,
			"tok holds limits.volatile_records values in memory already; retry once some expire", err}
	case errors.Is(err, vault.ErrUnavailable), errors.Is(err, vault.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, CodeVaultUnavailable, "the vault cannot serve this request now; retry later", err}
	case errors.Is(err, context.Canceled):
		return &apiError{499, CodeClientClosed, "client closed the request", err}
	default:
		return &apiError{http.StatusInternalServerError, CodeInternal, "internal error", err}
	}
}

// writeJSON writes v as the JSON response with status. Every response tok
// generates carries no-store: it may hold a token, a PAN or a session id.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // a write error means the client is gone: nothing to do
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	status := e.Status
	if status == 499 { // nobody is listening; keep the status for metrics only
		status = http.StatusBadRequest
	}
	writeJSON(w, status, errorBody{Error: e.Code, Message: e.Msg})
}

// upstreamError answers when an upstream cannot be reached: 504 on
// timeout, 502 otherwise, and nothing (no log noise) when the client went
// away. It is the ErrorHandler of every reverse proxy in tok.
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error, route string) {
	var ae *apiError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		ae = &apiError{499, CodeClientClosed, "client closed the request", err}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		ae = &apiError{http.StatusGatewayTimeout, CodeUpstreamTimeout, "the upstream did not answer in time", err}
	default:
		ae = &apiError{http.StatusBadGateway, CodeUpstreamUnavailable, "the upstream cannot be reached", err}
	}
	s.logError(r, route, ae)
	if sw, ok := w.(*statusWriter); ok && ae.Status == 499 {
		sw.status = 499
		return
	}
	writeError(w, ae)
}
