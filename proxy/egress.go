package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// EgressKeyHeader carries the egress key the app must present on routes
// that have one. tok removes it before forwarding.
const EgressKeyHeader = "X-Tok-Egress-Key"

// EgressRoute is an outbound route: requests from the merchant app on the
// egress listener that match Method and Path are forwarded to Upstream
// with the tokens at Fields replaced by the values they stand for.
type EgressRoute struct {
	Name   string
	Method string
	Path   string // exact, or a prefix ending in "/*"
	// Host, if set, is the only host name (the request's Host without its
	// port, compared case-insensitively) the route matches: one name per
	// provider lets an SDK keep its own paths. Routes with a
	// Host are tried before those without.
	Host        string
	Upstream    *url.URL // the only host this route ever reaches
	StripPrefix string   // removed from the request path before forwarding
	// RootCAs verifies the upstream's certificate. If nil, the system roots.
	// Verification is never skipped.
	RootCAs *x509.CertPool
	Fields  []RouteField // selectors; the spec is not used on the way out
	// Headers are set on every forwarded request, replacing the app's own
	// (for example the provider's Authorization, kept out of the app).
	Headers map[string]string
	// EgressKey, if set, must arrive where EgressKeyHeader says (compared
	// in constant time).
	EgressKey string
	// EgressKeyHeader is where the app presents EgressKey: a header name,
	// [EgressKeyBearer] or [EgressKeyBasic]. If empty, [EgressKeyHeader].
	// tok removes it before forwarding; Headers then set the provider's.
	EgressKeyHeader string
	// ErrorFormat is the envelope of tok's refusals on this route: one of
	// the ErrorFormat constants. If empty, ErrorFormatPlain.
	ErrorFormat ErrorFormat
	// Timeout bounds the wait for the provider's answer headers. If zero,
	// DefaultEgressTimeout.
	Timeout time.Duration
	// ResponseIgnore are JSON selectors of the provider's answers the
	// response guard does not rewrite (ids that pass the Luhn check).
	ResponseIgnore []string
	// ResponseCards, if set, narrows what the response guard takes for a
	// card number in the provider's answers. If nil, every number the
	// guard knows as a card.
	ResponseCards *rewrite.CardSet
	// RefuseUnrevealed refuses a request carrying a live token outside the
	// route's fields; if false, such a request is logged and forwarded.
	RefuseUnrevealed bool
	// Report puts the route's guard in report mode (see egressreport.go):
	// what reject mode would refuse of the app's request is recorded, then
	// forwarded. If false, the route rejects.
	Report bool
}

// DefaultEgressTimeout is how long an egress route waits for a provider's
// answer when its Timeout is zero: longer than the SDKs' own (stripe-go
// 80 s, Adyen 60 s), so that the SDK, which knows whether it may retry,
// gives up first.
const DefaultEgressTimeout = 90 * time.Second

// egressWriteMargin is the time an egress answer has to reach the app
// after the provider's answer headers, beyond the route's timeout.
const egressWriteMargin = 30 * time.Second

type egressRoute struct {
	EgressRoute
	compiledRoute
	host     string // lower-cased Host, or ""
	rp       *httputil.ReverseProxy
	response *rewrite.Rewriter // guard for the provider's answers; nil when off
	decide   *rewrite.Rewriter // report mode only: the request guard as reject mode reads
	handler  http.Handler      // serve, instrumented with the route's label
	noRoute  http.Handler      // 404 for its host's unrouted requests, in its error format
}

// egress is the revealing proxy on the egress listener.
type egress struct {
	s        *Server
	routes   []egressRoute // those with a host first, each group in config order
	notFound http.Handler
}

