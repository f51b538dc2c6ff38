package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// Inbound proxy defaults.
const (
	// DefaultMaxInFlight bounds proxied requests in progress; the excess is
	// shed with 503 instead of queueing without limit.
	DefaultMaxInFlight = 256
	// DefaultUpstreamTimeout bounds the wait for the app's response headers.
	DefaultUpstreamTimeout = 30 * time.Second
)

// Route is an inbound route: requests matching Method and Path have the
// values at Fields tokenized before they reach the upstream app.
type Route struct {
	Name   string
	Method string // "" matches any method; compared case-insensitively
	// Path is an exact path, or a prefix ending in "/*" ("/api/*" matches
	// "/api" and everything below it). Matching is on the decoded, cleaned
	// path without ";params", case-insensitively, so "/Checkout/",
	// "//checkout" and "/%63heckout;x" all match "/checkout": when in doubt
	// tok tokenizes.
	Path   string
	Fields []RouteField
	// Uninspected opts the route's bodies out of the guard (config
	// "inspect: false", for binary uploads): they stream to the app unread.
	// Its path, headers and query are still guarded. A route with fields is
	// always inspected.
	Uninspected bool
	// CardHeaders adds the Tok-Card-* headers (see [CardMeta]) to the
	// forwarded request, describing the card at the first of Fields (in
	// their order) that the request carries: one card per request.
	CardHeaders bool
	// Guard, if set, is the route's guard mode instead of
	// GuardOptions.Mode (config "guard: report" rolls the guard out on one
	// route while the others reject).
	Guard *rewrite.GuardMode
}

// GuardOptions configures the card-number guard on every proxied request.
type GuardOptions struct {
	Mode   rewrite.GuardMode
	Ignore []string // JSON selectors exempt from the guard
	// IgnoreHeaders names headers (any case) the guard does not read.
	IgnoreHeaders []string
	// ReportThen is what report mode does with what reject mode would
	// refuse. If empty, ReportForward.
	ReportThen ReportThen
}

type inboundRoute struct {
	Route
	compiledRoute
	guard guardSet
}

// guardSet is how the guard treats one route's requests (or those on paths
// without a route). In report mode a request is first read by decide,
// whose refusals are recorded, then handled by act.
type guardSet struct {
	act     *rewrite.Rewriter // reads the fields and guards as actMode says
	actMode rewrite.GuardMode // reject, tokenize or off
	decide  *rewrite.Rewriter // report mode only: the reject rewriter; else nil
	label   string            // the route label of records and metrics
}

// reads reports whether the guard reads the requests at all.
func (g guardSet) reads() bool { return g.actMode != rewrite.GuardOff || g.decide != nil }

// inbound is the tokenizing reverse proxy on the public listener.
type inbound struct {
	s        *Server
	routes   []inboundRoute
	fallback guardSet // guard only, for paths without a route
	rp       *httputil.ReverseProxy
	slots    chan struct{}
	ignoreH  map[string]bool // lower-cased GuardOptions.IgnoreHeaders
}

