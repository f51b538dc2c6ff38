package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// The route table: what inbound ([Route]) and egress ([EgressRoute])
// routes share. A route is compiled once (compileRoute: its fields into a
// rewriter, its method and path into a pathMatch, its bindings resolved); a
// request is matched on its method, its cleaned path and, on egress, its
// host (requestHost); a body the route reads is buffered and decoded
// (readRouteBody), rewritten by the caller, and put back decoded with its
// length fixed up (replaceBody) before the reverse proxy forwards it.

// RouteField is one configured field of a route.
type RouteField struct {
	JSON string // selector, see rewrite.ValidateJSONSelector
	Form string // form key, see rewrite.ValidateFormSelector
	XML  string // element path, see rewrite.ValidateXMLSelector
	Spec vault.Spec
	// Bind, if set, is the selector (of the same kind) of the route's card
	// field this value is bound to; see bind.go. Inbound, Spec.Bound must
	// be set with it.
	Bind string
}

// compiledRoute is what every route is compiled into.
type compiledRoute struct {
	match    pathMatch
	rewriter *rewrite.Rewriter // reads the route's fields, and guards
	bindTo   []int             // by field: the field it is bound to, or -1
}

// compileRoute compiles a route's method, path and fields, the fields'
// rewriter configured as base (which has no fields of its own). Every
// problem is reported, each prefixed with what (`route "checkout"`). If the
// rewriter cannot be built, the result's rewriter is nil and nothing else
// is compiled.
func compileRoute(what string, base rewrite.Config, method, path string, fields []RouteField) (compiledRoute, error) {
	var c compiledRoute
	cfg := base
	for i, f := range fields {
		cfg.Fields = append(cfg.Fields, rewrite.Field{JSON: f.JSON, Form: f.Form, XML: f.XML, Spec: i})
	}
	rewriter, err := rewrite.New(cfg)
	if err != nil {
		return c, fmt.Errorf("%s: %w", what, err)
	}
	c.rewriter = rewriter
	var errs []error
	if c.match, err = newPathMatch(method, path); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
	}
	if c.bindTo, err = bindings(fields); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", what, err))
	}
	return c, errors.Join(errs...)
}

// pathMatch is a route's method and path as configured: an exact path, or
// a prefix ending in "/*" ("/api/*" matches "/api" and everything below).
// Matching is on the decoded, cleaned path without ";params",
// case-insensitively, so "/Checkout/", "/%63heckout" and "/checkout;x" all
// match "/checkout": when in doubt, tok treats the request as the route's.
type pathMatch struct {
	method string // "" matches any method
	path   string // cleaned and lower-cased, without the "/*"
	prefix bool
}

func newPathMatch(method, p string) (pathMatch, error) {
	if !strings.HasPrefix(p, "/") {
		return pathMatch{}, fmt.Errorf("path %q must start with /", p)
	}
	base, prefix := strings.CutSuffix(p, "/*")
	return pathMatch{method: method, path: strings.ToLower(cleanPath(base)), prefix: prefix}, nil
}

// matches reports whether a request with method and matchPath p is on m.
func (m pathMatch) matches(method, p string) bool {
	if m.method != "" && !strings.EqualFold(m.method, method) {
		return false
	}
	return p == m.path || m.prefix && (m.path == "/" || strings.HasPrefix(p, m.path+"/"))
}

// matchPath is r's path as routes compare it.
func matchPath(r *http.Request) string { return strings.ToLower(cleanPath(r.URL.Path)) }

// cleanPath is how an app's router is likely to read p: decoded, dot
// segments and repeated slashes removed, no trailing slash, no ";params"
// (Java servlet containers drop them), backslashes as slashes.
func cleanPath(p string) string {
	if strings.Contains(p, ";") {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		p = strings.Join(segs, "/")
	}
	p = strings.ReplaceAll(p, `\`, "/")
	return path.Clean("/" + p)
}

// requestHost is r's Host as egress routes compare it: without its port,
// lower-cased and without a final dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// hasBody reports whether r may carry a body: one that is absent or
// declared empty is not read.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// errFieldsNeedMedia refuses a body the rewriter cannot read on a route
// that carries card fields.
func errFieldsNeedMedia() error {
	return httpx.NewError(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedMediaType,
		"this route carries card fields: send application/json, application/x-www-form-urlencoded or application/xml", nil)

}

// readRouteBody reads r's whole body, at most limit bytes, and decodes its
// Content-Encoding (the decoded body is held to limit too).
func readRouteBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	raw, err := httpx.ReadBody(w, r, limit)
	if err != nil {
		return nil, err
	}
	return rewrite.DecodeBody(raw, r.Header.Get("Content-Encoding"), limit)
}

// replaceBody makes b, a body readRouteBody read and the route rewrote, r's
// body: forwarded decoded (no Content-Encoding), with its own length (no
// Transfer-Encoding, ContentLength set), and replayable through GetBody;
// see inMemoryBody.
func replaceBody(r *http.Request, b []byte) {
	r.Header.Del("Content-Encoding")
	r.Header.Del("Content-Length")
	r.TransferEncoding = nil
	r.ContentLength = int64(len(b))
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// newTransport is http.DefaultTransport cloned and sized for a sidecar: the
// default keeps 2 idle connections per host, which under load means a new
// TCP connection for most requests.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 1024
	t.MaxIdleConnsPerHost = 1024
	t.IdleConnTimeout = 90 * time.Second
	t.ResponseHeaderTimeout = DefaultUpstreamTimeout
	return t
}

// bufferPool lends 32 KiB copy buffers to the reverse proxies.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *b.p.Get().(*[]byte) }
func (b *bufferPool) Put(p []byte) { b.p.Put(&p) }

// inMemoryBody hands the transport the body replaceBody buffered as the
// in-memory reader it is. ReverseProxy wraps the outgoing body in a reader
// of its own (so a failed dial cannot close the incoming body), which
// net/http does not know never blocks, so the transport flushes the headers
// and writes the body separately: two write calls and two TCP segments per
// request where one does. Bodies tok did not buffer stream as before.
func inMemoryBody(pr *httputil.ProxyRequest) {
	if pr.In.GetBody == nil || pr.Out.ContentLength <= 0 {
		return
	}
	if b, err := pr.In.GetBody(); err == nil {
		pr.Out.Body = b
	}
}
