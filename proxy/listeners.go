package proxy

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// Every listener's endpoints, in one place (the proxies' route tables are
// in route.go). Each handler is wrapped by [Server.instrument]
// (middleware.go): error rendering, logging, metrics.

// PublicHandler serves the public listener.
func (s *Server) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/handle", s.instrument("handle", s.serveHandle))
	if s.inbound != nil {
		mux.Handle("/", s.instrument("proxy", s.inbound.serve))
	} else {
		mux.Handle("/", s.instrument("other", s.serveNotFound))
	}
	return mux
}

// AuthHandler serves the auth listener.
func (s *Server) AuthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/login", s.instrument("login", s.serveLogin))
	mux.Handle("/logout", s.instrument("logout", s.serveLogout))
	mux.Handle("/@me", s.instrument("me", s.serveMe))
	mux.Handle("/handle", s.instrument("handle_client", s.serveClientHandle))
	mux.Handle("/", s.instrument("other", s.serveNotFound))
	return mux
}

// AdminHandler serves the admin listener: /healthz (the process answers),
// /readyz (the store answers), /metrics (Prometheus), /backup, /report
// (what report mode would have refused, report.go), and the key
// lifecycle: GET /keys, GET|POST /rekey (see keys.go).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("/readyz", s.instrument("readyz", s.serveReady))
	// Operations that hand out the vault (backup), change it (rekey) or
	// expose the process (profiles) answer loopback peers only, even when
	// the admin listener must be reachable for probes and scrapes (a
	// Kubernetes pod IP): reach them with kubectl port-forward or ssh.
	// They also refuse cross-site requests (see adminGuard) and write an
	// audit line for every refusal and every action.
	mux.Handle("/backup", s.instrument("backup", s.adminGuard("backup", "/backup", false, s.serveBackup)))
	mux.Handle("/keys", s.instrument("keys", s.adminGuard("keys", "/keys", true, s.serveKeys)))
	mux.Handle("/keys/retire", s.instrument("keys", s.adminGuard("keys_retire", "/keys/retire", true, s.serveRetire)))
	mux.Handle("/rekey", s.instrument("rekey", s.adminGuard("rekey", "/rekey", false, s.serveRekey)))
	// What report mode would have refused: paths and offsets, no values,
	// but still a map of where cards show up, so loopback only too.
	mux.Handle("/report", s.instrument("report", s.adminGuard("report", "/report", false, s.serveReport)))
	mux.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	// Go's profiler, for operators chasing CPU or memory. Profiles hold no
	// request data. Starting a CPU profile or a trace is audited.
	pprofFunc := func(path string, audited bool, h http.HandlerFunc) http.Handler {
		return s.instrument("pprof", s.adminGuard("pprof", path, audited, func(w http.ResponseWriter, r *http.Request) error {
			h(w, r)
			return nil
		}))
	}
	mux.Handle("/debug/pprof/", pprofFunc("/debug/pprof/", false, pprof.Index))
	mux.Handle("/debug/pprof/profile", pprofFunc("/debug/pprof/profile", true, pprof.Profile))
	mux.Handle("/debug/pprof/symbol", pprofFunc("/debug/pprof/symbol", false, pprof.Symbol))
	mux.Handle("/debug/pprof/trace", pprofFunc("/debug/pprof/trace", true, pprof.Trace))
	return mux
}

// EgressHandler serves the egress listener.
func (s *Server) EgressHandler() http.Handler {
	if s.egress == nil {
		return s.instrument("egress", s.serveNotFound)
	}
	e := s.egress
	connect := s.instrument("egress_connect", e.connect)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			connect.ServeHTTP(w, r)
			return
		}
		if rt := e.route(r); rt != nil {
			rt.handler.ServeHTTP(w, r)
			return
		}
		e.noRoute(r).ServeHTTP(w, r)
	})
}
