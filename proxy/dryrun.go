package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// DryRunRemoteAddr is the client address a dry run's requests come from
// when they name none (TEST-NET-1, RFC 5737): what X-Forwarded-For shows.
const DryRunRemoteAddr = "192.0.2.1:49152"

// dryRunAnswer is what the stand-in for the app and the providers answers
// every request a dry run forwards.
const dryRunAnswer = `{"dry_run":"tok explain's stand-in for the upstream received this request"}` + "\n"

// DryRun drives tok's own handlers, built from the same [Options] tok
// serve uses, without listeners: each request goes through the inbound or
// egress handler in-process, and whatever they forward lands on a
// loopback stand-in for the app and the providers that records the exact
// bytes it receives and answers 200. Close it when done.
//
// The caller gives Options a throwaway vault (in memory): tokens minted by
// one request can be revealed by a later one. A DryRun serves one request
// at a time.
type DryRun struct {
	s         *Server
	rec       *recorder
	upstreams map[string]string // egress route name → the provider host it stands for
	egressOn  bool
}

// DryRunField is one value a request held at a route's field or where the
// guard found a card-like number.
type DryRunField struct {
	TracedValue
	Selector string // "json:card.number", "form:card[number]", "xml:/a/b"; "" for a guard hit
	Format   string // inbound: the token format; "" on egress
	Store    string // inbound: "vault" or "memory"; "" on egress
	TTL      time.Duration
	Bind     string // the selector of the card field it is bound to
	// RevealTo, MaxReveals and RevealWindow are an inbound field's reveal
	// policy, as its tokens are sealed with it (zero: none).
	RevealTo     []string
	MaxReveals   uint32
	RevealWindow time.Duration
}

// DryRunResult is what a request did.
type DryRunResult struct {
	Listener string // ListenerPublic or ListenerEgress
	// Route is the name of the route the request matched, or "".
	Route string
	// NoRoute says why each route did not match, when none did.
	NoRoute []string
	Fields  []DryRunField
	// Refusal is set when tok refused the request.
	Refusal *TracedRefusal
	// Status and Answer are tok's response to the client.
	Status int
	Answer []byte
	// Forwarded is the request exactly as the app (inbound) or the
	// provider (egress) would receive it, or nil when tok forwarded
	// nothing. It holds card numbers on egress: mask before printing.
	Forwarded []byte
	// Upstream is the host Forwarded is sent to.
	Upstream string
	// WouldRefuse are the refusals reject mode would have made, recorded by
	// a guard in report mode; the request then went on as
	// GuardOptions.ReportThen says.
	WouldRefuse []Decision
}

// NewDryRun builds a Server from opts with its upstreams replaced by the
// recording stand-in. Its TLS listeners, forward-proxy CA and egress keys
// are left out: a dry run has no listener and no app to authenticate.
func NewDryRun(opts Options) (*DryRun, error) {
	rec, err := newRecorder()
	if err != nil {
		return nil, err
	}
	d := &DryRun{rec: rec, upstreams: map[string]string{}}
	stand := &url.URL{Scheme: "http", Host: rec.addr}
	if opts.Upstream != nil {
		u := *opts.Upstream
		u.Scheme, u.Host = stand.Scheme, stand.Host
		opts.Upstream = &u
	}
	egress := make([]EgressRoute, len(opts.Egress))
	for i, r := range opts.Egress {
		if r.Upstream != nil {
			d.upstreams[r.Name] = r.Upstream.Host
			u := *r.Upstream
			u.Scheme, u.Host = stand.Scheme, stand.Host
			r.Upstream = &u
		}
		r.EgressKey, r.RootCAs = "", nil
		egress[i] = r
	}
	opts.Egress = egress
	opts.TLS, opts.ForwardCA, opts.Audit, opts.Backup = nil, nil, nil, nil
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(opts)
	if err != nil {
		rec.close()
		return nil, err
	}
	d.s, d.egressOn = s, s.egress != nil
	return d, nil
}

// Close stops the stand-in upstream.
func (d *DryRun) Close() error { return d.rec.close() }

// Do serves r on listener (ListenerPublic or ListenerEgress) and reports
// what tok did with it. r is a server request, as [http.ReadRequest]
// returns it; its body is consumed.
func (d *DryRun) Do(ctx context.Context, listener string, r *http.Request) (*DryRunResult, error) {
	var h http.Handler
	switch listener {
	case ListenerPublic:
		h = d.s.PublicHandler()
	case ListenerEgress:
		if !d.egressOn {
			return nil, errors.New("the config has no egress routes")
		}
		h = d.s.EgressHandler()
	default:
		return nil, fmt.Errorf("dry run: unknown listener %q", listener)
	}
	if r.RemoteAddr == "" {
		r.RemoteAddr = DryRunRemoteAddr
	}
	res := &DryRunResult{Listener: listener}
	res.Route, res.NoRoute = d.route(listener, r)
	tr := &Trace{}
	r = r.WithContext(WithTrace(ctx, tr))
	d.rec.reset()
	w := httptest.NewRecorder()
	before := d.s.reports.count()
	h.ServeHTTP(w, r)
	res.WouldRefuse = d.s.reports.since(before)
	res.Status, res.Answer = w.Code, w.Body.Bytes()
	res.Refusal = tr.Refusal
	res.Forwarded = d.rec.take()
	if res.Forwarded != nil {
		res.Upstream = r.Host
		if listener == ListenerEgress {
			res.Upstream = d.upstreams[res.Route]
			res.Forwarded = replaceHost(res.Forwarded, d.rec.addr, res.Upstream)
		}
	}
	res.Fields = d.fields(listener, res.Route, tr.Values)
	return res, nil
}