func newEgress(s *Server) (*egress, error) {
	o := s.opts
	e := &egress{s: s}
	var errs []error
	// Requests to a provider must not carry card numbers outside the
	// configured fields either: egress is never a way to send raw cards.
	// guard.mode report is the inbound guard's rollout: egress keeps
	// rejecting unless a route asks for report mode itself.
	reqGuard := o.Guard.Mode
	if reqGuard == rewrite.GuardTokenize || reqGuard == rewrite.GuardReport {
		reqGuard = rewrite.GuardReject
	}
	for _, r := range o.Egress {
		if r.Upstream == nil || r.Upstream.Host == "" {
			errs = append(errs, fmt.Errorf("egress route %q: no upstream", r.Name))
			continue
		}
		what := fmt.Sprintf("egress route %q", r.Name)
		base := rewrite.Config{Guard: reqGuard, Ignore: o.Guard.Ignore, MaxDepth: o.MaxDepth}
		var dec *rewrite.Rewriter
		if r.Report {
			base.Guard = rewrite.GuardOff // acts as the guard off; dec reads as reject
			var err error
			if dec, err = compileDecide(what, base, r); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c, err := compileRoute(what, base, r.Method, r.Path, r.Fields)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		er := egressRoute{EgressRoute: r, compiledRoute: c, host: strings.ToLower(r.Host), decide: dec}
		if o.Guard.Mode != rewrite.GuardOff {
			// A card number in a provider's answer is tokenized before the
			// app, which must hold no cards, sees it. guard.ignore exempts
			// fields of the shop's own requests, not of a provider's
			// answers: those have their own list, response_ignore.
			er.response, err = responseGuard(r, o.MaxDepth)
			if err != nil {
				errs = append(errs, fmt.Errorf("egress route %q: response_ignore: %w", r.Name, err))
				continue
			}
		}
		e.routes = append(e.routes, er)
	}
	// Host routes first: a request for stripe.egress.internal never falls
	// to a route that matches any host.
	slices.SortStableFunc(e.routes, func(a, b egressRoute) int {
		return cmpBool(a.host == "", b.host == "")
	})
	for i := range e.routes {
		rt := &e.routes[i]
		rt.rp = e.reverseProxy(rt)
		rt.handler = s.instrument("egress:"+rt.Name, e.serveRoute(rt))
		rt.noRoute = s.instrument("egress:"+rt.Name, func(w http.ResponseWriter, r *http.Request) error {
			e.refuse(w, r, rt, httpx.Errorf(http.StatusNotFound, CodeNoRoute, "no egress route for %s %s on this host", httpx.SafeMethod(r.Method), httpx.SafePath(r.URL.Path)), "")
			return nil
		})
	}
	e.notFound = s.instrument("egress", func(w http.ResponseWriter, r *http.Request) error {
		return httpx.Errorf(http.StatusNotFound, CodeNoRoute, "no egress route for %s %s", httpx.SafeMethod(r.Method), httpx.SafePath(r.URL.Path))
	})
	return e, errors.Join(errs...)
}

// responseGuard builds the guard of r's provider answers: it tokenizes
// every card-like number outside r's ResponseIgnore that r's ResponseCards
// takes.
func responseGuard(r EgressRoute, maxDepth int) (*rewrite.Rewriter, error) {
	return rewrite.New(rewrite.Config{Guard: rewrite.GuardTokenize, Ignore: r.ResponseIgnore, MaxDepth: maxDepth, Cards: r.ResponseCards})
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// egressTransport verifies the provider's certificate against roots (the
// system's if nil) with TLS 1.2 at least.
func egressTransport(roots *x509.CertPool) *http.Transport {
	t := newTransport()
	t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	return t
}

func (e *egress) reverseProxy(r *egressRoute) *httputil.ReverseProxy {
	up := r.Upstream
	t := egressTransport(r.RootCAs)
	t.ResponseHeaderTimeout = cmp.Or(r.Timeout, DefaultEgressTimeout)
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p := cleanPath(pr.In.URL.Path)
			if pre := strings.TrimSuffix(r.StripPrefix, "/"); pre != "" && len(p) >= len(pre) && strings.EqualFold(p[:len(pre)], pre) {
				// Routes match paths case-insensitively; so does the prefix.
				p = p[len(pre):]
			}
			out := *up
			out.Path = strings.TrimSuffix(up.Path, "/") + "/" + strings.TrimPrefix(p, "/")
			out.RawPath = ""
			out.RawQuery = pr.In.URL.RawQuery
			pr.Out.URL = &out
			pr.Out.Host = "" // the provider's own host name, for TLS and routing
			pr.Out.Header.Del(EgressKeyHeader)
			pr.Out.Header.Del(r.keyHeaderName())
			// Ask for an identity response so the response guard can read it.
			pr.Out.Header.Del("Accept-Encoding")
			for k, v := range r.Headers {
				pr.Out.Header.Set(k, v)
			}
			inMemoryBody(pr)
			// Whether the request left tok decides what the audit line
			// and a refusal say: not sent, or sent and maybe acted on.
			st := sendFrom(pr.In.Context())
			pr.Out = pr.Out.WithContext(httptrace.WithClientTrace(pr.Out.Context(), &httptrace.ClientTrace{
				WroteHeaders: func() { st.wrote.Store(true) },
			}))
		},
		Transport:  t,
		BufferPool: newBufferPool(),
		ModifyResponse: func(resp *http.Response) error {
			st := sendFrom(resp.Request.Context())
			st.status = resp.StatusCode
			if err := e.guardResponse(resp, r); err != nil {
				st.withheld = true
				return &providerAnswered{status: resp.StatusCode, err: err}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, req *http.Request, err error) { e.upstreamError(w, req, r, err) },
		ErrorLog:     httpx.ErrorLog(e.s.log, "egress"),
	}
}

// noRoute answers a request no route matches: in the error format of a
// route for its host if there is one (an SDK pointed at that host reads
// the refusal and does not resend it), else plainly.
func (e *egress) noRoute(r *http.Request) http.Handler {
	host := requestHost(r)
	for i := range e.routes {
		if rt := &e.routes[i]; rt.host != "" && rt.host == host {
			return rt.noRoute
		}
	}
	return e.notFound
}

// route returns the route for r, or nil: the first route with r's host,
// then the first without a host, whose method and path match.
func (e *egress) route(r *http.Request) *egressRoute {
	p := matchPath(r)
	host := requestHost(r)
	for i := range e.routes {
		rt := &e.routes[i]
		if (rt.host == "" || rt.host == host) && rt.match.matches(r.Method, p) {
			return rt
		}
	}
	return nil
}

// serveRoute serves rt: tok's refusals are written in the route's error
// format, and what happened to the request is audited.
func (e *egress) serveRoute(rt *egressRoute) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		// The listener's WriteTimeout (60 s) would cut off an answer the
		// route's timeout still waits for: the deadline is the route's.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(cmp.Or(rt.Timeout, DefaultEgressTimeout) + egressWriteMargin))
		st := &sendState{}
		r = r.WithContext(context.WithValue(r.Context(), sendKey{}, st))
		err := e.serve(w, r, rt)
		if err != nil {
			traceRefusal(r, err)
			e.refuse(w, r, rt, toAPIError(err), paramOf(err))
		}
		e.giveBack(r, rt, st)
		e.auditSend(r, rt, st)
		return nil
	}
}

