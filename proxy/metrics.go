package proxy

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
	vredis "github.com/tokproxy/tok/vault/redis"
)

// metrics are tok's Prometheus series. Labels are fixed route names, status
// codes and outcomes: never a token, a PAN or anything a client chose.
type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	tokenized     *prometheus.CounterVec
	tokenizeDur   prometheus.Histogram
	revealed      *prometheus.CounterVec
	revealDur     prometheus.Histogram
	logins        *prometheus.CounterVec
	storeCommit   prometheus.Histogram
	storeCommitOp prometheus.Histogram
	// recordsCreated and budgetRefusals are what an operator alerts on to
	// see someone searching the card space (issue 19; README, security).
	recordsCreated *prometheus.CounterVec
	budgetRefusals *prometheus.CounterVec
	// sessionsPurged counts expired sessions the janitor removed.
	sessionsPurged prometheus.Counter
	unreadable     *prometheus.CounterVec
}

// latencyBuckets spans 100µs to 2.5s: a tokenization is a commit away.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_http_requests_total", Help: "HTTP requests served, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tok_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: latencyBuckets,
		}, []string{"route"}),
		tokenized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_tokenize_values_total", Help: "Values tokenized, by outcome (ok, error).",
		}, []string{"outcome"}),
		tokenizeDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_tokenize_duration_seconds", Help: "Latency of one Tokenize call (one batch), commit included.", Buckets: latencyBuckets,
		}),
		revealed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_reveal_total", Help: "Token lookups and reveals, by kind (lookup, reveal) and outcome.",
		}, []string{"kind", "outcome"}),
		revealDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_reveal_duration_seconds", Help: "Latency of one token reveal.", Buckets: latencyBuckets,
		}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_logins_total", Help: "Login attempts by outcome.",
		}, []string{"outcome"}),
		storeCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_store_commit_duration_seconds", Help: "Latency of one durable store commit (fsync included).", Buckets: latencyBuckets,
		}),
		storeCommitOp: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_store_commit_ops", Help: "Operations group-committed per store commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		recordsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_records_created_total",
			Help: "New token records stored, by path (handle_anonymous, handle_client, inbound, egress_response); convergent values found again are not counted.",
		}, []string{"path"}),
		budgetRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tok_budget_refusals_total",
			Help: "Requests refused because a budget was spent, by budget (handle_anonymous, handle_client, inbound, reveal).",
		}, []string{"budget"}),
		sessionsPurged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tok_sessions_purged_total", Help: "Expired sessions removed from the store by the session janitor.",
		}),
	}
	for _, p := range []string{pathHandleAnonymous, pathHandleClient, pathInbound, pathEgressResponse} {
		m.recordsCreated.WithLabelValues(p) // present at 0, so rate() and alerts see the series from the start
	}
	for _, b := range []string{budgetHandleAnonymous, budgetHandleClient, budgetInbound, budgetReveal} {
		m.budgetRefusals.WithLabelValues(b)
	}
	m.unreadable = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tok_records_unreadable_total", Help: "Requests that met a vault record which cannot be opened (damaged, or sealed under a key the keyring lacks), by route: run tok vault check.",
	}, []string{"route"})
	reg.MustRegister(m.requests, m.duration, m.tokenized, m.tokenizeDur, m.revealed, m.revealDur,
		m.logins, m.storeCommit, m.storeCommitOp, m.recordsCreated, m.budgetRefusals, m.sessionsPurged, m.unreadable)
	// A caller may hand in a registry that already has these.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err) // unreachable: a fixed set of distinct collectors
			}
		}
	}
	return m
}

// registerVolatile exports how full the volatile store is: past its cap,
// requests that put values there get 503 volatile_store_full, so alert
// well before tok_volatile_records reaches tok_volatile_records_max. A
// store on Redis is counted by the server, for all replicas together.
func registerVolatile(reg *prometheus.Registry, st vault.Store) {
	switch m := st.(type) {
	case *memory.Store:
		if m != nil {
			registerMemory(reg, m)
		}
	case *vredis.Store:
		if m != nil {
			registerRedis(reg, m)
		}
	}
}

// registerMemory exports the fill of the process's own volatile store.
func registerMemory(reg *prometheus.Registry, m *memory.Store) {
	gauge := func(name, help string, f func(memory.Stats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return float64(f(m.Stats())) })
	}
	reg.MustRegister(
		gauge("tok_volatile_records", "Values held in memory (store: memory), including expired ones not yet purged.",
			func(s memory.Stats) int { return s.Records }),
		gauge("tok_volatile_records_max", "limits.volatile_records: the most values held in memory (0: no cap).",
			func(s memory.Stats) int { return s.MaxRecords }),
		gauge("tok_volatile_bytes", "Bytes of memory allocated to values held in memory.",
			func(s memory.Stats) int { return s.SlabBytes }),
	)
}

// volatileStatsTimeout bounds the Redis round trip behind a scrape.
const volatileStatsTimeout = time.Second

// registerRedis exports the fill of a volatile store on Redis, shared by
// every replica: each replica reports the same count. A scrape while Redis
// is down reports NaN.
func registerRedis(reg *prometheus.Registry, m *vredis.Store) {
	gauge := func(name, help string, f func(vredis.Stats) int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), volatileStatsTimeout)
			defer cancel()
			st, err := m.Stats(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(f(st))
		})
	}
	reg.MustRegister(
		gauge("tok_volatile_records", "Values held in the volatile store (store: memory, on Redis, all replicas), including expired ones not yet purged.",
			func(s vredis.Stats) int { return s.Records }),
		gauge("tok_volatile_records_max", "limits.volatile_records: the most values held in the volatile store (0: no cap).",
			func(s vredis.Stats) int { return s.MaxRecords }),
	)
}

// registerQuota exports limits.vault_bytes and the size last measured:
// past it, new cards get 507 vault_full.
func registerQuota(reg *prometheus.Registry, q *vault.Quota) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tok_vault_bytes",
			Help: "Bytes the durable store takes on disk, as last measured for limits.vault_bytes (at most a second old while tokens are minted)."},
			func() float64 { return float64(q.Last()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tok_vault_bytes_max",
			Help: "limits.vault_bytes: past it, card numbers without a token are refused with 507 vault_full."},
			func() float64 { return float64(q.Max()) }),
	)
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *metrics) observeTokenize(n int, d time.Duration, err error) {
	m.tokenized.WithLabelValues(outcome(err)).Add(float64(n))
	m.tokenizeDur.Observe(d.Seconds())
}

// ObserveCommit records one durable store commit of ops operations. Wire it
// to the store's commit hook (bolt.Options.OnCommit).
func (s *Server) ObserveCommit(d time.Duration, ops int) {
	s.metrics.storeCommit.Observe(d.Seconds())
	s.metrics.storeCommitOp.Observe(float64(ops))
}

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
	if ae.Code == codeRecordUnreadable {
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
