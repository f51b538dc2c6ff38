package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// toAPIError maps any error to what the client sees. It is the one place
// where sentinel errors become HTTP statuses.
func toAPIError(err error) *httpx.Error {
	var ae *httpx.Error
	var re *rewrite.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &re):
		// A body the rewrite engine refused: its status and stable code, and
		// a message naming the field, never the value.
		msg := re.Msg
		if re.Path != "" {
			msg = "field " + re.Path + ": " + re.Msg
		}
		return httpx.NewError(re.Status, re.Code, msg, err)
	case errors.Is(err, vault.ErrInvalidValue):
		return httpx.NewError(http.StatusBadRequest, CodeInvalidPAN, "card number must be 12 to 19 digits (spaces and dashes allowed)", err)
	case errors.Is(err, vault.ErrInvalidToken):
		return httpx.NewError(http.StatusBadRequest, CodeInvalidToken, "not a token", err)
	case errors.Is(err, vault.ErrNotFound):
		return httpx.NewError(http.StatusNotFound, CodeTokenNotFound, "no such token", err)
	case errors.Is(err, vault.ErrUnbound):
		return httpx.NewError(http.StatusUnprocessableEntity, CodeUnboundToken,
			"a short token reveals only together with the card token it is bound to", err)

	case errors.Is(err, vault.ErrRevealNotAllowed):
		return httpx.NewError(http.StatusUnprocessableEntity, CodeRevealNotAllowed,
			"this token's reveal policy does not allow it to reveal here (reveal_to names other routes)", err)
	case errors.Is(err, vault.ErrRevealWindowClosed):
		return httpx.NewError(http.StatusUnprocessableEntity, CodeRevealWindowClosed,
			"this token's reveal window (reveal_window) has ended; tokenize the card again", err)
	case errors.Is(err, vault.ErrRevealsExhausted):
		return httpx.NewError(http.StatusUnprocessableEntity, CodeRevealsExhausted,
			"this token has revealed as many times as its policy allows (max_reveals); tokenize the card again", err)

	case errors.Is(err, vault.ErrVaultFull):
		return httpx.NewError(http.StatusInsufficientStorage, CodeVaultFull,
			"the vault has reached limits.vault_bytes: cards without a token are refused until it is raised (known cards keep theirs)", err)

	case errors.Is(err, vault.ErrCollision):
		// Not an outage: the format has no free token for this value
		// (a short unbound digits field, or one card with hundreds of
		// live bound values). 507: the server cannot store what the
		// request needs.
		return httpx.NewError(http.StatusInsufficientStorage, CodeTokenSpaceExhausted,
			"no free token of this field's format is left; bind short fields to their card field (bind:) or use a longer format", err)

	case errors.Is(err, vault.ErrDecrypt), errors.Is(err, vault.ErrUnknownKey), errors.Is(err, vault.ErrMismatch):
		// The record is there but cannot be opened: a damaged vault page,
		// or an edited store. Its token is never handed out
		// (vault.checkFound); the metric tok_records_unreadable_total
		// counts these, and tok vault check lists them.
		return httpx.NewError(http.StatusInternalServerError, CodeRecordUnreadable,
			"the vault holds a record for this that cannot be opened (damaged); the operator is alerted", err)

	case errors.Is(err, vault.ErrAmbiguous):
		return httpx.NewError(http.StatusConflict, CodeAmbiguousToken, "this token stands for two values and is refused", err)
	case errors.Is(err, vault.ErrFull):
		return httpx.NewError(http.StatusServiceUnavailable, CodeVolatileStoreFull,
			"tok holds limits.volatile_records values in memory already; retry once some expire", err)

	case errors.Is(err, vault.ErrUnavailable), errors.Is(err, vault.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return httpx.NewError(http.StatusServiceUnavailable, CodeVaultUnavailable, "the vault cannot serve this request now; retry later", err)
	case errors.Is(err, context.Canceled):
		return httpx.NewError(httpx.StatusClientClosed, CodeClientClosed, "client closed the request", err)
	default:
		return httpx.NewError(http.StatusInternalServerError, CodeInternal, "internal error", err)
	}
}

// upstreamError answers when an upstream cannot be reached: 504 on
// timeout, 502 otherwise, and nothing (no log noise) when the client went
// away. It is the ErrorHandler of every reverse proxy in tok.
func (s *Server) upstreamError(w http.ResponseWriter, r *http.Request, err error, route string) {
	var ae *httpx.Error
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		ae = httpx.NewError(httpx.StatusClientClosed, CodeClientClosed, "client closed the request", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		ae = httpx.NewError(http.StatusGatewayTimeout, CodeUpstreamTimeout, "the upstream did not answer in time", err)
	default:
		ae = httpx.NewError(http.StatusBadGateway, CodeUpstreamUnavailable, "the upstream cannot be reached", err)
	}
	s.logError(r, route, ae)
	if sw, ok := w.(*httpx.StatusWriter); ok && ae.Status == httpx.StatusClientClosed {
		sw.Status = httpx.StatusClientClosed
		return
	}
	httpx.WriteError(w, ae)
}
