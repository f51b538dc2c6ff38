package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// Targets from the issues, checked and printed with the figures.
const (
	targetFieldsRatio   = 0.7 // tok ≥ 0.7 × plain with every token committed
	targetNoFieldsRatio = 0.9 // tok ≥ 0.9 × plain on routes without fields
	targetDeltaP50      = 500 * time.Microsecond
	targetDeltaP99      = 2 * time.Millisecond
	targetRSSAnon       = 64_000_000 // bytes: 64 MB at 64 connections
	targetHandleRate    = 10_000     // durable /handle tokenizations per second
	targetHandleP99     = 10 * time.Millisecond
)

// scenario is one kind of request the proxies are driven with.
type scenario struct {
	name   string
	title  string
	path   string
	kind   panKind
	target float64 // tok's req/s over plain's, at least
}

var scenarios = []scenario{
	{
		name:   "checkout",
		title:  "POST /checkout, ~300 B JSON; tok tokenizes card.number and card.cvc, a new card number per request (every request a durable commit)",
		path:   "/checkout",
		kind:   uniqueValid,
		target: targetFieldsRatio,
	},
	{
		name:   "no fields",
		title:  "POST /cart, the same body with a token where the card was; a route without fields (tok guards it only)",
		path:   "/cart",
		kind:   uniqueInvalid,
		target: targetNoFieldsRatio,
	},
}

func (s scenario) template(t *target) template {
	return newTemplate(http.MethodPost, t.addr, s.path, "application/json", checkoutBody, s.kind)
}

// measured is a load run with what the target process used during it.
type measured struct {
	result
	CPU  time.Duration // user + system CPU of the target process
	Peak memUsage      // highest RSS and RssAnon sampled
	Mem  []memSample   // samples, when asked for
}

// CPUPerRequest is the target's CPU time per answered request.
func (m *measured) CPUPerRequest() time.Duration {
	n := m.OK + m.Shed + m.Other
	if n == 0 {
		return 0
	}
	return m.CPU / time.Duration(n)
}

type memSample struct {
	At time.Duration
	memUsage
}

// measure runs load against t and records t's CPU time and memory, sampled
// every sampleEvery.
func measure(t *target, sampleEvery time.Duration, load func() result) (measured, error) {
	return measureProcs([]*tokbin.Proc{t.p}, sampleEvery, load)
}

// measureProcs runs load and records the CPU time of the processes ps
// (summed) and their memory (each sample the sum over ps), sampled every
// sampleEvery.
func measureProcs(ps []*tokbin.Proc, sampleEvery time.Duration, load func() result) (measured, error) {
	cpuOf := func() (time.Duration, error) {
		var sum time.Duration
		for _, p := range ps {
			if err := p.Running(); err != nil {
				return 0, err
			}
			c, err := cpuTime(p.Pid())
			if err != nil {
				return 0, err
			}
			sum += c
		}
		return sum, nil
	}
	cpu0, err := cpuOf()
	if err != nil {
		return measured{}, err
	}
	var m measured
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			var sum memUsage
			n := 0
			for _, p := range ps {
				if u, err := memoryUsage(p.Pid()); err == nil {
					sum.RSS += u.RSS
					sum.RSSAnon += u.RSSAnon
					n++
				}
			}
			if n == len(ps) {
				m.Mem = append(m.Mem, memSample{time.Since(start), sum})
				m.Peak.RSS = max(m.Peak.RSS, sum.RSS)
				m.Peak.RSSAnon = max(m.Peak.RSSAnon, sum.RSSAnon)
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	})
	r := load()
	close(stop)
	wg.Wait()
	cpu1, err := cpuOf()
	if err != nil {
		return measured{}, err
	}
	m.result, m.CPU = r, cpu1-cpu0
	return m, nil
}