// serve reveals the tokens at the route's fields and forwards the request
// to the route's provider. Anything wrong refuses the request before a
// byte reaches the provider.
func (e *egress) serve(w http.ResponseWriter, r *http.Request, rt *egressRoute) error {
	if err := rt.checkKey(r); err != nil {
		return err
	}
	if r.Header.Get("Upgrade") != "" {
		return httpx.Errorf(http.StatusBadRequest, CodeUpgradeNotAllowed, "protocol upgrades are not allowed on egress routes")
	}
	if err := e.guardRequest(r, rt); err != nil {
		return err
	}
	if err := e.revealBody(w, r, rt); err != nil {
		return err
	}
	e.recordWould(r, rt)
	rt.rp.ServeHTTP(w, r)
	return nil
}

// guardRequest refuses raw card numbers in the query string (egress is
// never a way to send raw cards), unless the guard is off. Header values
// are not scanned: numeric trace ids (x-datadog-trace-id has 19 digits)
// would be refused a few times in a hundred.
func (e *egress) guardRequest(r *http.Request, rt *egressRoute) error {
	if rt.decide != nil && r.URL.RawQuery != "" {
		return e.reportQuery(r, rt)
	}
	if e.s.opts.Guard.Mode == rewrite.GuardOff || r.URL.RawQuery == "" {
		return nil
	}
	_, err := rt.rewriter.RewriteQuery(r.URL.RawQuery, func([]rewrite.Value) ([]string, error) {
		return nil, errors.New("unreachable: the request guard rejects")
	})
	return inQuery(err)
}

