package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// instrument wraps h with error rendering, logging and metrics for route.
func (s *Server) instrument(route string, h httpx.HandlerFunc) http.Handler {
	dur := s.metrics.duration.WithLabelValues(route)
	// Most answers are 200: their counter is looked up once, on the first
	// (not before, so /metrics lists only the codes a route has answered),
	// rather than hashing both labels and formatting the code per request.
	ok := sync.OnceValue(func() prometheus.Counter { return s.metrics.requests.WithLabelValues(route, "200") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpx.StatusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			ae := toAPIError(err)
			traceRefusal(r, err)
			s.logError(r, route, ae)
			if !sw.Wrote {
				httpx.WriteError(sw, ae)
			}
			if ae.Status == httpx.StatusClientClosed {
				sw.Status = httpx.StatusClientClosed
			}
		}
		if sw.Status == 0 {
			sw.Status = http.StatusOK
		}
		if sw.Status == http.StatusOK {
			ok().Inc()
		} else {
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.Status)).Inc()
		}
		dur.Observe(time.Since(start).Seconds())
	})
}

func (s *Server) logError(r *http.Request, route string, ae *httpx.Error) {
	attrs := []any{"route", route, "method", httpx.SafeMethod(r.Method), "status", ae.Status, "code", ae.Code, "remote", r.RemoteAddr}
	if ae.Code == CodeRecordUnreadable {
		s.metrics.unreadable.WithLabelValues(route).Inc()
	}
	if ae.Err != nil {
		attrs = append(attrs, "err", ae.Err.Error())
	}
	switch {
	case ae.Status == httpx.StatusClientClosed:
	case ae.Status >= 500:
		s.log.Error("request failed", attrs...)
	default:
		s.log.Debug("request refused", attrs...)
	}
}
