package httpx

import (
	"net/http"
	"strings"
)

// HandlerFunc is an HTTP handler that reports failure as an error, which
// the server's instrumentation turns into the JSON error response (see
// [WriteError]).
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// AllowMethods refuses r with 405 and an Allow header unless its method is
// one of methods.
func AllowMethods(w http.ResponseWriter, r *http.Request, methods ...string) error {
	for _, m := range methods {
		if r.Method == m {
			return nil
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	return Errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "use %s", strings.Join(methods, " or "))
}

// StatusWriter remembers the status written: Status is the answer's (1xx
// are informational, not the answer), Wrote whether one was written.
// Unwrap lets http.ResponseController reach Flush and deadlines on the
// real writer.
type StatusWriter struct {
	http.ResponseWriter
	Status int
	Wrote  bool
}

func (w *StatusWriter) WriteHeader(code int) {
	if !w.Wrote && code >= 200 {
		w.Status, w.Wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if !w.Wrote {
		w.Status, w.Wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
