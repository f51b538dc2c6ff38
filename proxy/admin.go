package proxy

import (
	"net/http"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// AdminHeader must be sent, with the value "1", on every state-changing
// admin request (POST /rekey, POST /keys/retire). A browser sends a custom
// header cross-site only after a CORS preflight, which tok never grants,
// so a web page cannot make a browser on the tok host post to the admin
// listener even where Origin and Sec-Fetch-Site are missing (old browsers).
const AdminHeader = "X-Tok-Admin"

// adminGuard wraps an admin endpoint that hands out the vault, changes it
// or costs the process:
//   - loopback peers asking for a loopback host only ([httpx.CheckLoopback]);
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
func (s *Server) adminGuard(event, path string, audited bool, h httpx.HandlerFunc) httpx.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := checkAdminRequest(r)
		if err == nil {
			err = h(w, r)
		}
		if err == nil && !audited {
			return nil
		}
		ev := audit.Event{Event: event, Endpoint: httpx.SafeMethod(r.Method) + " " + path, Outcome: "ok"}
		if err != nil {
			ev.Outcome = toAPIError(err).Code
		}
		s.tryRecord(r, ev)
		return err
	}
}

// checkAdminRequest is adminGuard's refusal logic.
func checkAdminRequest(r *http.Request) error {
	if err := httpx.CheckLoopback(r); err != nil {
		return err
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return httpx.Errorf(http.StatusForbidden, CodeCrossSite, "admin endpoints refuse cross-site requests (Sec-Fetch-Site: %s)", httpx.SafeHeader(site))
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != adminOrigin(r) {
		return httpx.Errorf(http.StatusForbidden, CodeCrossSite, "admin endpoints refuse requests from another origin")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if r.Header.Get(AdminHeader) != "1" {
		return httpx.Errorf(http.StatusForbidden, CodeAdminHeaderMissing, "state-changing admin requests must carry the header %s: 1", AdminHeader)
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

// serveNotFound answers paths tok does not serve.
func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) error {
	return httpx.Errorf(http.StatusNotFound, CodeNotFound, "no such endpoint")
}
