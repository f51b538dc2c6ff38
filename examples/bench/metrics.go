package main

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseExposition decodes a Prometheus text exposition into its metric
// families; nil if it does not parse.
func parseExposition(exposition []byte) map[string]*dto.MetricFamily {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		return nil
	}
	return fams
}

// metricValue returns the value of the sample of the metric name whose
// labels are exactly labels (pairs of name and value) in a Prometheus
// text exposition, and whether it was there. name may end in _sum or
// _count to read a histogram's or a summary's.
func metricValue(exposition []byte, name string, labels ...string) (float64, bool) {
	fams := parseExposition(exposition)
	fam, suffix := fams[name], ""
	if fam == nil {
		for _, s := range []string{"_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, s); ok && fams[base] != nil {
				fam, suffix = fams[base], s
			}
		}
	}
	if fam == nil {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		if hasLabels(m, labels) {
			return sampleValue(m, suffix)
		}
	}
	return 0, false
}

// hasLabels reports whether m's labels are exactly the pairs in labels.
func hasLabels(m *dto.Metric, labels []string) bool {
	if len(m.GetLabel())*2 != len(labels) {
		return false
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}

// sampleValue is m's value, or with suffix _sum or _count its histogram's
// or summary's sum or count.
func sampleValue(m *dto.Metric, suffix string) (float64, bool) {
	switch {
	case suffix == "" && m.Counter != nil:
		return m.Counter.GetValue(), true
	case suffix == "" && m.Gauge != nil:
		return m.Gauge.GetValue(), true
	case suffix == "" && m.Untyped != nil:
		return m.Untyped.GetValue(), true
	case suffix == "_sum" && m.Histogram != nil:
		return m.Histogram.GetSampleSum(), true
	case suffix == "_count" && m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount()), true
	case suffix == "_sum" && m.Summary != nil:
		return m.Summary.GetSampleSum(), true
	case suffix == "_count" && m.Summary != nil:
		return float64(m.Summary.GetSampleCount()), true
	}
	return 0, false
}

// bucketQuantile estimates the q quantile (0 < q ≤ 1) of what a
// Prometheus histogram observed between two expositions: the upper bound
// of the first bucket whose count reaches q of the total, so "at most"
// this value. ok is false if the histogram observed nothing in between;
// +Inf means the quantile is beyond the largest finite bucket.
func bucketQuantile(before, after []byte, histogram string, q float64) (le float64, ok bool) {
	b, a := buckets(before, histogram), buckets(after, histogram)
	if len(a) == 0 {
		return 0, false
	}
	bounds := make([]float64, 0, len(a))
	for le := range a {
		bounds = append(bounds, le)
	}
	slices.Sort(bounds)
	total := a[math.Inf(1)] - b[math.Inf(1)]
	if total <= 0 {
		return 0, false
	}
	want := q * total // buckets are cumulative; the last is +Inf
	for _, le := range bounds {
		if a[le]-b[le] >= want {
			return le, true
		}
	}
	return math.Inf(1), true
}

// buckets returns the cumulative counts of the unlabelled histogram's
// buckets by upper bound, +Inf (the sample count) included.
func buckets(exposition []byte, histogram string) map[float64]float64 {
	fam := parseExposition(exposition)[histogram]
	if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM || len(fam.GetMetric()) == 0 {
		return nil
	}
	h := fam.GetMetric()[0].GetHistogram()
	counts := map[float64]float64{math.Inf(1): float64(h.GetSampleCount())}
	for _, bk := range h.GetBucket() {
		counts[bk.GetUpperBound()] = float64(bk.GetCumulativeCount())
	}
	return counts
}

// delta is a metric's increase between two expositions.
func delta(before, after []byte, name string, labels ...string) float64 {
	a, _ := metricValue(after, name, labels...)
	b, _ := metricValue(before, name, labels...)
	return a - b
}

// scrape fetches a Prometheus exposition.
func scrape(url string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("GET " + url + ": " + resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 8<<20))
}
