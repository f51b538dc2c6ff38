package proxy

import (
	"context"
	"net/http"
	"net/http/pprof"
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
	mux.Handle("/backup", s.instrument("backup", s.serveBackup))
	mux.Handle("/keys", s.instrument("keys", s.serveKeys))
	mux.Handle("/rekey", s.instrument("rekey", s.serveRekey))
	mux.Handle("/metrics", promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{}))
	// Go's profiler, for operators chasing CPU or memory on the loopback
	// admin listener. Profiles hold no request data.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveNotFound answers paths tok does not serve.
func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) error {
	return errorf(http.StatusNotFound, "not_found", "no such endpoint")
}
