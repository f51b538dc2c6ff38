package proxy

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/proxy/auth"
	"github.com/tokproxy/tok/vault"
)

// What the server needs of the vault's stores, declared here where it is
// used: vault/bolt and vault/postgres implement Store (and vault/memory
// does, for tests), vault/memory implements VolatileStore.

// Store is the durable store as the server uses it: sessions and lockouts
// ([auth.SessionStore]), and a Ping that /readyz reports.
type Store interface {
	auth.SessionStore
	Ping(ctx context.Context) error
}

// VolatileStore is what the server reads of the vault's store of volatile
// values (store: memory): how full it is, for /metrics, and whether it
// answers, for /readyz (a store on Redis can be down while tok is up).
type VolatileStore interface {
	VolatileStats(ctx context.Context) (vault.VolatileStats, error)
	Ping(ctx context.Context) error
}

// volatileStatsTimeout bounds the read behind a scrape (a round trip when
// the store is on Redis).
const volatileStatsTimeout = time.Second

// volatileCollector exports how full the volatile store is: past its cap,
// requests that put values there get 503 volatile_store_full, so alert
// well before tok_volatile_records reaches tok_volatile_records_max. One
// scrape reads the store's stats once, so the gauges agree. A store shared
// by replicas reports the same count on every replica, and a scrape while
// it is down reports NaN.
type volatileCollector struct {
	store                 VolatileStore
	records, max, bytesIn *prometheus.Desc
}

func newVolatileCollector(store VolatileStore) *volatileCollector {
	return &volatileCollector{
		store:   store,
		records: prometheus.NewDesc("tok_volatile_records", "Values held in the volatile store (store: memory; on Redis, all replicas'), including expired ones not yet purged.", nil, nil),
		max:     prometheus.NewDesc("tok_volatile_records_max", "limits.volatile_records: the most values held in the volatile store (0: no cap).", nil, nil),
		bytesIn: prometheus.NewDesc("tok_volatile_bytes", "Bytes of this process's memory allocated to volatile values (absent when they are on Redis).", nil, nil),
	}
}

// Describe implements [prometheus.Collector].
func (c *volatileCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.records
	ch <- c.max
	ch <- c.bytesIn
}

// Collect implements [prometheus.Collector].
func (c *volatileCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), volatileStatsTimeout)
	defer cancel()
	st, err := c.store.VolatileStats(ctx)
	records, max := float64(st.Records), float64(st.MaxRecords)
	if err != nil {
		records, max = math.NaN(), math.NaN()
	}
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, records)
	ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, max)
	if !st.Shared {
		ch <- prometheus.MustNewConstMetric(c.bytesIn, prometheus.GaugeValue, float64(st.SlabBytes))
	}
}

// CommitMetrics are the durable store's commit histograms. The store is
// opened before the [Server]: build CommitMetrics first, wire
// [CommitMetrics.Observe] to the store's commit hook (bolt.Options.OnCommit),
// and pass it in [Options].Commits so /metrics serves it.
type CommitMetrics struct {
	duration prometheus.Histogram
	ops      prometheus.Histogram
}

// NewCommitMetrics returns commit histograms, not yet registered.
func NewCommitMetrics() *CommitMetrics {
	return &CommitMetrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_store_commit_duration_seconds", Help: "Latency of one durable store commit (fsync included).", Buckets: latencyBuckets,
		}),
		ops: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tok_store_commit_ops", Help: "Operations group-committed per store commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
	}
}

// Observe records one durable store commit of ops operations. It is safe
// for concurrent use.
func (c *CommitMetrics) Observe(d time.Duration, ops int) {
	c.duration.Observe(d.Seconds())
	c.ops.Observe(float64(ops))
}

// Describe implements [prometheus.Collector].
func (c *CommitMetrics) Describe(ch chan<- *prometheus.Desc) {
	c.duration.Describe(ch)
	c.ops.Describe(ch)
}

// Collect implements [prometheus.Collector].
func (c *CommitMetrics) Collect(ch chan<- prometheus.Metric) {
	c.duration.Collect(ch)
	c.ops.Collect(ch)
}
