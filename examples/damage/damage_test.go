package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// TestDamage is the CI version of the harness: every case with 40 cards
// (about a minute and a half, mostly tok zero-filling and reading its 64
// MiB of log at each start); with -short, four cases that cover a missing vault file,
// WAL corruption, a damaged page and a foreign keyring. The command runs
// it longer: go run ./examples/damage -tokens 20000.
func TestDamage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin, err := tokbin.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	selected := cases
	if testing.Short() {
		if selected, err = selectCases("db-deleted,wal-flip-mid,page-header,keyring-fresh"); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	o := options{tokens: 40, tokBin: bin, out: &out}
	var results []*result
	for _, c := range selected {
		results = append(results, runCase(ctx, o, c))
	}
	var sum bytes.Buffer
	printSummary(&sum, results)
	t.Logf("progress:\n%s%s", out.String(), sum.String())
	for _, r := range results {
		if !r.ok() {
			t.Errorf("%s: %s; silent losses %d, panicked %v, new tokens %d, clear refusal %v, recovery %q (lost after %d, stated %v), problems %q",
				r.name, r.outcome, r.silent, r.panicked, r.newTokens, r.clear, r.recovery, r.lostAfter, r.lostStated, r.problems)
		}
		if r.acked == 0 {
			t.Errorf("%s: nothing was acknowledged: the load did not get through", r.name)
		}
	}
}

// TestSelectCases checks the -cases parsing.
func TestSelectCases(t *testing.T) {
	if cs, err := selectCases("all"); err != nil || len(cs) != len(cases) {
		t.Errorf("selectCases(all) = %d cases, %v", len(cs), err)
	}
	if _, err := selectCases("db-deleted,nope"); err == nil {
		t.Error("selectCases with an unknown case = nil error")
	}
}
