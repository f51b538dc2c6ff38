package proxy

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tokproxy/tok/vault"
)

// metrics are tok's Prometheus series. Labels are fixed route names, status
// codes and outcomes: never a token, a PAN or anything a client chose.
type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	tokenized   *prometheus.CounterVec
	tokenizeDur prometheus.Histogram
	revealed    *prometheus.CounterVec
	revealDur   prometheus.Histogram
	logins      *prometheus.CounterVec
	// recordsCreated and budgetRefusals are what an operator alerts on to
	// see someone searching the card space (README, security).
	recordsCreated *prometheus.CounterVec
	budgetRefusals *prometheus.CounterVec
	// sessionsPurged counts expired sessions the janitor removed.
	sessionsPurged prometheus.Counter
	unreadable     *prometheus.CounterVec
	// wouldRefuse counts what report mode let through that reject mode
	// would have refused (report.go).
	wouldRefuse *prometheus.CounterVec
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
	m.wouldRefuse = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tok_would_refuse_total", Help: "Requests a guard in report mode let through that reject mode would have refused, by listener, route and code.",
	}, []string{"listener", "route", "code"})
	reg.MustRegister(m.requests, m.duration, m.tokenized, m.tokenizeDur, m.revealed, m.revealDur,
		m.logins, m.recordsCreated, m.budgetRefusals, m.sessionsPurged, m.unreadable, m.wouldRefuse)
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
