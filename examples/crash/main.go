// Command crash proves tok's crash durability: it builds the real tok
// binary, puts it in front of a recording upstream app, drives concurrent
// tokenizing traffic (half POST /handle, half POST /checkout through the
// proxy, every request with a fresh PAN), and kills tok with SIGKILL at
// random moments, restarting it on the same vault each time. It then checks
// that every token a client received with a 2xx reveals its exact PAN, that
// every token the upstream received has a record, and (bolt) that the bbolt
// file passes bbolt's consistency check. Restart-to-ready is the time from
// starting tok to /readyz answering 200.
//
// Scenarios (-store):
//
//	bolt        SIGKILL cycles on a bolt vault (default)
//	postgres    SIGKILL cycles on PostgreSQL (-postgres-url, else
//	            TOK_POSTGRES_URL or TOK_TEST_POSTGRES_URL), in a fresh schema
//	pg-restart  a private PostgreSQL cluster (initdb in a temporary
//	            directory, run as the postgres user when root) stopped with
//	            -m immediate and started again under load; tok is not
//	            restarted: requests meanwhile must get 503, /readyz must go
//	            503 and then 200 again by itself
//	postgres-redis  SIGKILL cycles on PostgreSQL with the CVCs on Redis
//	            (-redis-url, else TOK_TEST_REDIS_URL): checkouts carry a
//	            bound CVC, and every CVC the app received must still
//	            reveal, with its card token, after the last kill
//	all         the four in turn (postgres skipped without a URL)
//
// Usage, from the repository root:
//
//	go run ./examples/crash -cycles 20 -store all
//
// It prints a summary table and exits 1 if anything was lost. Only
// 127.0.0.1 is used.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the flags, runs the scenarios and prints the summary. It
// returns the exit code: 0 all good, 1 something lost or broken, 2 usage.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("crash", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	store := fs.String("store", "bolt", "scenario: bolt, postgres, postgres-redis, pg-restart or all")
	fs.IntVar(&o.cycles, "cycles", 20, "SIGKILL cycles per kill scenario (1 to 1000)")
	fs.IntVar(&o.workers, "workers", 16, "concurrent clients, half /handle and half /checkout (2 to 256)")
	fs.DurationVar(&o.killMin, "kill-min", 200*time.Millisecond, "earliest SIGKILL after a cycle's load starts")
	fs.DurationVar(&o.killMax, "kill-max", 2*time.Second, "latest SIGKILL after a cycle's load starts")
	fs.IntVar(&o.outages, "outages", 2, "PostgreSQL restarts in the pg-restart scenario (1 to 100)")
	fs.DurationVar(&o.outage, "outage", 3*time.Second, "how long PostgreSQL stays down in pg-restart")
	fs.StringVar(&o.pgURL, "postgres-url", firstEnv("TOK_POSTGRES_URL", "TOK_TEST_POSTGRES_URL"), "PostgreSQL URL for the postgres scenario (loopback only)")
	fs.StringVar(&o.redisURL, "redis-url", os.Getenv("TOK_TEST_REDIS_URL"), "Redis URL for the postgres-redis scenario (loopback only)")
	fs.StringVar(&o.tokBin, "tok", "", "a tok binary to use instead of building one")
	fs.BoolVar(&o.keep, "keep", false, "keep temporary directories (vault, config, tok.log); failed runs keep theirs anyway")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	scenarios := []string{*store}
	if *store == "all" {
		scenarios = []string{"bolt", "postgres", scenarioPGRedis, "pg-restart"}
	}
	var problems []string
	for _, s := range scenarios {
		if !slices.Contains([]string{"bolt", "postgres", scenarioPGRedis, "pg-restart"}, s) {
			problems = append(problems, fmt.Sprintf("-store %q: want bolt, postgres, postgres-redis, pg-restart or all", s))
		}
	}
	if o.cycles < 1 || o.cycles > 1000 {
		problems = append(problems, "-cycles: want 1 to 1000")
	}
	if o.workers < 2 || o.workers > 256 {
		problems = append(problems, "-workers: want 2 to 256")
	}
	if o.outages < 1 || o.outages > 100 {
		problems = append(problems, "-outages: want 1 to 100")
	}
	if o.killMin <= 0 || o.killMax < o.killMin || o.killMax > 10*time.Minute {
		problems = append(problems, "-kill-min, -kill-max: want 0 < min <= max <= 10m")
	}
	if o.outage < 500*time.Millisecond || o.outage > 10*time.Minute {
		problems = append(problems, "-outage: want 500ms to 10m")
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, "crash:", strings.Join(problems, "; "))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.out = stdout
	results, err := runAll(ctx, o, scenarios)
	if err != nil {
		fmt.Fprintln(stderr, "crash:", err)
		return 1
	}
	printSummary(stdout, results)
	for _, r := range results {
		if !r.ok() {
			return 1
		}
	}
	return 0
}

