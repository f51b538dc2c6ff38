package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"nearest rank rounds up", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 100 is the max", hundred, 99.9, 100 * time.Millisecond},
		{"p100", hundred, 100, 100 * time.Millisecond},
		{"p1", hundred, 1, 1 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestMedianAndRatios(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median odd = %v, want 2", got)
	}
	xs := []float64{4, 1, 3, 2}
	if got := median(xs); got != 2.5 {
		t.Errorf("median even = %v, want 2.5", got)
	}
	if xs[0] != 4 {
		t.Error("median sorted its argument in place")
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	rs := ratios([]float64{80, 90, 70, 5}, []float64{100, 100, 100, 0})
	if len(rs) != 4 || rs[0] != 0.8 || rs[1] != 0.9 || rs[2] != 0.7 || !math.IsNaN(rs[3]) {
		t.Errorf("ratios = %v", rs)
	}
	// The per-round ratio's median is not the ratio of the medians.
	tok, plain := []float64{50, 90, 100}, []float64{100, 100, 100}
	if got := median(ratios(tok, plain)); got != 0.9 {
		t.Errorf("median ratio = %v, want 0.9", got)
	}
	if got := ratios([]float64{1, 2, 3}, []float64{1}); len(got) != 1 {
		t.Errorf("ratios of unequal rounds = %v, want one", got)
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtDur(0), "-"},
		{fmtDur(850 * time.Microsecond), "850µs"},
		{fmtDur(1234 * time.Microsecond), "1.23ms"},
		{fmtDur(2500 * time.Millisecond), "2.50s"},
		{fmtDelta(-300 * time.Microsecond), "-0.30ms"},
		{fmtDelta(1500 * time.Microsecond), "+1.50ms"},
		{fmtBytes(3 << 20), "3.0MiB"},
		{verdict(true), "ok"},
		{verdict(false), "MISSED"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
