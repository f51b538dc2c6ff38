package main

import (
	"context"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/config"
)

func TestHandleFlags(t *testing.T) {
	o, err := parseFlags([]string{"-handle"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.stores, allStores) || o.pgPool != defaultPGPool || o.pgURL != "" {
		t.Errorf("-handle defaults: stores %q, pg-pool %d, url %q", o.stores, o.pgPool, o.pgURL)
	}
	o, err = parseFlags([]string{"-handle", "-stores", " postgres2,bolt ", "-postgres-url", "postgres://u@h/db", "-pg-pool", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.stores, []string{storePostgres2, storeBolt}) || o.pgPool != 0 || o.pgURL != "postgres://u@h/db" {
		t.Errorf("stores %q, pg-pool %d, url %q", o.stores, o.pgPool, o.pgURL)
	}
	// -prefill fills the bolt vault: alone it narrows the stores to bolt.
	if o, err = parseFlags([]string{"-handle", "-prefill", "10"}, io.Discard); err != nil || !slices.Equal(o.stores, []string{storeBolt}) {
		t.Errorf("-handle -prefill 10: stores %q, err %v; want bolt alone", o.stores, err)
	}
	for _, args := range [][]string{
		{"-stores", "bolt"}, {"-postgres-url", "postgres://h/db"}, {"-pg-pool", "8"}, // need -handle
		{"-handle", "-stores", "mysql"}, {"-handle", "-stores", "bolt,bolt"}, {"-handle", "-stores", ""},
		{"-handle", "-stores", "bolt,"}, {"-handle", "-pg-pool", "-1"}, {"-handle", "-pg-pool", "1000"},
		{"-handle", "-prefill", "10", "-stores", "bolt,postgres"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error", args)
		}
	}
}

func TestTargetNames(t *testing.T) {
	for store, want := range map[string]string{storeBolt: "bolt-1", storePostgres: "postgres-1", storePostgres2: "postgres-2"} {
		if got := targetName(store); got != want {
			t.Errorf("targetName(%q) = %q, want %q", store, got, want)
		}
	}
}

func TestSplitConns(t *testing.T) {
	for _, tt := range []struct{ conns, n int }{{64, 1}, {64, 2}, {63, 2}, {1, 2}, {64, 3}} {
		pick := splitConns(tt.conns, tt.n)
		if len(pick) != tt.conns {
			t.Fatalf("splitConns(%d, %d): %d connections", tt.conns, tt.n, len(pick))
		}
		count := make([]int, tt.n)
		for _, p := range pick {
			count[p]++
		}
		lo, hi := slices.Min(count), slices.Max(count)
		if hi-lo > 1 || (tt.conns >= tt.n && lo == 0) {
			t.Errorf("splitConns(%d, %d) gives %v connections per destination; want an even split", tt.conns, tt.n, count)
		}
	}
	if got := splitConns(64, 2); got[0] == got[1] {
		t.Error("neighbouring connections go to the same destination; want them alternating")
	}
}

func TestClosedLoopSplit(t *testing.T) {
	a, addrA := newRecording(t, 0)
	b, addrB := newRecording(t, 0)
	ds := []dest{
		{addrA, newTemplate("POST", addrA, "/checkout", "application/json", checkoutBody, uniqueValid)},
		{addrB, newTemplate("POST", addrB, "/checkout", "application/json", checkoutBody, uniqueValid)},
	}
	r, per := closedLoopSplit(context.Background(), ds, newPANSource(), 8, 300*time.Millisecond)
	if r.OK == 0 || r.Errors+r.Other+r.Shed != 0 {
		t.Fatalf("result %+v: want only 2xx", r.counts())
	}
	if len(per) != 2 || per[0]+per[1] != r.OK || per[0] == 0 || per[1] == 0 {
		t.Fatalf("per destination %v for %d answers: want both served, adding up", per, r.OK)
	}
	if len(a.pans) != per[0] || len(b.pans) != per[1] {
		t.Errorf("servers saw %d and %d card numbers, the loop counted %v", len(a.pans), len(b.pans), per)
	}
	for pan := range a.pans {
		if b.pans[pan] {
			t.Fatalf("%s went to both destinations; want a new number per request", pan)
		}
	}
}

func runsAt(rates ...float64) []measured {
	out := make([]measured, len(rates))
	for i, r := range rates {
		out[i].Elapsed = time.Second
		out[i].OK = int(r)
	}
	return out
}

func TestRatioToBaseline(t *testing.T) {
	base := runsAt(1000, 2000, 1000, 1000)
	a := runsAt(500, 500, 800, 2000) // ratios 0.5 0.25 0.8 2
	got, per := ratioToBaseline(a, base)
	if want := []float64{0.5, 0.25, 0.8, 2}; !slices.Equal(per, want) {
		t.Errorf("per-round ratios %v, want %v", per, want)
	}
	// The median of the ratios, not the ratio of the medians (0.65/1000).
	if math.Abs(got-0.65) > 1e-9 {
		t.Errorf("median ratio %v, want 0.65", got)
	}
	// A round where the baseline answered nothing is left out.
	got, per = ratioToBaseline(runsAt(100, 300, 50), runsAt(100, 0, 100))
	if math.Abs(got-0.75) > 1e-9 || !math.IsNaN(per[1]) {
		t.Errorf("median %v, per round %v; want 0.75 without the empty round", got, per)
	}
	if got, _ := ratioToBaseline(runsAt(5), runsAt(0)); !math.IsNaN(got) {
		t.Errorf("no comparable round: %v, want NaN", got)
	}
}

func TestBaselineAndRoundOrder(t *testing.T) {
	ts := []*handleTarget{{store: storePostgres}, {store: storeBolt}, {store: storePostgres2}}
	if got := baselineIndex(ts); got != 1 {
		t.Errorf("baseline %d, want bolt (1)", got)
	}
	if got := baselineIndex(ts[2:]); got != 0 {
		t.Errorf("baseline without bolt %d, want the first", got)
	}
	for round, want := range map[int][]int{1: {0, 1, 2}, 2: {1, 2, 0}, 3: {2, 0, 1}, 4: {0, 1, 2}} {
		if got := roundOrder(3, round); !slices.Equal(got, want) {
			t.Errorf("roundOrder(3, %d) = %v, want %v", round, got, want)
		}
	}
}

func TestFmtShares(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{{[]int{10}, "-"}, {[]int{0, 0}, "-"}, {[]int{500, 500}, "50/50"}, {[]int{1, 3}, "25/75"}} {
		if got := fmtShares(tt.in); got != tt.want {
			t.Errorf("fmtShares(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPGTokURL(t *testing.T) {
	got, err := pgTokURL("postgres://tok:s3cret@127.0.0.1:5432/test?sslmode=disable&search_path=public", "tok_bench_1_ab", 16)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("search_path") != "tok_bench_1_ab" || q.Get("pool_max_conns") != "16" || q.Get("sslmode") != "disable" ||
		u.Host != "127.0.0.1:5432" || u.Path != "/test" || u.User.String() != "tok:s3cret" {
		t.Errorf("pgTokURL = %s", got)
	}
	got, _ = pgTokURL("postgres://h/db?pool_max_conns=7", "s", 0)
	if u, _ := url.Parse(got); u.Query().Get("pool_max_conns") != "7" {
		t.Errorf("pool 0 changed the URL's pool_max_conns: %s", got)
	}
	for _, bad := range []string{"mysql://h/db", "host=h dbname=db", "postgres://h:x:y/db%zz"} {
		if _, err := pgTokURL(bad, "s", 0); err == nil || strings.Contains(err.Error(), bad) {
			t.Errorf("pgTokURL(%q): err %v; want an error without the URL", bad, err)
		}
	}
	if got := pgWhere("postgres://tok:s3cret@127.0.0.1:5432/test?sslmode=disable"); got != "127.0.0.1:5432/test" {
		t.Errorf("pgWhere = %q, want the host and database alone", got)
	}
}

func TestTokPostgresConfig(t *testing.T) {
	y := tokConfig("127.0.0.1:8081", "127.0.0.1:9091", "", "", "/tmp/x/keyring.yaml", "/tmp/x/audit.log", "", "opaque")
	cfg, err := config.Parse([]byte(y), "bench.yaml")
	if err != nil {
		t.Fatalf("config without a bolt path does not parse: %v\n%s", err, y)
	}
	pg := "postgres://u:pw@127.0.0.1/test?search_path=s"
	env := tokEnv(pg)
	getenv := func(k string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	cfg.ApplyEnv(getenv)
	if cfg.Vault.Postgres != pg || cfg.Vault.Bolt != "" {
		t.Errorf("vault %+v: want postgres from TOK_POSTGRES_URL", cfg.Vault)
	}
	t.Setenv(config.EnvPostgresURL, "postgres://elsewhere/db")
	t.Setenv(config.EnvKeyring, "x")
	for _, kv := range tokEnv("") {
		if strings.HasPrefix(kv, config.EnvPostgresURL+"=") || strings.HasPrefix(kv, config.EnvKeyring+"=") {
			t.Errorf("the bolt tok inherits %s", kv)
		}
	}
}

// TestSmokeHandle runs the -handle benchmark for a moment on bolt and, when
// TOK_TEST_POSTGRES_URL is set, on PostgreSQL with one and two toks. Skipped
// with -short.
func TestSmokeHandle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	pg := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pg == "" {
		t.Log("TOK_TEST_POSTGRES_URL unset: bolt only (the postgres targets are skipped)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := parseFlags([]string{"-handle", "-duration", "300ms", "-rounds", "2", "-warmup", "0", "-conns", "8", "-postgres-url", pg}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("harness: %v\n%s", err, out.String())
	}
	want := []string{"preflight:", "round 2/2", "bolt-1 median:"}
	if pg == "" {
		want = append(want, "skipping postgres, postgres2: no PostgreSQL URL")
	} else {
		want = append(want, "postgres-1 median:", "postgres-2 median:", "dropped schema tok_bench_")
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	t.Log(out.String())
}