// route returns the name of the route r matches on listener, or "" and
// why each route does not.
func (d *DryRun) route(listener string, r *http.Request) (string, []string) {
	p := matchPath(r)
	var why []string
	if listener == ListenerEgress {
		if rt := d.s.egress.route(r); rt != nil {
			return rt.Name, nil
		}
		host := requestHost(r)
		for _, rt := range d.s.egress.routes {
			switch {
			case rt.host != "" && rt.host != host:
				why = append(why, fmt.Sprintf("egress route %s: host %s is not %s", rt.Name, httpx.SafePath(host), rt.host))
			default:
				why = append(why, mismatch("egress route "+rt.Name, rt.match, rt.Method, rt.Path, r.Method, p))
			}
		}
		return "", why
	}
	if d.s.inbound == nil {
		return "", []string{"the config has no upstream: tok proxies nothing"}
	}
	if rt := d.s.inbound.match(r); rt != nil {
		return rt.Name, nil
	}
	for _, rt := range d.s.inbound.routes {
		why = append(why, mismatch("inbound route "+rt.Name, rt.match, rt.Method, rt.Path, r.Method, p))
	}
	return "", why
}

// mismatch says why a request with method and match path p is not on m.
func mismatch(name string, m pathMatch, method, path, rMethod, p string) string {
	if m.matches(m.method, p) {
		return fmt.Sprintf("%s: method %s is not %s", name, httpx.SafeMethod(rMethod), method)
	}
	return fmt.Sprintf("%s: path %s is not %s", name, httpx.SafePath(p), path)
}

// fields describes each traced value with the configuration of the field
// it was found at.
func (d *DryRun) fields(listener, route string, vals []TracedValue) []DryRunField {
	var fs []RouteField
	switch {
	case route == "":
	case listener == ListenerEgress:
		for _, rt := range d.s.egress.routes {
			if rt.Name == route {
				fs = rt.Fields
			}
		}
	case d.s.inbound != nil:
		for _, rt := range d.s.inbound.routes {
			if rt.Name == route {
				fs = rt.Fields
			}
		}
	}
	out := make([]DryRunField, len(vals))
	for i, v := range vals {
		f := DryRunField{TracedValue: v}
		if v.Field >= 0 && v.Field < len(fs) {
			rf := fs[v.Field]
			f.Selector, f.Bind = rf.selector(), rf.Bind
			if listener == ListenerPublic {
				f.Format, f.Store, f.TTL = rf.Spec.Format.String(), "vault", rf.Spec.TTL
				f.RevealTo, f.MaxReveals, f.RevealWindow = rf.Spec.RevealTo, rf.Spec.MaxReveals, rf.Spec.RevealWindow
				if rf.Spec.Volatile {
					f.Store = "memory"
				}
			}
		} else if listener == ListenerPublic {
			f.Format, f.Store = "pan", "vault" // guard: tokenize gives hits the default spec
		}
		out[i] = f
	}
	return out
}

// replaceHost puts the provider's host back in the Host header of a
// request the stand-in at addr received.
func replaceHost(b []byte, addr, host string) []byte {
	head, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || host == "" {
		return b
	}
	lines := strings.Split(string(head), "\r\n")
	for i, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Host") && strings.TrimSpace(v) == addr {
			lines[i] = k + ": " + host
		}
	}
	return append([]byte(strings.Join(lines, "\r\n")+"\r\n\r\n"), body...)
}

// recorder is the stand-in upstream: a loopback HTTP server that keeps
// every byte it reads since the last reset, exactly as the client wrote
// them.
type recorder struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	buf  bytes.Buffer
	got  bool // a request arrived since the last reset
}

func newRecorder() (*recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("dry run: stand-in upstream: %w", err)
	}
	rec := &recorder{addr: ln.Addr().String()}
	rec.srv = &http.Server{
		ReadHeaderTimeout: readHeaderTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			rec.mu.Lock()
			rec.got = true
			rec.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, dryRunAnswer)
		}),
	}
	go rec.srv.Serve(&recordingListener{Listener: ln, rec: rec}) //nolint:errcheck // Serve returns ErrServerClosed on close
	return rec, nil
}

func (rec *recorder) reset() {
	rec.mu.Lock()
	rec.buf.Reset()
	rec.got = false
	rec.mu.Unlock()
}

// take returns the bytes received since the last reset, or nil when no
// request arrived.
func (rec *recorder) take() []byte {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !rec.got {
		return nil
	}
	return bytes.Clone(rec.buf.Bytes())
}

func (rec *recorder) close() error { return rec.srv.Close() }

type recordingListener struct {
	net.Listener
	rec *recorder
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, rec: l.rec}, nil
}

type recordingConn struct {
	net.Conn
	rec *recorder
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rec.mu.Lock()
		c.rec.buf.Write(p[:n])
		c.rec.mu.Unlock()
	}
	return n, err
}
