package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// The stores -handle compares (-stores).
const (
	storeBolt      = "bolt"      // one tok on a bbolt file
	storePostgres  = "postgres"  // one tok on PostgreSQL
	storePostgres2 = "postgres2" // two toks sharing one PostgreSQL schema
)

var allStores = []string{storeBolt, storePostgres, storePostgres2}

const storesHelp = "comma-separated, of bolt (1 tok on a bbolt file), postgres (1 tok on PostgreSQL), " +
	"postgres2 (2 toks sharing one PostgreSQL schema, the connections split between them)"

// defaultPGPool is -pg-pool: each tok's pgxpool holds up to 16 connections.
// pgxpool's default, max(4, CPUs), is 4 on a 2-core machine: 64 clients
// then queue for 4 connections, each transaction waiting on its commit's
// WAL flush, so PostgreSQL gets too few commits in flight to group them
// (see the README's performance section for the figures of both).
const defaultPGPool = 16

// parseStores parses -stores: known names, each at most once, in the order
// given (the order of each round).
func parseStores(s string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(allStores, f) {
			return nil, fmt.Errorf("unknown store %q; want %s", f, strings.Join(allStores, ", "))
		}
		if slices.Contains(out, f) {
			return nil, fmt.Errorf("%q given twice", f)
		}
		out = append(out, f)
	}
	return out, nil
}

func isPostgresStore(s string) bool { return s == storePostgres || s == storePostgres2 }

// storeProcs is how many tok processes a store's target runs.
func storeProcs(store string) int {
	if store == storePostgres2 {
		return 2
	}
	return 1
}

// targetName is what the report calls a store's target: the store and its
// number of tok processes, "postgres-2".
func targetName(store string) string {
	return strings.TrimSuffix(store, "2") + "-" + strconv.Itoa(storeProcs(store))
}

// handleTarget is tok on one store: one process, or several sharing the
// store, each client connection pinned to one of them.
type handleTarget struct {
	name  string
	store string
	nodes []*tokNode
}

// tokNode is one running tok.
type tokNode struct {
	target
	metricsURL string
}

func (t *handleTarget) procs() []*tokbin.Proc {
	ps := make([]*tokbin.Proc, len(t.nodes))
	for i, n := range t.nodes {
		ps[i] = n.p
	}
	return ps
}

func (t *handleTarget) dests() []dest {
	ds := make([]dest, len(t.nodes))
	for i, n := range t.nodes {
		ds[i] = dest{n.addr, handleTemplate(n.addr)}
	}
	return ds
}

func handleTemplate(addr string) template {
	return newTemplate(http.MethodPost, addr, "/handle", "application/json", handleBody, uniqueValid)
}

