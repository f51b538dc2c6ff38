package proxy

import (
	"errors"
	"net/http"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// Report mode on egress routes (EgressRoute.Report, config "guard:
// report" on the route). tok decides every request as the route's reject
// mode would, records the first refusal it would have made (listener
// "egress" in tok_would_refuse_total, the WARN line, GET /report) and then
// forwards the request to the route's provider as the guard off would:
//
//   - card_number_detected, a card number outside the route's fields in
//     the body or the query: the provider receives it as the app sent it;
//   - not_a_token, a card number at a field where a token was expected:
//     the provider receives that card number unrevealed, as sent (its
//     reveal audit line still says not_a_token: nothing was revealed);
//   - unrevealed_token (unrevealed_tokens: refuse), a live token outside
//     the route's fields: the provider receives the token.
//
// guard.report_then does not apply here: tokenizing a card on its way to
// the provider would hand it a token it cannot charge, a refusal by another
// name. Everything else keeps refusing in report mode, because forwarding
// it would send something where it must not go or hand the app a card: a
// request for another host (the route's upstream is the only host it ever
// reaches), a wrong egress key, a value that is neither a card nor a live
// token, a body or a provider answer tok cannot read, and the response
// guard, which never refuses a card in an answer but tokenizes it before
// the app sees it.

// egressReportable are the refusals an egress route in report mode records
// and lets through.
var egressReportable = map[string]bool{
	rewrite.CodeCardNumberDetected: true,
	CodeNotAToken:                  true,
	CodeUnrevealedToken:            true,
}

// reportQuery decides rt's request guard on r's query string as reject
// mode would and keeps the refusal: the query is forwarded as sent.
func (e *egress) reportQuery(r *http.Request, rt *egressRoute) error {
	_, err := rt.decide.RewriteQuery(r.URL.RawQuery, dryReplace)
	return inQuery(decide(&sendFrom(r.Context()).would, "query", err))
}

// reportBody decides rt's request guard on body as reject mode would and
// keeps the refusal. It runs after the acting rewriter, which revealed the
// fields: reject mode refuses a field's value before it scans the rest.
func (e *egress) reportBody(r *http.Request, rt *egressRoute, body []byte, ct string) error {
	if rt.decide == nil {
		return nil
	}
	_, err := rt.decide.Rewrite(body, ct, dryReplace)
	return decide(&sendFrom(r.Context()).would, "body", err)
}

// reportField keeps err, a field's refusal on rt, as a would-be refusal
// when rt is in report mode and the refusal is one report mode lets
// through, and returns nil then; otherwise it returns err.
func (e *egress) reportField(r *http.Request, rt *egressRoute, err error) error {
	var fe *fieldError
	if rt.decide == nil || !errors.As(err, &fe) || !egressReportable[fe.err.Code] {
		return err
	}
	re := &rewrite.Error{Code: fe.err.Code, Status: fe.err.Status, Path: fe.field, Offset: -1}
	return decide(&sendFrom(r.Context()).would, "body", re)
}

// recordWould records the would-be refusal of r, if any, as it is let
// through to the provider.
func (e *egress) recordWould(r *http.Request, rt *egressRoute) {
	if w := sendFrom(r.Context()).would; w != nil {
		e.s.wouldRefuse(r, ListenerEgress, rt.Name, w.where, w.err)
	}
}

// compileDecide compiles the reject-mode rewriter of an egress route in
// report mode: base guarding as reject mode does.
func compileDecide(what string, base rewrite.Config, r EgressRoute) (*rewrite.Rewriter, error) {
	base.Guard = rewrite.GuardReject
	c, err := compileRoute(what, base, r.Method, r.Path, r.Fields)
	if err != nil {
		return nil, err
	}
	return c.rewriter, nil
}