// runAll builds tok (unless o.tokBin is set) and runs the scenarios in
// turn.
func runAll(ctx context.Context, o options, scenarios []string) ([]*result, error) {
	if o.verifyParallel == 0 {
		o.verifyParallel = 8
	}
	if o.tokBin == "" {
		dir, err := os.MkdirTemp("", "tok-crash-bin-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(o.out, "building tok ...")
		if o.tokBin, err = tokbin.Build(ctx, dir); err != nil {
			return nil, err
		}
	}
	var results []*result
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		var r *result
		if s == "pg-restart" {
			r = runPGRestart(ctx, o)
		} else {
			r = runKill(ctx, o, s)
		}
		results = append(results, r)
	}
	return results, nil
}

// firstEnv returns the first non-empty one of the environment variables.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// percentile returns the p-th percentile (0..100, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// printSummary prints one row per scenario, then the outages, problems
// and a verdict.
func printSummary(w io.Writer, results []*result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcycles\tacked tokens\tvia proxy\tupstream tokens\tLOST\tupstream w/o record\tnon-2xx\tno answer\tready p50\tready max\tbbolt check\tresult\t")
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\tskipped\t\n", r.scenario)
			continue
		}
		bc := r.boltCheck
		if bc == "" {
			bc = "n/a"
		}
		p50, pmax := "-", "-"
		if len(r.ready) > 0 {
			p50 = percentile(r.ready, 50).Round(time.Millisecond).String()
			pmax = percentile(r.ready, 100).Round(time.Millisecond).String()
		}
		verdict := "ok"
		if !r.ok() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t\n", r.scenario, r.cycles, r.acked, r.ackedCheckout, r.upstream,
			r.lost, r.noRecord, statuses(r.non2xx), r.noAnswer, p50, pmax, bc, verdict)
	}
	tw.Flush()
	for _, r := range results {
		if r.skipped != "" {
			fmt.Fprintf(w, "%s: skipped: %s\n", r.scenario, r.skipped)
		}
		if r.scenario == scenarioPGRedis && r.skipped == "" {
			fmt.Fprintf(w, "%s: CVCs the app received, revealed with their card token after the last kill: %d checked, %d LOST, %d expired by ttl (%v); only a ttl or a Redis restart may lose one\n",
				r.scenario, r.cvcChecked, r.cvcLost, r.cvcExpired, cvcTTL)
		}
		for i, o := range r.outages {
			first := "none"
			if o.first2xx >= 0 {
				first = o.first2xx.Round(time.Millisecond).String()
			}
			fmt.Fprintf(w, "%s outage %d: PostgreSQL down %v; %d requests sent and answered meanwhile: %d×503, %d×2xx, %d other; /readyz 503 %v after the stop, 200 %v after the start; first 2xx %s after the start (%d×503 to requests sent after /readyz was 200 again); %d upstream receipts meanwhile (tokenized before the stop)\n",
				r.scenario, i+1, o.down.Round(time.Millisecond), o.requests, o.status503, o.status2xx, o.other,
				o.readyz503.Round(time.Millisecond), o.readyz200.Round(time.Millisecond), first, o.after503, o.upstreamWhile)
		}
		for _, p := range r.problems {
			fmt.Fprintf(w, "%s: PROBLEM: %s\n", r.scenario, p)
		}
		for _, f := range r.failureSamples {
			fmt.Fprintf(w, "%s: FAILED: %s\n", r.scenario, f)
		}
		if r.dir != "" {
			fmt.Fprintf(w, "%s: kept %s\n", r.scenario, r.dir)
		}
	}
	for _, r := range results {
		if !r.ok() {
			fmt.Fprintln(w, "RESULT: FAIL")
			return
		}
	}
	fmt.Fprintln(w, "RESULT: ok (no acknowledged token lost, every upstream token has its record)")
}

// statuses formats a status histogram: "503×12 502×1", or "0".
func statuses(m map[int]int) string {
	if len(m) == 0 {
		return "0"
	}
	var codes []int
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", c, m[c]))
	}
	return strings.Join(parts, " ")
}