// preflight sends one request of each scenario to each target and wants a
// 2xx answer; on tok's checkout route it also wants tok's metrics to show
// the two fields tokenized.
func preflight(e *env, pans *panSource, out io.Writer) error {
	const tokenized = "tok_tokenize_values_total"
	for _, s := range scenarios {
		for _, t := range []*target{e.plain, e.tok} {
			before, _ := scrape(e.metricsURL)
			status, body, err := probe(t.addr, s.template(t), pans)
			if err != nil {
				return fmt.Errorf("preflight %s %s: %w", t.name, s.path, err)
			}
			if status < 200 || status > 299 {
				hint := ""
				if t == e.tok && status == http.StatusNotFound {
					hint = "\n(tok does not proxy: does this tok pass upstream and inbound from its config to the proxy?)"
				}
				return fmt.Errorf("preflight %s POST %s: HTTP %d: %.300s%s", t.name, s.path, status, body, hint)
			}
			if t != e.tok || s.kind != uniqueValid {
				continue
			}
			after, err := scrape(e.metricsURL)
			if err != nil {
				return fmt.Errorf("preflight: tok metrics: %w", err)
			}
			b, _ := metricValue(before, tokenized, "outcome", "ok")
			a, _ := metricValue(after, tokenized, "outcome", "ok")
			if a-b < 2 {
				return fmt.Errorf("preflight: tok answered POST %s but its metrics show %v values tokenized, want 2 (card.number and card.cvc)", s.path, a-b)
			}
		}
	}
	fmt.Fprintln(out, "preflight: every target answers 2xx; tok tokenizes both checkout fields")
	return nil
}

// benchProxy runs the proxy benchmark: closed loop, open loop, the chart
// sweep and the overload run.
func benchProxy(ctx context.Context, e *env, o options, out io.Writer) error {
	pans := newPANSource()
	if err := preflight(e, pans, out); err != nil {
		return err
	}
	targets := []*target{e.plain, e.tok}
	var tokCapacity float64 // tok's median req/s on checkout
	for _, s := range scenarios {
		fmt.Fprintf(out, "\n== closed loop: %s\n   %d connections, %d rounds of %v per target, interleaved (plain, tok, plain, tok, ...)\n",
			s.title, o.conns, o.rounds, o.duration)
		for _, t := range targets {
			if o.warmup > 0 {
				closedLoop(ctx, t.addr, s.template(t), pans, o.conns, o.warmup)
			}
		}
		before, _ := scrape(e.metricsURL)
		runs, err := closedRounds(ctx, targets, s.template, pans, o, out)
		if err != nil {
			return err
		}
		after, _ := scrape(e.metricsURL)
		ratio := printClosed(out, targets, runs)
		if s.kind == uniqueValid {
			printStoreStats(out, before, after)
			printVolatile(out, after)
		}
		fmt.Fprintf(out, "   target tok ≥ %.1f × plain: %.2f %s\n", s.target, ratio, verdict(ratio >= s.target))
		if s.kind == uniqueValid {
			tokCapacity = median(rates(runs[1]))
			peak := maxRSSAnon(runs[1])
			fmt.Fprintf(out, "   target tok RssAnon ≤ 64 MB at %d connections: peak %.1f MB %s\n",
				o.conns, float64(peak)/1e6, verdict(peak <= targetRSSAnon))
		}
	}

	if o.openDuration > 0 {
		if err := openLoopReport(ctx, e, o, pans, out); err != nil {
			return err
		}
	}
	if o.chart != "" {
		if err := sweep(ctx, e, o, pans, tokCapacity, out); err != nil {
			return err
		}
	}
	if o.overload > 0 {
		if err := overloadReport(ctx, e, o, pans, tokCapacity, out); err != nil {
			return err
		}
	}
	return nil
}

