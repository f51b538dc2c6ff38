package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// Forward-proxy mode: the app sets HTTPS_PROXY to tok's egress
// listener and calls its provider's real host, e.g. https://api.stripe.com,
// with its SDK as it ships. tok answers CONNECT for the hosts its routes
// name (match.host) on port 443 and for nothing else (deny by default),
// terminates the tunnel's TLS with a certificate from its own CA
// (Options.ForwardCA), and serves the requests inside it like any egress
// request for that host: revealed, then forwarded to the route's upstream
// with full certificate verification. The egress key travels as the
// password of the proxy URL (http://tok:KEY@127.0.0.1:8081), which HTTP
// clients send in Proxy-Authorization on CONNECT; for a route that takes
// its key from Authorization (egress_key_header), the SDK's own API key on
// each request inside the tunnel is checked instead.

// tunnel is the CONNECT tunnel an egress request came through.
type tunnel struct {
	host string // the host the tunnel was opened to
	key  string // the egress key presented on CONNECT, or ""
}

type tunnelKey struct{}

func tunnelFrom(ctx context.Context) *tunnel {
	t, _ := ctx.Value(tunnelKey{}).(*tunnel)
	return t
}

// connect serves a CONNECT request: a tunnel to a route's host, or a
// refusal.
func (e *egress) connect(w http.ResponseWriter, r *http.Request) error {
	host, port, err := net.SplitHostPort(r.Host)
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	var routes []*egressRoute
	if err == nil && port == "443" {
		for i := range e.routes {
			if e.routes[i].host != "" && e.routes[i].host == host {
				routes = append(routes, &e.routes[i])
			}
		}
	}
	if len(routes) == 0 {
		// Deny by default: only the providers the routes name.
		return httpx.Errorf(http.StatusForbidden, CodeDestinationNotAllowed, "no egress route names this host on port 443; tok tunnels only to its routes' hosts")
	}
	if e.s.opts.ForwardCA == nil {
		return httpx.Errorf(http.StatusNotImplemented, CodeForwardProxyOff, "forward-proxy mode needs tok's CA (tls.egress_ca; create one with tok ca new)")
	}
	_, key, _ := httpx.BasicCredentials(r.Header.Get("Proxy-Authorization"))
	needKey, keyOK := false, false
	for _, rt := range routes {
		// A route whose key the SDK sends in Authorization checks it on
		// every request inside the tunnel instead.
		if rt.EgressKey != "" && !rt.keyInAuthorization() {
			needKey = true
			keyOK = keyEqual(key, rt.EgressKey) || keyOK
		}
	}
	if needKey && !keyOK {
		w.Header().Set("Proxy-Authenticate", `Basic realm="tok egress"`)
		return httpx.Errorf(http.StatusProxyAuthRequired, CodeInvalidEgressKey, "send the route's egress key as the proxy password: http://tok:KEY@host:port")
	}
	t := &tunnel{host: host, key: key}
	srv := e.s.httpServer("egress-tunnel", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requestHost(r) != t.host {
			httpx.WriteJSON(w, http.StatusMisdirectedRequest, httpx.ErrorBody{Error: CodeMisdirectedRequest, Message: "this tunnel serves only the host it was opened to"})
			return
		}
		if rt := e.route(r); rt != nil && rt.host == t.host {
			rt.handler.ServeHTTP(w, r)
			return
		}
		e.noRoute(r).ServeHTTP(w, r)
	}))
	srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, tunnelKey{}, t)
	}
	if !e.s.tunnels.add(srv) {
		return httpx.Errorf(http.StatusServiceUnavailable, CodeShuttingDown, "tok is shutting down")
	}
	defer e.s.tunnels.remove(srv)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return httpx.Errorf(http.StatusInternalServerError, CodeInternal, "cannot open the tunnel")
	}
	defer conn.Close()
	// The listener's deadlines for the CONNECT request stay on a hijacked
	// connection; the tunnel's own server sets its own per request.
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return nil
	}
	var raw net.Conn = conn
	if brw.Reader.Buffered() > 0 { // a client that sent its ClientHello early
		raw = httpx.PrefixedConn(conn, brw.Reader)
	}
	ca := e.s.opts.ForwardCA
	tc := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ca.leaf(host)
		},
	})
	// The tunnel's one connection. Serve returns when the connection is
	// closed, or at once on shutdown while a request may still be in
	// flight on it: the hijacked connection is closed (deferred above)
	// only once the tunnel's server is done with it.
	l := httpx.NewOneConnListener(tc)
	srv.Serve(l)
	l.Wait()
	return nil
}

// tunnelSet is the tunnel servers in use, so that shutdown drains the
// requests in them too: the listeners' servers do not track hijacked
// connections.
type tunnelSet struct {
	mu      sync.Mutex
	servers map[*http.Server]struct{}
	closing bool
}

// add records srv, or reports false once shutdown has begun.
func (t *tunnelSet) add(srv *http.Server) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.servers == nil {
		t.servers = map[*http.Server]struct{}{}
	}
	t.servers[srv] = struct{}{}
	return true
}

func (t *tunnelSet) remove(srv *http.Server) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.servers, srv)
}

// shutdown refuses new tunnels and drains the requests in every open one
// until ctx is done, then closes what is left.
func (t *tunnelSet) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	servers := make([]*http.Server, 0, len(t.servers))
	for srv := range t.servers {
		servers = append(servers, srv)
	}
	t.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