func (e *egress) revealBody(w http.ResponseWriter, r *http.Request, rt *egressRoute) error {
	if !hasBody(r) {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	media, err := rewrite.ParseMediaType(ct)
	if err != nil {
		return err
	}
	if media == rewrite.MediaOther {
		if rt.rewriter.HasFields() {
			return errFieldsNeedMedia()
		}
		return nil
	}
	body, err := readRouteBody(w, r, e.s.opts.MaxBody)
	if err != nil {
		return err
	}
	out, err := rt.rewriter.Rewrite(body, ct, e.revealer(r, rt))
	if err != nil {
		return err
	}
	if err := e.reportBody(r, rt, body, ct); err != nil {
		return err
	}
	if err := e.reportField(r, rt, e.checkUnrevealed(r, rt, body, media, sendFrom(r.Context()).paths)); err != nil {
		return err
	}
	replaceBody(r, out)
	return nil
}

// revealer swaps each token for its value, writing one audit line per
// field. A value that is not a live token refuses the whole request. Card
// tokens are revealed first, then the values bound to them (CVCs), each
// only together with the card token it was bound to.
func (e *egress) revealer(r *http.Request, rt *egressRoute) rewrite.ReplaceFunc {
	return func(vals []rewrite.Value) ([]string, error) {
		pair, err := pairBound(vals, rt.bindTo)
		if err != nil {
			return nil, err
		}
		out := make([]string, len(vals))
		for _, bound := range []bool{false, true} {
			for i, v := range vals {
				if (pair[i] >= 0) != bound {
					continue
				}
				card := ""
				if bound {
					card = vals[pair[i]].Text
				}
				val, err := e.reveal(r, rt, v, card)
				traceReveal(r, v, val, err)
				if err != nil && e.reportField(r, rt, err) == nil {
					val, err = v.Text, nil // report mode: forwarded as sent
				}
				if err != nil {
					return nil, err
				}
				out[i] = val
			}
		}
		return out, nil
	}
}

// reveal reveals the token at v; card, if set, is the card token v's value
// is bound to.
func (e *egress) reveal(r *http.Request, rt *egressRoute, v rewrite.Value, card string) (string, error) {
	ev := audit.Event{Event: "egress_reveal", Route: rt.Name, Field: v.Path, Upstream: rt.Upstream.Host, BoundTo: card}
	refuse := func(status int, code, msg string, err error) (string, error) {
		ev.Outcome = code
		e.s.metrics.revealed.WithLabelValues("egress", "error").Inc()
		e.s.tryRecord(r, ev)
		return "", &fieldError{httpx.NewError(status, code, "field "+v.Path+": "+msg, err), v.Path}
	}
	if !vault.ValidToken(v.Text) {
		if _, perr := vault.NormalizePAN(v.Text); perr == nil {
			return refuse(http.StatusUnprocessableEntity, CodeNotAToken, "holds a card number, not a token; egress only reveals tokens", nil)
		}
		return refuse(http.StatusUnprocessableEntity, CodeInvalidToken, "is not a token", nil)
	}
	start := time.Now()
	var rv vault.Revealed
	var err error
	if card != "" {
		// The card token it is bound to was revealed for this route in
		// this request first (revealer), under the card's policy.
		rv, err = e.s.opts.Vault.RevealBound(r.Context(), card, v.Text)
	} else {
		rv, err = e.s.opts.Vault.RevealFor(r.Context(), v.Text, rt.Name)
	}
	e.s.metrics.revealDur.Observe(time.Since(start).Seconds())
	policyRefused := vault.RevealRefused(err)
	ev.Token = auditToken(v.Text, err == nil || policyRefused)
	if rv.Policy.MaxReveals > 0 {
		st := sendFrom(r.Context())
		st.counted = append(st.counted, v.Text)
	}
	switch {
	case policyRefused:
		ae := toAPIError(err)
		return refuse(ae.Status, ae.Code, ae.Msg, err)
	case errors.Is(err, vault.ErrNotFound):
		if rewrite.IsCardNumber(v.Text) {
			return refuse(http.StatusUnprocessableEntity, CodeNotAToken, "holds a card number, not a token; egress only reveals tokens", nil)
		}
		if card != "" {
			return refuse(http.StatusUnprocessableEntity, CodeUnknownToken, "no value under this token is bound to the card token sent with it, or it has expired", nil)
		}
		return refuse(http.StatusUnprocessableEntity, CodeUnknownToken, "no such token, or it has expired", nil)
	case errors.Is(err, vault.ErrUnbound):
		return refuse(http.StatusUnprocessableEntity, CodeUnboundToken, "is a short token, which reveals only together with the card token it is bound to; bind this field to the route's card field (bind:)", nil)
	case err != nil:
		ae := toAPIError(err)
		return refuse(ae.Status, ae.Code, ae.Msg, err)
	}
	ev.Outcome = "ok"
	if aerr := e.s.mustRecord(r, ev, "reveal"); aerr != nil {
		return "", aerr
	}
	e.s.metrics.revealed.WithLabelValues("egress", "ok").Inc()
	st := sendFrom(r.Context())
	st.revealed.add(rv.Value, v.Text, v.Path)
	st.count++
	if st.paths == nil {
		st.paths = map[string]bool{}
	}
	st.paths[v.Path] = true
	return rv.Value, nil
}
