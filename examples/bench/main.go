// Command bench is tok's load harness: it measures what tok costs compared
// with a tuned plain reverse proxy, over loopback, on this machine.
//
//	go run ./examples/bench -duration 10s -rounds 5 [-chart latency.png]
//	go run ./examples/bench -handle [-stores bolt,postgres,postgres2] [-postgres-url postgres://...]
//	go run ./examples/bench -handle -stores bolt -prefill 1000000
//	go run ./examples/bench -egress [-egress-tokens 10000]
//
// It builds and starts, as separate processes on free 127.0.0.1 ports, a
// trivial upstream app (./upstream), a tuned httputil.ReverseProxy in front
// of it (./plainproxy: the baseline) and tok itself (built from the module
// root, with a fresh vault, keyring and config in a temporary directory),
// then:
//
//  1. closed loop: -conns keep-alive connections (64) send the same
//     ~300-byte JSON checkout as fast as answers come back, to the
//     baseline and to tok in interleaved rounds (A B A B ...). Once on
//     POST /checkout, where tok tokenizes card.number and card.cvc with a
//     fresh card number per request (every request a durable commit), and
//     once on a route without fields, which tok only guards. Reported per
//     target: req/s, p50, p99, CPU per request (utime+stime of the process,
//     from /proc), peak RSS and RssAnon, and the median per-round ratio of
//     tok's req/s to the baseline's.
//  2. open loop: a fixed -rate (1,000 req/s) for each, latency measured from
//     each request's scheduled send time (no coordinated omission); p50 and
//     p99, and tok's deltas against the baseline.
//  3. overload: -overload-factor (1.5) × tok's measured capacity for
//     -overload (30 s), over up to -overload-conns connections: tok's
//     RssAnon over time, and how many requests were shed with 503 against
//     those answered 2xx.
//  4. with -chart FILE: a sweep of open-loop rates, drawn as a PNG of p50 and
//     p99 latency by rate.
//
// tok's checkout route tokenizes card.number (pan, on disk) and card.cvc
// (in memory, with the ttl of cvcTTL). By default card.cvc is configured as
// the README recommends: a digits token bound to card.number
// (-cvc-format bound), unique per card token, so it never runs out.
// -cvc-format digits leaves it unbound: a 3-digit code then has only about
// 900 tokens in all, and once they are live every checkout is refused with
// 507 token_space_exhausted. -cvc-format opaque uses tok_ tokens.
// -volatile-url redis://127.0.0.1:6379/0 puts tok's CVCs on that Redis (the
// scale-out configuration) instead of in tok's memory.
//
// With -handle it measures tok's direct API instead: POST /handle with a
// fresh card number per request from -conns clients, durable tokenizations
// per second, p50, p99 and CPU per request, in interleaved rounds over the
// -stores targets: bolt-1 (one tok on a fresh bbolt file), postgres-1 (one
// tok on PostgreSQL) and postgres-2 (two toks sharing the same PostgreSQL
// schema, each client connection pinned to one of them, half each, as two
// replicas behind a load balancer see it), each compared with bolt-1 by the
// median of per-round ratios. The postgres targets need -postgres-url (or
// TOK_POSTGRES_URL): the harness creates a fresh schema there, hands tok the
// URL with search_path set to it and pool_max_conns to -pg-pool (16), and
// drops the schema at exit; without a URL they are skipped. CPU per request
// is summed over a target's toks; when the server runs on this machine, the
// PostgreSQL server's own CPU per request is reported beside it. With
// -prefill the bolt vault is prefilled with that many records first (bolt
// only).
//
// With -egress it measures tok's egress listener (the way out: the app
// sends tokens, the provider gets card numbers) against the same plain
// proxy, in front of the same trivial upstream standing in for the payment
// provider: -egress-tokens card tokens are minted through POST /handle
// first, then -conns connections send a ~100-byte form charge,
// POST /psp/v1/charges with one of those tokens at card[number] (in turn),
// in interleaved rounds. tok checks the token, reveals it (a vault read and
// an audit line) and forwards the form with the card number in place; the
// plain proxy forwards it as it is. Closed loop only.
//
// The load generator is part of the harness (load.go): a closed-loop worker
// pool and a schedule-based open-loop sender over raw keep-alive HTTP/1.1
// connections, so that nothing needs installing. It shares the machine
// with the processes it measures; the figures are comparisons on one
// machine, not absolute capacities. Every loop is bounded in time and
// count, and only 127.0.0.1 is ever targeted. Started processes are
// stopped on exit, Ctrl-C included.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tokproxy/tok/config"
)

