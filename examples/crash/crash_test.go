package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// TestCrash is the CI version of the harness: 3 SIGKILL cycles on bolt,
// 2 on PostgreSQL when TOK_TEST_POSTGRES_URL is set, 2 on PostgreSQL with
// the CVCs on Redis when TOK_TEST_REDIS_URL is set too, and one PostgreSQL
// restart on a private cluster when initdb (and, as root, runuser) are
// available. It builds tok once and takes about half a minute.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tok and kills it under load: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := tokbin.Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := options{workers: 16, killMin: 200 * time.Millisecond, killMax: 700 * time.Millisecond,
		outages: 1, outage: time.Second, tokBin: bin, verifyParallel: 8}

	run := func(t *testing.T, scenario string, o options) {
		var out bytes.Buffer
		o.out = &out
		var r *result
		if scenario == "pg-restart" {
			r = runPGRestart(ctx, o)
		} else {
			r = runKill(ctx, o, scenario)
		}
		var sum bytes.Buffer
		printSummary(&sum, []*result{r})
		t.Logf("progress:\n%s%s", out.String(), sum.String())
		if r.skipped != "" {
			t.Skip(r.skipped)
		}
		if !r.ok() {
			t.Fatalf("%s: %d lost, %d upstream tokens without a record, problems: %s", scenario, r.lost, r.noRecord, strings.Join(r.problems, "; "))
		}
		if r.acked == 0 || r.upstream == 0 {
			t.Errorf("%s: %d acked, %d upstream tokens: the load did not get through", scenario, r.acked, r.upstream)
		}
		if scenario == scenarioPGRedis && r.cvcChecked == 0 {
			t.Errorf("%s: no CVC checked: the checkouts carried none to the app", scenario)
		}
		if scenario == "bolt" && r.boltCheck != "ok" {
			t.Errorf("bolt check: %q", r.boltCheck)
		}
	}
	t.Run("bolt", func(t *testing.T) {
		o := base
		o.cycles = 3
		run(t, "bolt", o)
	})
	t.Run("postgres", func(t *testing.T) {
		o := base
		o.cycles = 2
		if o.pgURL = os.Getenv("TOK_TEST_POSTGRES_URL"); o.pgURL == "" {
			t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
		}
		run(t, "postgres", o)
	})
	t.Run(scenarioPGRedis, func(t *testing.T) {
		o := base
		o.cycles = 2
		if o.pgURL = os.Getenv("TOK_TEST_POSTGRES_URL"); o.pgURL == "" {
			t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
		}
		if o.redisURL = os.Getenv("TOK_TEST_REDIS_URL"); o.redisURL == "" {
			t.Skip("TOK_TEST_REDIS_URL is unset: no Redis to test against")
		}
		run(t, scenarioPGRedis, o)
	})
	t.Run("pg-restart", func(t *testing.T) {
		if _, err := pgBinDir(); errors.Is(err, errNoPG) {
			t.Skip(err)
		}
		run(t, "pg-restart", base)
	})
}

// TestLuhn checks the PAN generator against known card numbers and the
// ledger's PANs for validity and uniqueness.
func TestLuhn(t *testing.T) {
	for _, pan := range []string{"4111111111111111", "5555555555554444", "378282246310005"} {
		if got := luhn(pan[:len(pan)-1]); got != pan {
			t.Errorf("luhn(%s) = %s, want %s", pan[:len(pan)-1], got, pan)
		}
	}
	l := newLedger(false)
	seen := map[string]bool{}
	for range 1000 {
		p := l.newPAN()
		if len(p) != 16 || luhn(p[:15]) != p || seen[p] {
			t.Fatalf("newPAN = %s: not a fresh 16-digit Luhn-valid PAN", p)
		}
		seen[p] = true
	}
}

// TestWants checks the merging of acknowledgements and upstream receipts
// and the problems it reports.
func TestWants(t *testing.T) {
	l := newLedger(false)
	o1 := l.newOrder("4000000000000002")
	o2 := l.newOrder("4000000000000010")
	acks := []ack{{pan: "4000000000000002", token: "t1", checkout: true}, {pan: "4111111111111111", token: "t2"}}
	rs := []receipt{{order: o1, token: "t1"}, {order: o2, token: "4000000000000010"}, {order: "nope", token: "t3"}, {order: o2, token: "t2"},
		{order: o2, truncated: true}, {truncated: true}}
	ws, problems := wants(acks, rs, l)
	if len(ws) != 2 || !ws[0].acked || !ws[0].upstream || !ws[1].upstream {
		t.Errorf("wants = %+v", ws)
	}
	if len(problems) != 3 { // the PAN in clear, the unknown order, t2 for two PANs
		t.Errorf("problems = %q, want 3", problems)
	}
	fails := verify(context.Background(), ws, 2, func(_ context.Context, tok string) (string, error) {
		if tok == "t1" {
			return "4000000000000002", nil
		}
		return "", errors.New("no record")
	})
	if len(fails) != 1 || fails[0].token != "t2" {
		t.Errorf("verify failures = %+v, want t2 only", fails)
	}
}

// TestPercentile checks the nearest-rank percentile.
func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	if p := percentile(ds, 50); p != 3 {
		t.Errorf("p50 = %v, want 3", p)
	}
	if p := percentile(ds, 100); p != 5 {
		t.Errorf("max = %v, want 5", p)
	}
	if p := percentile(nil, 50); p != 0 {
		t.Errorf("p50 of nothing = %v", p)
	}
}
