// Command damage proves that tok never loses or forks its vault silently
// when its files at rest are damaged, lost or mismatched: it
// builds the real tok binary, tokenizes a set of cards (half of them
// before a GET /backup, half after), stops tok (SIGKILL, so the second
// half is only in the write-ahead log, or SIGTERM), damages its files one
// way per case, and starts it again. For each case tok must either start
// with every acknowledged token revealing its PAN, or refuse to start
// with a clear, specific message; it must never panic, and never give a
// known card a new token. When it refuses, the harness runs the recovery
// the README gives for that refusal and counts what came back.
//
// Usage, from the repository root:
//
//	go run ./examples/damage                      # every case, 2,000 cards each
//	go run ./examples/damage -tokens 20000 -cases wal-flip-mid,meta-flip
//
// It prints a table and exits 1 on any silent loss, panic, new token for a
// known card, or unclear refusal. Only 127.0.0.1 is used.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options configures a run.
type options struct {
	tokens int    // cards per case
	tokBin string // a built tok binary
	keep   bool   // keep temporary directories
	out    io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("damage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{out: stdout}
	fs.IntVar(&o.tokens, "tokens", 2000, "cards tokenized per case (20 to 1000000)")
	only := fs.String("cases", "all", "comma-separated cases to run, or all")
	fs.StringVar(&o.tokBin, "tok", "", "a tok binary to use instead of building one")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directories (failed cases keep theirs anyway)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.tokens < 20 || o.tokens > 1_000_000 {
		fmt.Fprintln(stderr, "damage: -tokens: want 20 to 1000000")
		return 2
	}
	selected, err := selectCases(*only)
	if err != nil {
		fmt.Fprintln(stderr, "damage:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.tokBin == "" {
		dir, err := os.MkdirTemp("", "tok-damage-bin-")
		if err != nil {
			fmt.Fprintln(stderr, "damage:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stdout, "building tok ...")
		if o.tokBin, err = tokbin.Build(ctx, dir); err != nil {
			fmt.Fprintln(stderr, "damage:", err)
			return 1
		}
	}
	var results []*result
	for _, c := range selected {
		if ctx.Err() != nil {
			break
		}
		results = append(results, runCase(ctx, o, c))
	}
	printSummary(stdout, results)
	for _, r := range results {
		if !r.ok() {
			return 1
		}
	}
	return 0
}

func selectCases(list string) ([]dcase, error) {
	if list == "all" {
		return cases, nil
	}
	var out []dcase
	for _, name := range strings.Split(list, ",") {
		found := false
		for _, c := range cases {
			if c.name == name {
				out, found = append(out, c), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-cases: no case %q", name)
		}
	}
	return out, nil
}

// printSummary prints one row per case and the verdict.
func printSummary(w io.Writer, results []*result) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tacked\tstart\tclear msg\tpanic\tSILENT LOSS\treported\tunreadable\tNEW TOKENS\treissued\trecovery\tback after\tlost after (stated)\tresult\t")
	totals := map[string]int{}
	for _, r := range results {
		clear := "-"
		if r.outcome == "refused" {
			clear = fmt.Sprint(r.clear)
		}
		rec, back, after := "-", "-", "-"
		if r.recovery != "" {
			rec, back = r.recovery, fmt.Sprint(r.backAfter)
			if rec != "ok" {
				rec = "FAILED"
			}
			after = fmt.Sprintf("%d (%v)", r.lostAfter, r.lostStated)
		}
		verdict := "ok"
		if !r.ok() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", r.name, r.acked, r.outcome, clear, r.panicked,
			r.silent, r.reported, r.unreadable, r.newTokens, r.reissued, rec, back, after, verdict)
		totals["cases"]++
		totals[r.outcome]++
		totals["silent"] += r.silent
		totals["new"] += r.newTokens
		if r.panicked {
			totals["panics"]++
		}
	}
	tw.Flush()
	for _, r := range results {
		for _, p := range r.problems {
			fmt.Fprintf(w, "%s: PROBLEM: %s\n", r.name, p)
		}
		if r.recovery != "" && r.recovery != "ok" {
			fmt.Fprintf(w, "%s: RECOVERY FAILED: %s\n", r.name, r.recovery)
		}
		if r.message != "" {
			fmt.Fprintf(w, "%s: tok said: %s\n", r.name, r.message)
		}
		if r.dir != "" {
			fmt.Fprintf(w, "%s: kept %s\n", r.name, r.dir)
		}
	}
	fmt.Fprintf(w, "\n%d cases: %d refused, %d started; %d silent losses, %d panics, %d new tokens for known cards\n",
		totals["cases"], totals["refused"], totals["started"], totals["silent"], totals["panics"], totals["new"])
	for _, r := range results {
		if !r.ok() {
			fmt.Fprintln(w, "RESULT: FAIL")
			return
		}
	}
	fmt.Fprintln(w, "RESULT: ok")
}