// options are the harness's flags.
type options struct {
	root, tokBin  string
	duration      time.Duration // one closed-loop run
	rounds        int
	conns         int
	warmup        time.Duration
	rate          float64
	openDuration  time.Duration
	overload      time.Duration
	overloadX     float64
	overloadConns int
	chart         string
	sweepDuration time.Duration
	handle        bool
	prefill       int
	cvcFormat     string
	volatileURL   string // tok's vault.volatile (TOK_REDIS_URL); "": in memory
	egress        bool
	egressTokens  int
	keep          bool
	// With -handle: the stores to compare (storeBolt, ...), the PostgreSQL
	// URL and the pool size of each tok on PostgreSQL (0: the URL's or
	// pgxpool's default).
	stores  []string
	pgURL   string
	pgPool  int
	setFlag map[string]bool // flags given on the command line
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if o.pgURL == "" {
		o.pgURL = os.Getenv(config.EnvPostgresURL)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if ctx.Err() != nil {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.root, "root", "", "tok module `dir` (default: found from the working directory)")
	fs.StringVar(&o.tokBin, "tok", "", "use this tok `binary` instead of building the module root")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one closed-loop run")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds per target and route")
	fs.IntVar(&o.conns, "conns", 64, "closed-loop connections (open loop: the most in flight)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unreported closed-loop warm-up per target and route")
	fs.Float64Var(&o.rate, "rate", 1000, "open-loop `requests/s`")
	fs.DurationVar(&o.openDuration, "open-duration", 10*time.Second, "length of one open-loop run (0: skip)")
	fs.DurationVar(&o.overload, "overload", 30*time.Second, "length of the overload run (0: skip)")
	fs.Float64Var(&o.overloadX, "overload-factor", 1.5, "overload rate as a multiple of tok's measured capacity")
	fs.IntVar(&o.overloadConns, "overload-conns", 1024, "the most connections in the overload run")
	fs.StringVar(&o.chart, "chart", "", "write a PNG of latency by rate to `file` (runs a rate sweep)")
	fs.DurationVar(&o.sweepDuration, "sweep-duration", 3*time.Second, "length of each rate in the -chart sweep")
	fs.BoolVar(&o.handle, "handle", false, "benchmark tok's POST /handle instead of the proxy")
	fs.IntVar(&o.prefill, "prefill", 0, "with -handle: records to put in the vault first")
	fs.StringVar(&o.cvcFormat, "cvc-format", cvcBound, "token `format` of card.cvc in tok's checkout route: bound (digits bound to card.number, the README's), digits (unbound) or opaque (see the package doc)")
	fs.StringVar(&o.volatileURL, "volatile-url", "", "redis:// `url` of a Redis to put tok's volatile store (the CVCs) on, as replicas do (default: in tok's memory)")
	fs.BoolVar(&o.egress, "egress", false, "benchmark tok's egress listener (revealing tokens) instead of the inbound proxy")
	fs.IntVar(&o.egressTokens, "egress-tokens", 10_000, "with -egress: card tokens to mint first and reveal in turn")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, config, logs, vault)")
	stores := fs.String("stores", strings.Join(allStores, ","), "with -handle: the tok `targets` to compare, in interleaved rounds: "+storesHelp)
	fs.StringVar(&o.pgURL, "postgres-url", "", "with -handle: PostgreSQL `url` (postgres://...) for the postgres targets (default: $"+config.EnvPostgresURL+"); a fresh schema is created in it and dropped at exit")
	fs.IntVar(&o.pgPool, "pg-pool", defaultPGPool, "with -handle: pool_max_conns of each tok on PostgreSQL (0: the URL's, else pgxpool's default max(4, CPUs))")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.setFlag = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.setFlag[f.Name] = true })
	var err error
	if o.stores, err = parseStores(*stores); err != nil {
		fmt.Fprintln(stderr, "bench: -stores:", err)
		return o, err
	}
	if o.prefill > 0 && !o.setFlag["stores"] {
		o.stores = []string{storeBolt} // -prefill fills the bolt vault
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return o, errors.New("unexpected argument")
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return o, err
	}
	return o, nil
}

