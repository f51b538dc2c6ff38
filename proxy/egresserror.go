package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
)

// ErrorFormat is the envelope of tok's refusals on an egress route
// (egress[].error_format). The zero value is [ErrorFormatPlain].
type ErrorFormat string

// Error formats of an egress route (EgressRoute.ErrorFormat). tok's own
// refusals on egress are written in the envelope the route's provider
// uses, so that the provider's SDK decodes them as a final error and does
// not retry a refusal that will not change. Every one carries
// the header X-Tok-Error with tok's code, so an app can tell tok's refusal
// from the provider's.
const (
	// ErrorFormatPlain is tok's own: {"error": code, "message": msg}.
	ErrorFormatPlain ErrorFormat = "plain"
	// ErrorFormatStripe is Stripe's {"error": {"type", "code", "message",
	// "param"}} with Stripe-Should-Retry: false. stripe-go never retries
	// an error it can decode (other than a 429 lock_timeout, which tok
	// never sends); stripe-node, -python and -ruby read the header first.
	ErrorFormatStripe ErrorFormat = "stripe"
	// ErrorFormatAdyen is Adyen's {"status", "errorCode", "message",
	// "errorType"}.
	ErrorFormatAdyen ErrorFormat = "adyen"
	// ErrorFormatCheckout is Checkout.com's {"request_id", "error_type",
	// "error_codes": [code]}, with tok's message in "message" (the SDK keeps
	// error_codes, which carry tok's code).
	ErrorFormatCheckout ErrorFormat = "checkout"
	// ErrorFormatBraintree is Braintree's XML <api-error-response> with
	// its <message> and one <error> whose <code> is tok's code and whose
	// <attribute> is the field: Braintree's API speaks XML.
	ErrorFormatBraintree ErrorFormat = "braintree"
)

// ErrorFormats lists the error formats, in the order the docs give them.
var ErrorFormats = []ErrorFormat{ErrorFormatPlain, ErrorFormatStripe, ErrorFormatAdyen, ErrorFormatCheckout, ErrorFormatBraintree}

// UnmarshalText sets f from its config spelling; empty is the default.
func (f *ErrorFormat) UnmarshalText(text []byte) error {
	v := ErrorFormat(text)
	if v != "" && !slices.Contains(ErrorFormats, v) {
		names := make([]string, len(ErrorFormats))
		for i, n := range ErrorFormats {
			names[i] = string(n)
		}
		return fmt.Errorf("%q is not an error format; use %s", text, strings.Join(names, ", "))
	}
	*f = v
	return nil
}

// TokErrorHeader names tok's error code on every response tok writes itself
// on the egress listener.
const TokErrorHeader = "X-Tok-Error"

// Idempotency headers of the providers, as the app sends them.
var idempotencyHeaders = []string{"Idempotency-Key", "Cko-Idempotency-Key"}

// providerAnswered wraps an error about the provider's answer: the provider
// got the request and answered with status, so it may have acted on it.
type providerAnswered struct {
	status int
	err    error
}

func (e *providerAnswered) Error() string { return e.err.Error() }
func (e *providerAnswered) Unwrap() error { return e.err }

// fieldError is a refusal about one field of the request: the field is
// what Stripe's envelope calls param.
type fieldError struct {
	err   *httpx.Error
	field string
}