func newInbound(s *Server) (*inbound, error) {
	o := s.opts
	in := &inbound{s: s, slots: make(chan struct{}, o.MaxInFlight)}
	var errs []error
	// ReadAll: apps read bodies as JSON, forms and text whatever their
	// declared type, so the guard reads them every way too: a card number
	// is tokenized or refused whatever type the request declares.
	guard := rewrite.Config{Ignore: o.Guard.Ignore, MaxDepth: o.MaxDepth, ReadAll: true}
	in.ignoreH = make(map[string]bool, len(o.Guard.IgnoreHeaders))
	for _, h := range o.Guard.IgnoreHeaders {
		in.ignoreH[strings.ToLower(h)] = true
	}
	fb, err := newGuardSet(o.Guard.Mode, o.Guard.ReportThen, noRouteLabel, func(m rewrite.GuardMode) (*rewrite.Rewriter, error) {
		cfg := guard
		cfg.Guard = m
		return rewrite.New(cfg)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("guard: %w", err))
	}
	in.fallback = fb
	for _, r := range o.Routes {
		mode := o.Guard.Mode
		if r.Guard != nil {
			mode = *r.Guard
		}
		what := fmt.Sprintf("route %q", r.Name)
		var c compiledRoute
		g, err := newGuardSet(mode, o.Guard.ReportThen, r.Name, func(m rewrite.GuardMode) (*rewrite.Rewriter, error) {
			cfg := guard
			cfg.Guard = m
			cr, err := compileRoute(what, cfg, r.Method, r.Path, r.Fields)
			if m != rewrite.GuardReject || mode != rewrite.GuardReport {
				c = cr // the acting rewriter's compile: match, bindings, problems
			}
			return cr.rewriter, err
		})
		if err != nil {
			errs = append(errs, err)
			if g.act == nil {
				continue
			}
		}
		if r.Uninspected && len(r.Fields) > 0 {
			errs = append(errs, fmt.Errorf("route %q: a route with card fields is always inspected", r.Name))
		}
		for i, f := range r.Fields {
			if f.Spec.Bound != (c.bindTo != nil && c.bindTo[i] >= 0) {
				errs = append(errs, fmt.Errorf("route %q: field %s: a bound field needs both bind and a bound spec", r.Name, f.selector()))
			}
		}
		in.routes = append(in.routes, inboundRoute{Route: r, compiledRoute: c, guard: g})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	transport := o.Transport
	if transport == nil {
		transport = newTransport()
	}
	upstream := o.Upstream
	in.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// ReverseProxy drops query parameters it cannot parse (";"
			// separators, bad escapes) before Rewrite; the app gets the
			// query as sent. The guard has read it already, leniently
			// enough to see whatever any server would.
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host // the app routes by the host the shopper used
			pr.SetXForwarded()
			inMemoryBody(pr)
		},
		Transport:    transport,
		BufferPool:   newBufferPool(),
		ErrorHandler: in.upstreamError,
		ErrorLog:     httpx.ErrorLog(s.log, "inbound"),
	}
	return in, nil
}

// newGuardSet builds a guard in mode with build, which returns a rewriter
// guarding in the mode it is given: in report mode, a reject rewriter to
// decide and one acting as then says. The error is the acting rewriter's
// (the deciding one reads the same fields).
func newGuardSet(mode rewrite.GuardMode, then ReportThen, label string, build func(rewrite.GuardMode) (*rewrite.Rewriter, error)) (guardSet, error) {
	g := guardSet{actMode: mode, label: label}
	if mode == rewrite.GuardReport {
		g.actMode = then.actMode()
		d, err := build(rewrite.GuardReject)
		if d == nil {
			return g, err
		}
		g.decide = d
	}
	var err error
	g.act, err = build(g.actMode)
	return g, err
}

// wouldRefuse is the refusal reject mode would make of a request, and
// where: report mode records it once the request is let through.
type wouldRefuse struct {
	where string // body, query or request
	err   *rewrite.Error
}

// decide keeps err, a refusal of g's deciding rewriter in report mode, in
// *would, unless an earlier part of the request was refused already:
// reject mode stops at its first refusal. An error that is not a refusal
// is returned: report mode records decisions, it does not forward what
// tok failed to read.
func decide(would **wouldRefuse, where string, err error) error {
	if err == nil {
		return nil
	}
	var re *rewrite.Error
	if !errors.As(err, &re) {
		return err
	}
	if *would == nil {
		*would = &wouldRefuse{where: where, err: re}
	}
	return nil
}

// dryReplace stands in for the tokenizer on the deciding pass of report
// mode: reject mode only reaches it when nothing is refused, and the values
// it returns hold no card number for the later readings to find.
func dryReplace(vals []rewrite.Value) ([]string, error) {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = "tok"
		if v.Kind == rewrite.KindNumber {
			out[i] = "0"
		}
	}
	return out, nil
}

// match returns the route for r, or nil. A route applies to the method
// the app will run, too: Rails, Laravel, Symfony and Express's
// method-override let a POST carry its real method in a header or a
// "_method" query parameter, so a route for PUT matches such a POST.
// (A "_method" in a form body is not seen here; the guard reads the body
// whatever route it is on.)
func (in *inbound) match(r *http.Request) *inboundRoute {
	p := matchPath(r)
	methods := overrideMethods(r)
	for i := range in.routes {
		for _, m := range methods {
			if in.routes[i].match.matches(m, p) {
				return &in.routes[i]
			}
		}
	}
	return nil
}

// overrideMethods is r's method and every method an override names.
func overrideMethods(r *http.Request) []string {
	ms := []string{r.Method}
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		ms = append(ms, r.Header.Values(h)...)
	}
	if strings.Contains(r.URL.RawQuery, "_method") {
		ms = append(ms, r.URL.Query()["_method"]...)
	}
	return ms
}