// setupHandle starts tok on each store of o.stores: a fresh bolt file, and
// for the postgres targets a fresh schema in o.pgURL, shared by the
// PostgreSQL toks and dropped by e.close. The one-process postgres target
// is the first of the two-process target's toks.
func setupHandle(ctx context.Context, e *env, o options, tokBin, keyring, boltPath string, out io.Writer) error {
	stores := o.stores
	if o.pgURL == "" && slices.ContainsFunc(stores, isPostgresStore) {
		skipped := slices.DeleteFunc(slices.Clone(stores), func(s string) bool { return !isPostgresStore(s) })
		fmt.Fprintf(out, "skipping %s: no PostgreSQL URL (pass -postgres-url postgres://... or set %s)\n",
			strings.Join(skipped, ", "), "TOK_POSTGRES_URL")
		stores = slices.DeleteFunc(slices.Clone(stores), isPostgresStore)
	}
	if len(stores) == 0 {
		return errors.New("-handle: no store left to benchmark")
	}
	var bolt *tokNode
	var pg []*tokNode
	pgProcs := 0
	for _, s := range stores {
		if isPostgresStore(s) {
			pgProcs = max(pgProcs, storeProcs(s))
		}
	}
	if slices.Contains(stores, storeBolt) {
		var err error
		if bolt, err = startTok(ctx, e, tokBin, "tok-bolt", boltPath, keyring, ""); err != nil {
			return err
		}
		fmt.Fprintf(out, "started tok on bbolt (%s) at %s\n", boltPath, bolt.addr)
	}
	if pgProcs > 0 {
		schema := newSchemaName()
		if err := createSchema(ctx, o.pgURL, schema); err != nil {
			return err
		}
		e.cleanups = append(e.cleanups, func(w io.Writer) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := dropSchema(ctx, o.pgURL, schema); err != nil {
				fmt.Fprintf(w, "bench: drop schema %s: %v (drop it by hand)\n", schema, err)
				return
			}
			fmt.Fprintf(w, "dropped schema %s\n", schema)
		})
		tokURL, err := pgTokURL(o.pgURL, schema, o.pgPool)
		if err != nil {
			return err
		}
		for i := range pgProcs {
			n, err := startTok(ctx, e, tokBin, fmt.Sprintf("tok-pg%d", i+1), "", keyring, tokURL)
			if err != nil {
				return err
			}
			pg = append(pg, n)
		}
		pool := "pool_max_conns " + strconv.Itoa(o.pgPool)
		if o.pgPool == 0 {
			pool = "pool size: the URL's pool_max_conns, else pgxpool's default max(4, CPUs)"
		}
		fmt.Fprintf(out, "started %d tok on PostgreSQL (%s, fresh schema %s, %s) at %s\n",
			pgProcs, pgWhere(o.pgURL), schema, pool, strings.Join(addrsOf(pg), ", "))
	}
	for _, s := range stores {
		t := &handleTarget{name: targetName(s), store: s}
		switch s {
		case storeBolt:
			t.nodes = []*tokNode{bolt}
		default:
			t.nodes = pg[:storeProcs(s)]
		}
		e.handle = append(e.handle, t)
	}
	fmt.Fprintf(out, "files in %s\n", e.dir)
	return nil
}

func addrsOf(ns []*tokNode) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.addr
	}
	return out
}

// startTok starts a tok serving POST /handle (no upstream) on boltPath, or
// on the PostgreSQL pgURL if boltPath is empty, and waits until it is
// ready.
func startTok(ctx context.Context, e *env, tokBin, name, boltPath, keyring, pgURL string) (*tokNode, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(e.dir, name+".yaml")
	cfg := tokConfig(addr, admin, "", boltPath, keyring, filepath.Join(e.dir, name+"-audit.log"), "", "opaque")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write tok config: %w", err)
	}
	if pgURL == "" {
		if err := runQuiet(ctx, e.dir, tokBin, "check", "-config", cfgPath); err != nil {
			return nil, err
		}
	}
	p, err := e.procs.startEnv(e.dir, name, tokBin, tokEnv(pgURL), "serve", "-config", cfgPath)
	if err != nil {
		return nil, err
	}
	if err := p.Poll(ctx, tokbin.HTTPReady("http://"+admin+"/readyz")); err != nil {
		return nil, err
	}
	return &tokNode{target: target{name: name, addr: addr, p: p}, metricsURL: "http://" + admin + "/metrics"}, nil
}

// newSchemaName is a schema name no other run uses.
func newSchemaName() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("tok_bench_%d_%s", os.Getpid(), hex.EncodeToString(b))
}

// pgTokURL is the URL tok gets: u with search_path set to schema (tok
// creates its tables in the first schema of the search path) and, if pool
// is above 0, pool_max_conns set to pool.
func pgTokURL(u, schema string, pool int) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		// Never echo the URL: it may carry a password.
		return "", errors.New("-postgres-url: not a postgres:// URL")
	}
	q := p.Query()
	q.Set("search_path", schema)
	if pool > 0 {
		q.Set("pool_max_conns", strconv.Itoa(pool))
	}
	p.RawQuery = q.Encode()
	return p.String(), nil
}

