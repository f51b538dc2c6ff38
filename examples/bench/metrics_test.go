package main

import (
	"bytes"
	"fmt"
	"math"
	"testing"
)

func TestMetricValue(t *testing.T) {
	expo := []byte(`# HELP tok_tokenize_values_total Values tokenized.
# TYPE tok_tokenize_values_total counter
tok_tokenize_values_total{outcome="error"} 3
tok_tokenize_values_total{outcome="ok"} 1.2345e+06
tok_store_commit_ops_sum 640
tok_store_commit_ops_count 10
# TYPE tok_commit_seconds histogram
tok_commit_seconds_bucket{le="0.1"} 3
tok_commit_seconds_bucket{le="+Inf"} 4
tok_commit_seconds_sum 0.5
tok_commit_seconds_count 4
`)
	tests := []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"tok_tokenize_values_total", []string{"outcome", "ok"}, 1234500, true},
		{"tok_tokenize_values_total", []string{"outcome", "error"}, 3, true},
		{"tok_tokenize_values_total", nil, 0, false}, // every sample has a label
		{"tok_store_commit_ops_count", nil, 10, true},
		{"tok_store_commit_ops_sum", nil, 640, true},
		{"tok_store_commit_ops", nil, 0, false}, // a prefix of other series
		{"tok_commit_seconds_count", nil, 4, true},
		{"tok_commit_seconds_sum", nil, 0.5, true},
		{"tok_commit_seconds", nil, 0, false}, // a histogram has no plain value
		{"nope", nil, 0, false},
	}
	for _, tt := range tests {
		got, ok := metricValue(expo, tt.name, tt.labels...)
		if got != tt.want || ok != tt.ok {
			t.Errorf("metricValue(%s, %q) = %v, %v; want %v, %v", tt.name, tt.labels, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := metricValue([]byte("tok_x{ 1\n"), "tok_x"); ok {
		t.Error("metricValue read a malformed exposition")
	}
	if got := delta(expo, bytes.Replace(expo, []byte("_count 10"), []byte("_count 25"), 1), "tok_store_commit_ops_count"); got != 15 {
		t.Errorf("delta = %v, want 15", got)
	}
}

func TestBucketQuantile(t *testing.T) {
	const h = "tok_store_commit_duration_seconds"
	expo := func(counts ...int) []byte {
		bounds := []string{"0.0005", "0.001", "0.0025", "+Inf"}
		var b []byte
		b = append(b, "# TYPE "+h+" histogram\n"...)
		for i, c := range counts {
			b = fmt.Appendf(b, "%s_bucket{le=%q} %d\n", h, bounds[i], c)
		}
		return fmt.Appendf(b, "%s_count %d\n", h, counts[len(counts)-1])
	}
	// Before: 10 commits, all under 0.5 ms. After: 100 more, of which 90
	// under 0.5 ms, 8 more under 1 ms, 1 more under 2.5 ms, 1 beyond.
	before, after := expo(10, 10, 10, 10), expo(100, 108, 109, 110)
	for _, tc := range []struct {
		q    float64
		want float64
	}{{0.5, 0.0005}, {0.9, 0.0005}, {0.95, 0.001}, {0.99, 0.0025}, {1, math.Inf(1)}} {
		got, ok := bucketQuantile(before, after, h, tc.q)
		if !ok || got != tc.want {
			t.Errorf("q %v = %v, %v; want %v, true", tc.q, got, ok, tc.want)
		}
	}
	if _, ok := bucketQuantile(after, after, h, 0.99); ok {
		t.Error("no observations in between: ok = true")
	}
	if _, ok := bucketQuantile(nil, []byte(h+"_bucket{le=\"1\"} \n"), h, 0.99); ok {
		t.Error("a bucket line without a count was read")
	}
	if _, ok := bucketQuantile(nil, []byte("other_bucket{le=\"1\"} 5\n"), h, 0.99); ok {
		t.Error("another histogram's buckets were read")
	}
}