// serve tokenizes r as its route says and forwards it. Every failure
// before the upstream call refuses the request: nothing is forwarded with
// a card number in it.
func (in *inbound) serve(w http.ResponseWriter, r *http.Request) error {
	select {
	case in.slots <- struct{}{}:
		defer func() { <-in.slots }()
	default:
		return httpx.Errorf(http.StatusServiceUnavailable, CodeOverloaded, "tok is at capacity; retry shortly")
	}
	rt := in.match(r)
	card := seenCard{field: -1}
	g := in.fallback
	if rt != nil {
		g = rt.guard
	}
	dropConnectionHeaders(r)
	dropCardHeaders(r.Header) // only tok sets them: a client must not forge them
	dropCardHeaders(r.Trailer)
	// Past an upgrade (WebSocket) the connection is a tunnel tok cannot
	// read: refused wherever the guard reads bodies.
	inspected := rt != nil && rt.rewriter.HasFields() || g.reads() && (rt == nil || !rt.Uninspected)
	if err := stripH2C(r, inspected); err != nil {
		return err
	}
	// In report mode the deciding rewriter reads each part first; what it
	// would refuse is recorded only once the request is let through.
	var would *wouldRefuse
	if g.decide != nil {
		if err := decide(&would, "request", g.decide.GuardRequest(r.URL.Path, r.Host, r.Header, in.ignoreH)); err != nil {
			return err
		}
	}
	if err := g.act.GuardRequest(r.URL.Path, r.Host, r.Header, in.ignoreH); err != nil {
		return err
	}
	if g.reads() && r.URL.RawQuery != "" {
		if g.decide != nil && would == nil {
			_, err := g.decide.RewriteQuery(r.URL.RawQuery, dryReplace)
			if err := decide(&would, "query", err); err != nil {
				return inQuery(err)
			}
		}
		q, err := g.act.RewriteQuery(r.URL.RawQuery, in.replacer(w, r, rt, &card))
		if err != nil {
			return inQuery(err)
		}
		r.URL.RawQuery = q
	}
	if err := in.rewriteBody(w, r, rt, g, &would, &card); err != nil {
		return err
	}
	if would != nil {
		in.s.wouldRefuse(r, ListenerPublic, g.label, would.where, would.err)
	}
	if card.field >= 0 {
		setCardHeaders(r.Header, rt.Fields[card.field].selector(), in.s.cardMeta(card.digits, card.matchable))
	}
	in.rp.ServeHTTP(w, r)
	return nil
}

// dropConnectionHeaders removes the headers r's Connection header names
// (other than the connection options close, keep-alive and upgrade) before
// tok looks at the request. The reverse proxy removes them on the way out
// as hop-by-hop (RFC 9110 §7.6.1), so "Connection: Content-Type" would
// have tok inspect a body as one type and the app receive it with none.
// Now both see the same headers.
func dropConnectionHeaders(r *http.Request) {
	for _, v := range r.Header.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.TrimSpace(name)
			switch {
			case name == "", strings.EqualFold(name, "close"), strings.EqualFold(name, "keep-alive"), strings.EqualFold(name, "upgrade"):
			default:
				r.Header.Del(name)
			}
		}
	}
}

// stripH2C removes an h2c upgrade (RFC 7540 §3.2): once switched, later
// requests on the connection would tunnel past inspection. Other upgrades
// (WebSocket) are refused where tok reads bodies: everywhere the guard is
// on, except routes with inspect: false.
func stripH2C(r *http.Request, inspected bool) error {
	h2c := r.Header.Get("HTTP2-Settings") != ""
	r.Header.Del("HTTP2-Settings")
	ups := r.Header.Values("Upgrade")
	if len(ups) == 0 {
		return nil
	}
	// Upgrade is a list (RFC 9110 §7.8): "websocket, h2c" lets the app pick h2c.
	for _, v := range ups {
		for p := range strings.SplitSeq(v, ",") {
			h2c = h2c || strings.EqualFold(strings.TrimSpace(p), "h2c")
		}
	}
	if h2c {
		r.Header.Del("Upgrade")
		r.Header.Del("Connection")
		return nil
	}
	if inspected {
		return httpx.Errorf(http.StatusBadRequest, CodeUpgradeNotAllowed, "protocol upgrades are allowed only on routes with inspect: false")
	}
	return nil
}