// pgWhere describes the server and database of a postgres:// URL for the
// report, without the user or password.
func pgWhere(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	host := p.Host
	if h := p.Query().Get("host"); h != "" {
		host = h
	}
	return host + p.Path
}

func createSchema(ctx context.Context, u, schema string) error {
	return pgExec(ctx, u, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
}

func dropSchema(ctx context.Context, u, schema string) error {
	return pgExec(ctx, u, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
}

func pgExec(ctx context.Context, u, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL at %s: %w", pgWhere(u), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("PostgreSQL at %s: %s: %w", pgWhere(u), sql, err)
	}
	return nil
}

// pgServer reads the CPU time of a PostgreSQL server on this machine: its
// postmaster and every process it started (backends, WAL writer,
// checkpointer, ...).
type pgServer struct{ postmaster int }

// findPGServer finds the local server behind u, or returns nil when u's
// server is not on this machine or its processes cannot be read.
func findPGServer(ctx context.Context, u string) *pgServer {
	p, err := url.Parse(u)
	if err != nil {
		return nil
	}
	host := p.Hostname()
	if h := p.Query().Get("host"); h != "" {
		host = h
	}
	if ip := net.ParseIP(host); !(host == "localhost" || strings.HasPrefix(host, "/") || (ip != nil && ip.IsLoopback())) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return nil
	}
	defer conn.Close(context.Background())
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil
	}
	st, err := sysProc.stat(backend)
	if err != nil {
		return nil
	}
	s := &pgServer{postmaster: st.PPID}
	if _, err := s.cpu(); err != nil {
		return nil
	}
	return s
}

// cpu is the user plus system CPU time the server's processes have used.
// A process that exits between two readings takes its time with it, but
// the pool's connections (and so their backends) live through a run.
func (s *pgServer) cpu() (time.Duration, error) {
	return sysProc.treeCPU(s.postmaster)
}

// commitStats are tok's durable-store commit metrics over some runs.
type commitStats struct{ commits, ops, secs float64 }

func (c *commitStats) add(before, after []byte) {
	c.commits += delta(before, after, "tok_store_commit_ops_count")
	c.ops += delta(before, after, "tok_store_commit_ops_sum")
	c.secs += delta(before, after, "tok_store_commit_duration_seconds_sum")
}

func scrapeAll(ns []*tokNode) [][]byte {
	out := make([][]byte, len(ns))
	for i, n := range ns {
		out[i], _ = scrape(n.metricsURL)
	}
	return out
}

// preflightHandle wants each tok to tokenize a card number. (It no
// longer compares the tokens toks sharing a vault give one number: the
// anonymous /handle mints a fresh token on every call, so that it
// tells no caller whether a card already has one.)
func preflightHandle(targets []*handleTarget, pans *panSource, out io.Writer) error {
	for _, t := range targets {
		pan := make([]byte, len(panPlaceholder))
		pans.next(pan, uniqueValid)
		for _, n := range t.nodes {
			body := strings.Replace(handleBody, panPlaceholder, string(pan), 1)
			tmpl := newTemplate(http.MethodPost, n.addr, "/handle", "application/json", body, uniqueValid)
			status, resp, err := probe(n.addr, tmpl, pans)
			if err != nil || status != http.StatusOK {
				return fmt.Errorf("preflight %s (%s) POST /handle: HTTP %d: %.300s %w", t.name, n.name, status, resp, err)
			}
		}
	}
	fmt.Fprintln(out, "preflight: every tok answers POST /handle 200")
	return nil
}