func (e *fieldError) Error() string { return e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// paramOf returns the request field a refusal is about, or "".
func paramOf(err error) string {
	var fe *fieldError
	var re *rewrite.Error
	switch {
	case errors.As(err, &fe):
		return fe.field
	case errors.As(err, &re):
		return re.Path
	}
	return ""
}

// upstreamError is the reverse proxy's ErrorHandler for rt: the provider
// could not be reached, did not answer in time, or answered with something
// tok will not hand the app.
func (e *egress) upstreamError(w http.ResponseWriter, r *http.Request, rt *egressRoute, err error) {
	var ae *httpx.Error
	var ce *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		ae = httpx.NewError(httpx.StatusClientClosed, CodeClientClosed, "client closed the request", err)
	case errors.Is(err, errResponseTooLarge):
		ae = httpx.NewError(http.StatusBadGateway, CodeResponseTooLarge, "the provider's response is too large to inspect for card numbers", err)
	case errors.Is(err, errResponseUninspectable):
		ae = httpx.NewError(http.StatusBadGateway, CodeResponseUninspectable, "the provider's response could not be inspected for card numbers", err)
	case errors.As(err, &ce):
		ae = httpx.NewError(http.StatusBadGateway, CodeUpstreamTLS, "the provider's TLS certificate did not verify", err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		ae = httpx.NewError(http.StatusGatewayTimeout, CodeUpstreamTimeout, "the provider did not answer in time", err)
	default:
		ae = httpx.NewError(http.StatusBadGateway, CodeUpstreamUnavailable, "the provider cannot be reached", err)
	}
	var pa *providerAnswered
	switch {
	case errors.As(err, &pa):
		ae.Msg = "the provider received this request and answered " + strconv.Itoa(pa.status) +
			", so it may have acted on it (charged the card), but tok withheld its answer: " + ae.Msg +
			". Look the result up at the provider before resending; " + keyAdvice(r)
	case ae.Code == CodeUpstreamTimeout && sendFrom(r.Context()).wrote.Load():
		ae.Msg += "; the request was sent, so the provider may have acted on it. " + keyAdvice(r)
	}
	e.refuse(w, r, rt, ae, "")
}

// keyAdvice names the idempotency key the app sent, if any.
func keyAdvice(r *http.Request) string {
	if k := idempotencyKey(r); k != "" {
		return strconv.Quote(k) + " is the idempotency key this request carried: resend only with it"
	}
	return "this request carried no idempotency key, so a resend may make the provider act again"
}

// refuse logs ae and writes it in rt's error format.
func (e *egress) refuse(w http.ResponseWriter, r *http.Request, rt *egressRoute, ae *httpx.Error, param string) {
	e.s.logError(r, "egress:"+rt.Name, ae)
	if ae.Status == httpx.StatusClientClosed {
		if sw, ok := w.(*httpx.StatusWriter); ok {
			sw.Status = httpx.StatusClientClosed
		}
		return
	}
	if sw, ok := w.(*httpx.StatusWriter); ok && sw.Wrote {
		return
	}
	st := sendFrom(r.Context())
	ref := refusal{Error: ae, param: param, idempotencyKey: idempotencyKey(r)}
	ref.acted = st.status != 0 || st.wrote.Load() && ae.Code == CodeUpstreamTimeout
	writeRefusal(w, rt.ErrorFormat, ref)
}

// refusal is one refusal as the app is told it.
type refusal struct {
	*httpx.Error
	param          string
	acted          bool   // the provider got the request and may have acted on it
	idempotencyKey string // as the app sent it, made safe to echo
}

// retryable reports whether the same request may succeed later: only tok's
// own passing troubles, and only before anything was sent.
func (r refusal) retryable() bool {
	if r.acted {
		return false
	}
	switch r.Code {
	case CodeVaultUnavailable, CodeAuditUnavailable, CodeVolatileStoreFull:
		return true
	}
	return false
}

// status is the HTTP status for the format. In a provider's format a 409
// (which SDKs retry) becomes 422: the refusal will not change.
func (r refusal) status(format ErrorFormat) int {
	s := r.Status
	if format != ErrorFormatPlain && format != "" && s == http.StatusConflict {
		return http.StatusUnprocessableEntity
	}
	return s
}

// writeRefusal writes ref in format.
func writeRefusal(w http.ResponseWriter, format ErrorFormat, ref refusal) {
	h := w.Header()
	h.Set(TokErrorHeader, ref.Code)
	status := ref.status(format)
	switch format {
	case ErrorFormatStripe:
		typ := errorType(status, "invalid_request_error", "invalid_request_error", "api_error")
		h.Set("Stripe-Should-Retry", strconv.FormatBool(ref.retryable()))
		h.Set("Request-Id", "tok_"+randomID())
		httpx.WriteJSON(w, status, map[string]any{"error": withActed(map[string]any{
			"type": typ, "code": ref.Code, "message": ref.Msg, "param": ref.param,
		}, ref)})
	case ErrorFormatAdyen:
		typ := errorType(status, "validation", "security", "internal")
		httpx.WriteJSON(w, status, withActed(map[string]any{
			"status": status, "errorCode": ref.Code, "message": ref.Msg, "errorType": typ,
		}, ref))
	case ErrorFormatCheckout:
		typ := errorType(status, "request_invalid", "unauthorized", "processing_error")
		httpx.WriteJSON(w, status, withActed(map[string]any{
			"request_id": "tok_" + randomID(), "error_type": typ, "error_codes": []string{ref.Code}, "message": ref.Msg,
		}, ref))
	case ErrorFormatBraintree:
		writeBraintreeError(w, status, ref)
	default:
		body := map[string]any{"error": ref.Code, "message": ref.Msg}
		httpx.WriteJSON(w, status, withActed(body, ref))
	}
}

// errorType is a provider's error type for status: server for a 5xx,
// unauthorized for a 401 (a missing or wrong egress key), else refused.
func errorType(status int, refused, unauthorized, server string) string {
	switch {
	case status >= 500:
		return server
	case status == http.StatusUnauthorized:
		return unauthorized
	}
	return refused
}

// braintreeError is Braintree's error answer as its SDKs read it.
type braintreeError struct {
	XMLName xml.Name `xml:"api-error-response"`
	Errors  struct {
		List struct {
			Type   string `xml:"type,attr"`
			Errors []struct {
				Code      string `xml:"code"`
				Attribute string `xml:"attribute"`
				Message   string `xml:"message"`
			} `xml:"error"`
		} `xml:"errors"`
	} `xml:"errors"`
	Message        string `xml:"message"`
	ProviderActed  bool   `xml:"provider-acted,omitempty"`
	IdempotencyKey string `xml:"idempotency-key,omitempty"`
}

func writeBraintreeError(w http.ResponseWriter, status int, ref refusal) {
	var b braintreeError
	b.Message = ref.Msg
	b.Errors.List.Type = "array"
	b.Errors.List.Errors = append(b.Errors.List.Errors, struct {
		Code      string `xml:"code"`
		Attribute string `xml:"attribute"`
		Message   string `xml:"message"`
	}{ref.Code, ref.param, ref.Msg})
	b.ProviderActed, b.IdempotencyKey = ref.acted, ref.idempotencyKey
	h := w.Header()
	h.Set("Content-Type", "application/xml; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	xml.NewEncoder(w).Encode(b) // a write error means the client is gone
}

// withActed adds, to a refusal of the provider's answer, that the provider
// acted and the idempotency key the app sent (or "" if none).
func withActed(m map[string]any, ref refusal) map[string]any {
	if ref.acted {
		m["provider_acted"] = true
		m["idempotency_key"] = ref.idempotencyKey
	}
	return m
}

// idempotencyKey returns the idempotency key of r, made safe to echo: at
// most 255 bytes of printable ASCII, with every digit masked if it holds 12
// or more (an app could build keys from anything, a card number included).
func idempotencyKey(r *http.Request) string {
	for _, h := range idempotencyHeaders {
		if k := r.Header.Get(h); k != "" {
			return safeKey(k)
		}
	}
	return ""
}

func safeKey(k string) string {
	if len(k) > 255 {
		k = k[:255]
	}
	digits := 0
	for i := 0; i < len(k); i++ {
		if k[i] >= '0' && k[i] <= '9' {
			digits++
		}
	}
	b := []byte(k)
	for i, c := range b {
		switch {
		case c < 0x20 || c >= 0x7f:
			b[i] = '?'
		case digits >= 12 && c >= '0' && c <= '9':
			b[i] = '#'
		}
	}
	return string(b)
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