// rewriteBody buffers, decodes and rewrites r's body when it must be read:
// always, unless the guard is off and the route has no fields, or the
// route opts out of inspection. Those stream through untouched.
// In report mode, what the deciding rewriter would refuse is kept in
// *would (see decide).
func (in *inbound) rewriteBody(w http.ResponseWriter, r *http.Request, rt *inboundRoute, g guardSet, would **wouldRefuse, card *seenCard) error {
	if !hasBody(r) {
		return nil
	}
	rewriter := g.act
	ct := r.Header.Get("Content-Type")
	media, err := rewrite.ParseMediaType(ct)
	switch {
	case !rewriter.HasFields() && !g.reads():
		return nil // nothing to tokenize or guard, whatever the type says
	case rt != nil && rt.Uninspected:
		return nil // the operator opted the route out (tok check warns)
	case len(r.Header.Values("Content-Type")) > 1:
		// tok would read the first; a server that keeps the last (gunicorn's
		// WSGI environ does) would parse another type than tok inspected.
		return httpx.NewError(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedMediaType,
			"more than one Content-Type header: send one", nil)
	case len(r.Header.Values("Content-Encoding")) > 1:
		return httpx.NewError(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedEncoding,
			"more than one Content-Encoding header: send one", nil)
	case err != nil:
		if g.decide != nil && !rewriter.HasFields() && g.actMode == rewrite.GuardOff {
			return decide(would, "body", err) // forwarded unread, as with the guard off
		}
		return err
	case rewriter.HasFields() && media == rewrite.MediaOther:
		return errFieldsNeedMedia()
	}
	body, err := readRouteBody(w, r, in.s.opts.MaxBody)
	if err != nil {
		return err
	}
	// Rewrite reads the body as its type says and every other way an app
	// might (rewrite.Config.ReadAll); a body without a Content-Type is a
	// form to Rack (Rails, Sinatra), whatever the method.
	if g.decide != nil && *would == nil {
		_, err := g.decide.Rewrite(body, ct, dryReplace)
		if err := decide(would, "body", err); err != nil {
			return err
		}
	}
	out, err := rewriter.Rewrite(body, ct, in.replacer(w, r, rt, card))
	if err != nil {
		return err
	}
	replaceBody(r, out)
	return nil
}

// replacer tokenizes every value found, in one batched durable commit.
// Guard hits (guard mode tokenize) get the default pan spec; rt is nil on
// paths without a route. Convergent values spend the source address's
// inbound budget first: an app that echoes tokens makes its routes an
// oracle too, and every convergent path has a budget. On a route with
// card headers, card notes the card they describe.
func (in *inbound) replacer(w http.ResponseWriter, r *http.Request, rt *inboundRoute, card *seenCard) rewrite.ReplaceFunc {
	return func(vals []rewrite.Value) ([]string, error) {
		var pair []int
		if rt != nil {
			var err error
			if pair, err = pairBound(vals, rt.bindTo); err != nil {
				return nil, err
			}
		}
		reqs := make([]vault.Request, len(vals))
		n := 0 // convergent values: those looked up by fingerprint
		for i, v := range vals {
			var spec vault.Spec
			if !v.IsGuardHit() {
				spec = rt.Fields[v.Spec].Spec
			}
			if v.Kind == rewrite.KindNumber && spec.Format == vault.FormatOpaque {
				return nil, httpx.NewError(http.StatusUnprocessableEntity, rewrite.CodeFieldType,
					"field "+v.Path+" is a JSON number; its route gives it an opaque (non-numeric) token format", nil)
			}
			d, err := spec.Normalize(v.Text)
			if err != nil {
				return nil, httpx.NewError(http.StatusUnprocessableEntity, CodeInvalidCardNumber,
					"field "+v.Path+" does not hold a valid card number", nil)
			}
			if rt != nil && rt.CardHeaders && !v.IsGuardHit() {
				card.see(v.Spec, spec, d)
			}
			reqs[i] = vault.Request{Value: v.Text, Spec: spec}
			if spec.Bound {
				reqs[i].BindTo = pair[i]
			}
			if convergent(spec) {
				n++
			}
		}
		s := in.s
		if err := s.spend(w, s.budgets.inbound, budgetInbound, sourceKey(r, s.opts.Budgets.TrustedProxies), n, s.opts.Budgets.Inbound); err != nil {
			return nil, err
		}
		toks, err := s.tokenize(r, reqs, pathInbound)
		traceTokens(r, vals, toks, err)
		return toks, err
	}
}

// convergent reports whether the vault looks values of spec up by
// fingerprint (see vault.Tokenize): only those answer "seen before".
func convergent(spec vault.Spec) bool {
	return !spec.Unique && !spec.Volatile && spec.TTL <= 0
}

// upstreamError answers when the app cannot be reached.
func (in *inbound) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	in.s.upstreamError(w, r, err, "proxy")
}