// benchHandle measures tok's POST /handle on each target of e.handle:
// durable tokenizations per second from o.conns clients, each request a
// new card number, in interleaved rounds.
func benchHandle(ctx context.Context, e *env, o options, out io.Writer) error {
	pans := newPANSource()
	targets := e.handle
	if err := preflightHandle(targets, pans, out); err != nil {
		return err
	}
	var server *pgServer
	if slices.ContainsFunc(targets, func(t *handleTarget) bool { return isPostgresStore(t.store) }) {
		if server = findPGServer(ctx, o.pgURL); server == nil {
			fmt.Fprintln(out, "PostgreSQL server CPU not measured: the server is not on this machine or its processes cannot be read")
		}
	}
	if o.warmup > 0 {
		for _, t := range targets {
			closedLoopSplit(ctx, t.dests(), pans, o.conns, o.warmup)
		}
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.name
	}
	fmt.Fprintf(out, "\n== POST /handle: a new card number per request (every request a durable commit), %d connections in all, %d rounds of %v per target,\n"+
		"   interleaved (%s; each round starts one target later); a target with 2 toks gets half the connections on each\n",
		o.conns, o.rounds, o.duration, strings.Join(names, ", "))
	runs := make([][]measured, len(targets))
	shares := make([][]int, len(targets))
	serverCPU := make([]time.Duration, len(targets))
	// The machine's idle CPU during each target's rounds: what is left for
	// another tok to turn into throughput on the same machine.
	idle := make([]idleShare, len(targets))
	commits := make([]commitStats, len(targets))
	for i, t := range targets {
		shares[i] = make([]int, len(t.nodes))
	}
	base := baselineIndex(targets)
	for round := 1; round <= o.rounds; round++ {
		for _, i := range roundOrder(len(targets), round) {
			t := targets[i]
			before := scrapeAll(t.nodes)
			var s0 time.Duration
			if server != nil {
				s0, _ = server.cpu()
			}
			var perNode []int
			i0, idleErr := sysProc.idle()
			t0 := time.Now()
			m, err := measureProcs(t.procs(), 250*time.Millisecond, func() result {
				var r result
				r, perNode = closedLoopSplit(ctx, t.dests(), pans, o.conns, o.duration)
				return r
			})
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if server != nil {
				if s1, err := server.cpu(); err == nil {
					serverCPU[i] += s1 - s0
				}
			}
			if i1, err := sysProc.idle(); err == nil && idleErr == nil {
				idle[i].add(i1-i0, time.Since(t0))
			}
			for j, b := range scrapeAll(t.nodes) {
				commits[i].add(before[j], b)
			}
			for j, n := range perNode {
				shares[i][j] += n
			}
			runs[i] = append(runs[i], m)
		}
		var line strings.Builder
		fmt.Fprintf(&line, "   round %d/%d:", round, o.rounds)
		for i, t := range targets {
			m := &runs[i][round-1]
			fmt.Fprintf(&line, "  %s %6.0f/s p99 %-8s", t.name, m.Rate(), fmtDur(percentile(m.Latencies, 99)))
			if i != base {
				fmt.Fprintf(&line, " (%.2f)", m.Rate()/runs[base][round-1].Rate())
			}
		}
		fmt.Fprintln(out, line.String())
	}
	printHandle(out, targets, runs, shares, serverCPU, server != nil, idle, base)
	for i, t := range targets {
		rate, p99 := medianRateP99(runs[i])
		fmt.Fprintf(out, "   %s median: %.0f durable tokenizations/s, p99 %s (target ≥ %d/s with p99 ≤ %v: %s)\n",
			t.name, rate, fmtDur(p99), targetHandleRate, targetHandleP99, verdict(rate >= targetHandleRate && p99 <= targetHandleP99))
	}
	for i, t := range targets {
		c := commits[i]
		if c.commits > 0 {
			fmt.Fprintf(out, "   %s store: %.0f durable commits, %.1f operations per commit, %s per commit (fsync included) on average\n",
				t.name, c.commits, c.ops/c.commits, fmtDur(time.Duration(c.secs/c.commits*float64(time.Second))))
		}
	}
	if o.prefill > 0 {
		fmt.Fprintf(out, "   against a bolt vault prefilled with %d records\n", o.prefill)
	}
	return nil
}

// idleShare is the machine's idle CPU time over some wall time.
type idleShare struct{ idle, wall time.Duration }

func (s *idleShare) add(idle, wall time.Duration) { s.idle += idle; s.wall += wall }

