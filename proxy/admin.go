package proxy

import (
	"net"
	"net/http"
	"strings"

	"github.com/tokproxy/tok/proxy/audit"
)

// AdminHeader must be sent, with the value "1", on every state-changing
// admin request (POST /rekey, POST /keys/retire). A browser sends a custom
// header cross-site only after a CORS preflight, which tok never grants,
// so a web page cannot make a browser on the tok host post to the admin
// listener even where Origin and Sec-Fetch-Site are missing (old browsers).
const AdminHeader = "X-Tok-Admin"

// adminGuard wraps an admin endpoint that hands out the vault, changes it
// or costs the process:
//   - loopback peers asking for a loopback host only (checkLoopback);
//   - no cross-site browser request: Sec-Fetch-Site, if sent, must be
//     same-origin or none (a user typing the URL), and Origin, if sent,
//     must be the admin listener's own;
//   - state-changing methods must carry AdminHeader: 1.
//
// Every refusal, and every error the endpoint returns, is written to the
// audit log (PCI DSS 10.2.1: who, what, when, from where, outcome); with
// audited set, every successful call too. Endpoints that audit their own
// success (backup, rekey) pass audited false.
//
// The audit line names the endpoint by path, the one it was registered
// under (never the request's path, which a caller chooses).
func (s *Server) adminGuard(event, path string, audited bool, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := checkAdminRequest(r)
		if err == nil {
			err = h(w, r)
		}
		if err == nil && !audited {
			return nil
		}
		ev := audit.Event{Event: event, Endpoint: safeMethod(r.Method) + " " + path, Outcome: "ok"}
		if err != nil {
			ev.Outcome = toAPIError(err).Code
		}
		s.tryRecord(r, ev)
		return err
	}
}

// checkAdminRequest is adminGuard's refusal logic.
func checkAdminRequest(r *http.Request) error {
	if err := checkLoopback(r); err != nil {
		return err
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errorf(http.StatusForbidden, CodeCrossSite, "admin endpoints refuse cross-site requests (Sec-Fetch-Site: %s)", safeHeader(site))
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != adminOrigin(r) {
		return errorf(http.StatusForbidden, CodeCrossSite, "admin endpoints refuse requests from another origin")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get(AdminHeader) != "1" {
		return errorf(http.StatusForbidden, CodeAdminHeaderMissing, "state-changing admin requests must carry the header %s: 1", AdminHeader)
	}
	return nil
}

// adminOrigin is the origin a page served by the admin listener itself
// would send: its scheme and the Host the request names.
func adminOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// safeHeader bounds a header value quoted back in an error.
func safeHeader(v string) string {
	if len(v) > 32 {
		v = v[:32]
	}
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e {
			return '?'
		}
		return c
	}, v)
}

// serveNotFound answers paths tok does not serve.
func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) error {
	return errorf(http.StatusNotFound, CodeNotFound, "no such endpoint")
}

// checkLoopback refuses peers not on the loopback interface, and requests
// naming another host.
func checkLoopback(r *http.Request) error {
	ip := net.ParseIP(sourceAddr(r))
	if ip == nil || !ip.IsLoopback() {
		return errorf(http.StatusForbidden, CodeForbidden, "this admin endpoint answers loopback clients only")
	}
	if !loopbackHost(r.Host) {
		// A web page whose name was rebound to 127.0.0.1 reaches us from
		// loopback, but its browser still sends its own name.
		return errorf(http.StatusForbidden, CodeForbidden, "this admin endpoint answers requests for localhost or a loopback address only")
	}
	return nil
}

// loopbackHost reports whether a Host header names this machine's loopback:
// localhost or a loopback IP literal, with or without a port. An empty Host
// (HTTP/1.0) is accepted: no browser sends one.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
