package proxy

import (
	"net/http"
	"strconv"
	"time"
)

// handlerFunc is an HTTP handler that reports failure as an error, which
// [Server.instrument] turns into the JSON error response.
type handlerFunc func(http.ResponseWriter, *http.Request) error

// instrument wraps h with error rendering, logging and metrics for route.
func (s *Server) instrument(route string, h handlerFunc) http.Handler {
	dur := s.metrics.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			ae := toAPIError(err)
			traceRefusal(r, err)
			s.logError(r, route, ae)
			if !sw.wrote {
				writeError(sw, ae)
			}
			if ae.Status == 499 {
				sw.status = 499
			}
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		dur.Observe(time.Since(start).Seconds())
	})
}

func (s *Server) logError(r *http.Request, route string, ae *apiError) {
	attrs := []any{"route", route, "method", safeMethod(r.Method), "status", ae.Status, "code", ae.Code, "remote", r.RemoteAddr}
	if ae.Code == CodeRecordUnreadable {
		s.metrics.unreadable.WithLabelValues(route).Inc()
	}
	if ae.Err != nil {
		attrs = append(attrs, "err", ae.Err.Error())
	}
	switch {
	case ae.Status == 499:
	case ae.Status >= 500:
		s.log.Error("request failed", attrs...)
	default:
		s.log.Debug("request refused", attrs...)
	}
}

// statusWriter remembers the status written. Unwrap lets
// http.ResponseController reach Flush and deadlines on the real writer.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 { // 1xx are informational, not the answer
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
