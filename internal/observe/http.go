package observe

import (
	"net/http"
	"strconv"
	"time"
)

// HTTP wraps next with request counting, timing and the in-flight gauge. route is the fixed label for
// everything next serves, normally its mux pattern ("/graphql", "/healthz"); it is never taken from
// the request, so unknown paths cannot add series.
func (m *Metrics) HTTP(route string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	duration := m.httpDuration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.httpInFlight.Inc()
		rec := &statusWriter{ResponseWriter: w}
		finished := false
		defer func() {
			m.httpInFlight.Dec()
			status := rec.status
			switch {
			case !finished:
				status = http.StatusInternalServerError // next panicked; the recoverer answers 500
			case status == 0:
				status = http.StatusOK // nothing written: net/http sends 200
			}
			duration.Observe(time.Since(start).Seconds())
			m.httpRequests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(status)).Inc()
		}()
		next.ServeHTTP(rec, r)
		finished = true
	})
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodHead, http.MethodOptions, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodConnect, http.MethodTrace:
		return method
	}
	return labelOther
}

// statusWriter records the status code sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code // informational (1xx) answers precede the real one
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
