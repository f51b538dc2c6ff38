package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds the store ping behind /readyz.
const readyTimeout = 2 * time.Second

// AdminHandler serves the admin listener: /healthz (the process answers),
// /readyz (the store answers), /metrics (Prometheus), /backup, and the key
// lifecycle: GET /keys, GET|POST /rekey (see keys.go).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("/readyz", s.instrument("readyz", func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.opts.Store.Ping(ctx); err != nil {
			return &apiError{http.StatusServiceUnavailable, "not_ready", "the vault store does not answer", err}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return nil
	}))
	// Operations that hand out the vault (backup), change it (rekey) or
	// expose the process (profiles) answer loopback peers only, even when
	// the admin listener must be reachable for probes and scrapes (a
	// Kubernetes pod IP): reach them with kubectl port-forward or ssh.
	mux.Handle("/backup", s.instrument("backup", loopbackOnly(s.serveBackup)))
	mux.Handle("/keys", s.instrument("keys", loopbackOnly(s.serveKeys)))
	mux.Handle("/rekey", s.instrument("rekey", loopbackOnly(s.serveRekey)))
	mux.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	// Go's profiler, for operators chasing CPU or memory. Profiles hold no
	// request data.
	pprofFunc := func(route string, h http.HandlerFunc) http.Handler {
		return s.instrument(route, loopbackOnly(func(w http.ResponseWriter, r *http.Request) error {
			h(w, r)
			return nil
		}))
	}
	mux.Handle("/debug/pprof/", pprofFunc("pprof", pprof.Index))
	mux.Handle("/debug/pprof/profile", pprofFunc("pprof", pprof.Profile))
	mux.Handle("/debug/pprof/symbol", pprofFunc("pprof", pprof.Symbol))
	mux.Handle("/debug/pprof/trace", pprofFunc("pprof", pprof.Trace))
	return mux
}

// serveNotFound answers paths tok does not serve.
func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) error {
	return errorf(http.StatusNotFound, "not_found", "no such endpoint")
}

// loopbackOnly refuses h to peers not on the loopback interface.
func loopbackOnly(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ip := net.ParseIP(sourceAddr(r))
		if ip == nil || !ip.IsLoopback() {
			return errorf(http.StatusForbidden, "forbidden", "this admin endpoint answers loopback clients only")
		}
		if !loopbackHost(r.Host) {
			// A web page whose name was rebound to 127.0.0.1 reaches us from
			// loopback, but its browser still sends its own name.
			return errorf(http.StatusForbidden, "forbidden", "this admin endpoint answers requests for localhost or a loopback address only")
		}
		return h(w, r)
	}
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