// validate keeps every loop bounded.
func (o *options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.duration >= 100*time.Millisecond && o.duration <= 10*time.Minute, "-duration %v: want 100ms to 10m", o.duration)
	check(o.rounds >= 1 && o.rounds <= 50, "-rounds %d: want 1 to 50", o.rounds)
	check(o.conns >= 1 && o.conns <= 4096, "-conns %d: want 1 to 4096", o.conns)
	check(o.warmup >= 0 && o.warmup <= time.Minute, "-warmup %v: want 0 to 1m", o.warmup)
	check(o.rate >= 1 && o.rate <= 200_000, "-rate %v: want 1 to 200000", o.rate)
	check(o.openDuration >= 0 && o.openDuration <= 10*time.Minute, "-open-duration %v: want 0 to 10m", o.openDuration)
	check(o.overload >= 0 && o.overload <= 10*time.Minute, "-overload %v: want 0 to 10m", o.overload)
	check(o.overloadX > 0 && o.overloadX <= 10, "-overload-factor %v: want above 0, at most 10", o.overloadX)
	check(o.overloadConns >= 1 && o.overloadConns <= 8192, "-overload-conns %d: want 1 to 8192", o.overloadConns)
	check(o.sweepDuration >= 100*time.Millisecond && o.sweepDuration <= time.Minute, "-sweep-duration %v: want 100ms to 1m", o.sweepDuration)
	check(o.prefill >= 0 && o.prefill <= 20_000_000, "-prefill %d: want 0 to 20000000", o.prefill)
	check(o.prefill == 0 || o.handle, "-prefill needs -handle")
	check(o.volatileURL == "" || strings.HasPrefix(o.volatileURL, "redis://127.0.0.1:"), "-volatile-url %q: want redis://127.0.0.1:PORT/DB (loopback only)", o.volatileURL)
	check(o.cvcFormat == cvcBound || o.cvcFormat == cvcDigits || o.cvcFormat == cvcOpaque, "-cvc-format %q: want bound, digits or opaque", o.cvcFormat)
	check(o.chart == "" || !o.handle, "-chart is for the proxy benchmark, not -handle")
	check(!o.egress || !o.handle, "-egress and -handle are different benchmarks: pick one")
	check(o.chart == "" || !o.egress, "-chart is for the inbound proxy benchmark, not -egress")
	check(o.egressTokens >= 1 && o.egressTokens <= 1_000_000, "-egress-tokens %d: want 1 to 1000000", o.egressTokens)
	for _, f := range []string{"stores", "postgres-url", "pg-pool"} {
		check(o.handle || !o.setFlag[f], "-%s needs -handle", f)
	}
	check(o.pgPool >= 0 && o.pgPool <= 200, "-pg-pool %d: want 0 to 200", o.pgPool)
	check(o.prefill == 0 || !slices.ContainsFunc(o.stores, isPostgresStore),
		"-prefill fills the bolt vault only; use it with -stores bolt")
	return errors.Join(errs...)
}

// run sets up the processes, runs the benchmark o asks for and stops them.
func run(ctx context.Context, o options, out io.Writer) error {
	e, err := setup(ctx, o, out)
	if e != nil {
		defer e.close(out)
	}
	if err != nil {
		return err
	}
	if o.handle {
		return benchHandle(ctx, e, o, out)
	}
	if o.egress {
		return benchEgress(ctx, e, o, out)
	}
	return benchProxy(ctx, e, o, out)
}