// closedRounds runs o.rounds closed-loop rounds of o.duration over the
// targets in turn (A B A B ...), each target sent requests of tmpl, and
// prints a line per round with the second target's req/s over the first's.
// runs[i] are target i's rounds.
func closedRounds(ctx context.Context, targets []*target, tmpl func(*target) template, pans *panSource, o options, out io.Writer) ([][]measured, error) {
	runs := make([][]measured, len(targets))
	for round := 1; round <= o.rounds; round++ {
		var line strings.Builder
		fmt.Fprintf(&line, "   round %d/%d:", round, o.rounds)
		for i, t := range targets {
			m, err := measure(t, 250*time.Millisecond, func() result {
				return closedLoop(ctx, t.addr, tmpl(t), pans, o.conns, o.duration)
			})
			if err != nil {
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			runs[i] = append(runs[i], m)
			fmt.Fprintf(&line, "  %s %6.0f req/s p99 %-8s", t.name, m.Rate(), fmtDur(percentile(m.Latencies, 99)))
		}
		r := runs[1][len(runs[1])-1].Rate() / runs[0][len(runs[0])-1].Rate()
		fmt.Fprintf(out, "%s  ratio %.2f\n", line.String(), r)
	}
	return runs, nil
}

func rates(ms []measured) []float64 {
	out := make([]float64, len(ms))
	for i := range ms {
		out[i] = ms[i].Rate()
	}
	return out
}

func maxRSSAnon(ms []measured) int64 {
	var peak int64
	for _, m := range ms {
		peak = max(peak, m.Peak.RSSAnon)
	}
	return peak
}

// printClosed prints the closed-loop summary of each target and returns
// the median per-round ratio of the second target's req/s to the first's.
// req/s, p50 and p99 are medians over the rounds; CPU per request is over
// all of them; memory is the peak.
func printClosed(out io.Writer, targets []*target, runs [][]measured) float64 {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   target\treq/s\tp50\tp99\tCPU/req\tRSS\tRssAnon\tnon-2xx\terrors\tratio (median; per round)\t")
	var ratio float64
	for i, t := range targets {
		var p50s, p99s []float64
		var cpu time.Duration
		var served, bad, errs int
		var peak memUsage
		for _, m := range runs[i] {
			p50s = append(p50s, float64(percentile(m.Latencies, 50)))
			p99s = append(p99s, float64(percentile(m.Latencies, 99)))
			cpu += m.CPU
			served += m.OK + m.Shed + m.Other
			bad += m.Shed + m.Other
			errs += m.Errors
			peak.RSS = max(peak.RSS, m.Peak.RSS)
			peak.RSSAnon = max(peak.RSSAnon, m.Peak.RSSAnon)
		}
		cpuPer := time.Duration(0)
		if served > 0 {
			cpuPer = cpu / time.Duration(served)
		}
		ratioCol := "1.00 (baseline)"
		if i > 0 {
			rs := ratios(rates(runs[i]), rates(runs[0]))
			ratio = median(rs)
			parts := make([]string, len(rs))
			for j, r := range rs {
				parts[j] = fmt.Sprintf("%.2f", r)
			}
			ratioCol = fmt.Sprintf("%.2f; %s", ratio, strings.Join(parts, " "))
		}
		fmt.Fprintf(tw, "   %s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\n", t.name, median(rates(runs[i])),
			fmtDur(time.Duration(median(p50s))), fmtDur(time.Duration(median(p99s))), fmtDur(cpuPer),
			fmtBytes(peak.RSS), fmtBytes(peak.RSSAnon), bad, errs, ratioCol)
	}
	tw.Flush()
	for i, t := range targets {
		for _, m := range runs[i] {
			if m.FirstProblem != "" {
				fmt.Fprintf(out, "   %s: first problem: %s\n", t.name, m.FirstProblem)
				break
			}
		}
	}
	return ratio
}

// openLoopReport runs each target at the fixed rate and prints latency and
// tok's deltas.
func openLoopReport(ctx context.Context, e *env, o options, pans *panSource, out io.Writer) error {
	s := scenarios[0]
	fmt.Fprintf(out, "\n== open loop: %.0f req/s for %v per target, %s\n   latency from each request's scheduled send time; at most %d in flight\n",
		o.rate, o.openDuration, s.path, o.conns)
	targets := []*target{e.plain, e.tok}
	ms := make([]measured, len(targets))
	var before, after []byte // tok's metrics around its run
	for i, t := range targets {
		var lerr error
		if t == e.tok {
			before, _ = scrape(e.metricsURL)
		}
		m, err := measure(t, 250*time.Millisecond, func() result {
			r, err := openLoop(ctx, t.addr, s.template(t), pans, o.rate, o.conns, o.openDuration)
			lerr = err
			return r
		})
		if err := errors.Join(err, lerr); err != nil {
			return err
		}
		if t == e.tok {
			after, _ = scrape(e.metricsURL)
		}
		ms[i] = m
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   target\t2xx/s\tp50\tp99\tp99.9\tmax\tCPU/req\tRssAnon\tnon-2xx\terrors\tmissed\t")
	for i, t := range targets {
		m := &ms[i]
		fmt.Fprintf(tw, "   %s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t\n", t.name, m.Rate(),
			fmtDur(percentile(m.Latencies, 50)), fmtDur(percentile(m.Latencies, 99)), fmtDur(percentile(m.Latencies, 99.9)),
			fmtDur(percentile(m.Latencies, 100)), fmtDur(m.CPUPerRequest()), fmtBytes(m.Peak.RSSAnon),
			m.Shed+m.Other, m.Errors, m.Missed)
	}
	tw.Flush()
	// How much of tok's latency is its store: commit latency (WAL write and
	// fdatasync) as tok's own histogram saw it during the run.
	p50, ok50 := bucketQuantile(before, after, "tok_store_commit_duration_seconds", 0.50)
	p99, ok99 := bucketQuantile(before, after, "tok_store_commit_duration_seconds", 0.99)
	if ok50 && ok99 {
		fmt.Fprintf(out, "   tok store commits (fsync included), from tok's histogram: p50 ≤ %s, p99 ≤ %s\n",
			fmtSeconds(p50), fmtSeconds(p99))
	}
	for i, t := range targets {
		if m := &ms[i]; m.FirstProblem != "" {
			fmt.Fprintf(out, "   %s: first problem: %s\n", t.name, m.FirstProblem)
		}
	}
	for i, t := range targets {
		if m := &ms[i]; m.OK == 0 || m.Shed+m.Other+m.Errors+m.Missed > 0 {
			fmt.Fprintf(out, "   latency targets not judged: %s did not answer every request 2xx\n", t.name)
			return nil
		}
	}
	d50 := percentile(ms[1].Latencies, 50) - percentile(ms[0].Latencies, 50)
	d99 := percentile(ms[1].Latencies, 99) - percentile(ms[0].Latencies, 99)
	fmt.Fprintf(out, "   target tok p50 ≤ plain + %v: %s %s\n", targetDeltaP50, fmtDelta(d50), verdict(d50 <= targetDeltaP50))
	fmt.Fprintf(out, "   target tok p99 ≤ plain + %v: %s %s\n", targetDeltaP99, fmtDelta(d99), verdict(d99 <= targetDeltaP99))
	return nil
}

// overloadReport drives tok at a multiple of its measured capacity and
// reports its memory over time and what it shed.
func overloadReport(ctx context.Context, e *env, o options, pans *panSource, capacity float64, out io.Writer) error {
	if capacity <= 0 || math.IsNaN(capacity) {
		return errors.New("overload: no capacity measured")
	}
	rate := math.Min(o.overloadX*capacity, 200_000)
	s := scenarios[0]
	fmt.Fprintf(out, "\n== overload: tok at %.1f × its capacity = %.0f req/s for %v, %s, up to %d connections\n",
		o.overloadX, rate, o.overload, s.path, o.overloadConns)
	var lerr error
	m, err := measure(e.tok, time.Second, func() result {
		r, err := openLoop(ctx, e.tok.addr, s.template(e.tok), pans, rate, o.overloadConns, o.overload)
		lerr = err
		return r
	})
	if err := errors.Join(err, lerr); err != nil {
		return err
	}
	var line strings.Builder
	line.WriteString("   tok RssAnon over time:")
	for i, ms := range m.Mem {
		if i > 0 && i%8 == 0 {
			line.WriteString("\n                         ")
		}
		fmt.Fprintf(&line, " %3.0fs %5.1fMB", ms.At.Seconds(), float64(ms.RSSAnon)/1e6)
	}
	fmt.Fprintln(out, line.String())
	sent := m.OK + m.Shed + m.Other + m.Errors
	fmt.Fprintf(out, "   sent %d (%.0f/s): 2xx %d (%.0f/s, p50 %s, p99 %s), 503 shed %d, other non-2xx %d, errors %d; not sent (generator behind) %d\n",
		sent, float64(sent)/m.Elapsed.Seconds(), m.OK, m.Rate(), fmtDur(percentile(m.Latencies, 50)), fmtDur(percentile(m.Latencies, 99)),
		m.Shed, m.Other, m.Errors, m.Missed)
	if m.FirstProblem != "" {
		fmt.Fprintf(out, "   first problem: %s\n", m.FirstProblem)
	}
	first, last := int64(0), int64(0)
	if len(m.Mem) > 0 {
		first, last = m.Mem[0].RSSAnon, m.Mem[len(m.Mem)-1].RSSAnon
	}
	fmt.Fprintf(out, "   tok RssAnon: start %.1f MB, peak %.1f MB, end %.1f MB; tok ready afterwards: %s\n",
		float64(first)/1e6, float64(m.Peak.RSSAnon)/1e6, float64(last)/1e6, readyState(e))
	return nil
}

func readyState(e *env) string {
	if err := tokbin.HTTPReady(strings.TrimSuffix(e.metricsURL, "/metrics") + "/readyz")(); err != nil {
		return "NO (" + err.Error() + ")"
	}
	return "yes"
}

// sweep runs both targets over a range of open-loop rates and draws the
// latency chart.
func sweep(ctx context.Context, e *env, o options, pans *panSource, capacity float64, out io.Writer) error {
	if capacity <= 0 || math.IsNaN(capacity) {
		return errors.New("chart: no capacity measured")
	}
	rs := []float64{o.rate}
	for _, f := range []float64{0.1, 0.25, 0.5, 0.75, 0.9, 1.0} {
		r := math.Round(f * capacity)
		if math.Abs(r-o.rate) > 0.05*o.rate { // -rate is measured anyway
			rs = append(rs, r)
		}
	}
	slices.Sort(rs)
	s := scenarios[0]
	fmt.Fprintf(out, "\n== rate sweep for the chart: %s, %v per rate and target\n", s.path, o.sweepDuration)
	targets := []*target{e.plain, e.tok}
	series := make([]chartSeries, 2*len(targets))
	for i, t := range targets {
		series[2*i] = chartSeries{Name: t.name + " p50", Color: seriesColors[i], Dashed: true}
		series[2*i+1] = chartSeries{Name: t.name + " p99", Color: seriesColors[i]}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "   rate\ttarget\t2xx/s\tp50\tp99\tnon-2xx\tmissed\t")
	for _, rate := range rs {
		if rate < 1 {
			continue
		}
		for i, t := range targets {
			r, err := openLoop(ctx, t.addr, s.template(t), pans, rate, o.conns, o.sweepDuration)
			if err != nil {
				return err
			}
			p50, p99 := percentile(r.Latencies, 50), percentile(r.Latencies, 99)
			series[2*i].Points = append(series[2*i].Points, chartPoint{rate, p50.Seconds() * 1000})
			series[2*i+1].Points = append(series[2*i+1].Points, chartPoint{rate, p99.Seconds() * 1000})
			fmt.Fprintf(tw, "   %.0f\t%s\t%.0f\t%s\t%s\t%d\t%d\t\n", rate, t.name, r.Rate(), fmtDur(p50), fmtDur(p99), r.Shed+r.Other, r.Missed)
		}
	}
	tw.Flush()
	if err := writeChart(o.chart, "latency by rate (ms)", series); err != nil {
		return err
	}
	fmt.Fprintf(out, "   wrote %s\n", o.chart)
	return nil
}

// fmtSeconds formats a histogram bucket bound in seconds.
func fmtSeconds(s float64) string {
	if math.IsInf(s, 1) {
		return "+Inf"
	}
	return fmtDur(time.Duration(s * float64(time.Second)))
}

// printStoreStats prints tok's durable-store commits between two scrapes
// of its metrics.
func printStoreStats(out io.Writer, before, after []byte) {
	commits := delta(before, after, "tok_store_commit_ops_count")
	ops := delta(before, after, "tok_store_commit_ops_sum")
	secs := delta(before, after, "tok_store_commit_duration_seconds_sum")
	if commits <= 0 {
		fmt.Fprintln(out, "   tok store: no commit metrics (tok_store_commit_ops); operations per commit not measured")
		return
	}
	fmt.Fprintf(out, "   tok store: %.0f durable commits, %.1f operations per commit, %s per commit (fsync included) on average\n",
		commits, ops/commits, fmtDur(time.Duration(secs/commits*float64(time.Second))))
}

// printVolatile prints how full tok's memory store of CVCs is: it holds
// about rate × (ttl + 1 s) of them, and that is part of tok's RssAnon.
func printVolatile(out io.Writer, after []byte) {
	held, ok := metricValue(after, "tok_volatile_records")
	limit, _ := metricValue(after, "tok_volatile_records_max")
	bytes, _ := metricValue(after, "tok_volatile_bytes")
	if ok {
		fmt.Fprintf(out, "   tok volatile store (CVCs, ttl %s): %.0f held of %.0f at the end, %s of slabs\n",
			cvcTTL, held, limit, fmtBytes(int64(bytes)))
	}
}