// String is the idle CPU as a number of cores ("0.12"), "-" if unmeasured.
func (s idleShare) String() string {
	if s.wall <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.idle.Seconds()/s.wall.Seconds())
}

// baselineIndex is the target the others are compared with: bolt-1 if it
// runs, else the first.
func baselineIndex(targets []*handleTarget) int {
	return max(0, slices.IndexFunc(targets, func(t *handleTarget) bool { return t.store == storeBolt }))
}

// roundOrder is the order n targets run in round (from 1): each round
// starts one target later than the one before, so no target always follows
// the same other (whose background work, a checkpoint or a vacuum, it
// would pay for).
func roundOrder(n, round int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (round - 1 + i) % n
	}
	return out
}

// ratioToBaseline returns the median over rounds of a's rate over base's
// in the same round, and the per-round ratios. Rounds where base answered
// nothing are left out; with none left the median is NaN.
func ratioToBaseline(a, base []measured) (float64, []float64) {
	rs := ratios(rates(a), rates(base))
	ok := slices.DeleteFunc(slices.Clone(rs), func(r float64) bool { return r != r })
	return median(ok), rs
}

func medianRateP99(ms []measured) (float64, time.Duration) {
	var p99s []float64
	for _, m := range ms {
		p99s = append(p99s, float64(percentile(m.Latencies, 99)))
	}
	return median(rates(ms)), time.Duration(median(p99s))
}

// fmtShares prints how the 2xx answers of a target with several toks were
// split between them, in percent: "50/50".
func fmtShares(ns []int) string {
	if len(ns) < 2 {
		return "-"
	}
	total := 0
	for _, n := range ns {
		total += n
	}
	if total == 0 {
		return "-"
	}
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprintf("%.0f", 100*float64(n)/float64(total))
	}
	return strings.Join(parts, "/")
}

// printHandle prints the summary of each target: medians over the rounds of
// rate, p50 and p99; CPU per request over all rounds, of tok (summed over a
// target's processes) and of the PostgreSQL server; peak memory of the
// target's toks (summed); and the median per-round ratio to the baseline.
func printHandle(out io.Writer, targets []*handleTarget, runs [][]measured, shares [][]int, serverCPU []time.Duration, haveServer bool, idle []idleShare, base int) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "   target\ttoks\ttokenizations/s\tp50\tp99\ttok CPU/req\tPG CPU/req\tidle cores\ttok RssAnon\tnon-2xx\terrors\tsplit %%\t× %s (median; per round)\t\n", targets[base].name)
	for i, t := range targets {
		var p50s []float64
		var cpu time.Duration
		var served, bad, errs int
		var peak int64
		for _, m := range runs[i] {
			p50s = append(p50s, float64(percentile(m.Latencies, 50)))
			cpu += m.CPU
			served += m.OK + m.Shed + m.Other
			bad += m.Shed + m.Other
			errs += m.Errors
			peak = max(peak, m.Peak.RSSAnon)
		}
		rate, p99 := medianRateP99(runs[i])
		cpuPer, pgPer := "-", "-"
		if served > 0 {
			cpuPer = fmtDur(cpu / time.Duration(served))
			if haveServer && isPostgresStore(t.store) {
				pgPer = fmtDur(serverCPU[i] / time.Duration(served))
			}
		}
		ratioCol := "1.00 (baseline)"
		if i != base {
			r, rs := ratioToBaseline(runs[i], runs[base])
			parts := make([]string, len(rs))
			for j, x := range rs {
				parts[j] = fmt.Sprintf("%.2f", x)
			}
			ratioCol = fmt.Sprintf("%.2f; %s", r, strings.Join(parts, " "))
		}
		fmt.Fprintf(tw, "   %s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", t.name, len(t.nodes), rate,
			fmtDur(time.Duration(median(p50s))), fmtDur(p99), cpuPer, pgPer, idle[i], fmtBytes(peak), bad, errs, fmtShares(shares[i]), ratioCol)
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
}
