package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/examples/internal/tokbin"
	"github.com/tokproxy/tok/vault"
)

// options configures a run.
type options struct {
	cycles           int           // SIGKILLs per kill scenario
	workers          int           // concurrent clients
	killMin, killMax time.Duration // the kill comes this long into a cycle's load
	outages          int           // PostgreSQL restarts in the pg-restart scenario
	outage           time.Duration // how long PostgreSQL stays down
	pgURL            string        // the shared PostgreSQL for the postgres scenario
	redisURL         string        // the Redis of the postgres-redis scenario
	tokBin           string        // the built tok binary
	keep             bool          // keep temporary directories
	verifyParallel   int           // concurrent reveals when verifying
	out              io.Writer     // progress lines
}

// result is what one scenario found.
type result struct {
	scenario string
	skipped  string // why it did not run, if it did not

	cycles         int // SIGKILLs, or PostgreSQL outages
	cvcChecked     int // postgres-redis: CVC tokens the upstream received, revealed offline
	cvcLost        int // of which did not reveal their CVC (expired by ttl not counted)
	cvcExpired     int // of which had outlived the ttl
	acked          int // distinct tokens clients received with a 2xx
	ackedCheckout  int // of which through the proxy
	upstream       int // distinct tokens the upstream app received
	lost           int // acknowledged tokens that do not reveal their PAN
	noRecord       int // upstream tokens without a (matching) record
	noAnswer       int // requests without an HTTP answer (tok killed)
	non2xx         map[int]int
	ready          []time.Duration // restart to /readyz 200
	boltCheck      string          // bbolt tx.Check outcome; "" if not a bolt run
	outages        []outageStat
	problems       []string
	failureSamples []string
	interrupted    bool   // by a signal: the temporary directory is not kept
	dir            string // kept temporary directory, if any
}

func (r *result) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// ok reports whether the scenario ran and found nothing wrong.
func (r *result) ok() bool {
	return r.skipped != "" || (len(r.problems) == 0 && r.lost == 0 && r.noRecord == 0)
}

// harness is one scenario's processes and files.
type harness struct {
	o       options
	res     *result
	dir     string
	cfg     string
	logPath string
	env     []string
	keys    *vault.Keyring
	secret  string
	led     *ledger
	up      *upstream
	cur     atomic.Pointer[tokbin.Proc]
	cycle   atomic.Int64
	failed  map[string]failure // every token that failed a check, once
}

// newHarness creates the temporary directory, keyring, client secret,
// upstream app and tok config of a scenario. env selects the store
// (TOK_POSTGRES_URL); without it tok uses dir/tok.db.
func newHarness(o options, res *result, env []string, keepOutcomes bool) (*harness, error) {
	dir, err := os.MkdirTemp("", "tok-crash-"+res.scenario+"-")
	if err != nil {
		return nil, err
	}
	h := &harness{o: o, res: res, dir: dir, env: env, led: newLedger(keepOutcomes), failed: map[string]failure{}, logPath: filepath.Join(dir, "tok.log")}
	kf := vault.NewKeyringFile()
	keyringPath := filepath.Join(dir, "keyring.yaml")
	if err := vault.WriteKeyringFile(keyringPath, kf, false); err != nil {
		return h, err
	}
	if h.keys, err = vault.NewKeyring(kf); err != nil {
		return h, err
	}
	var rnd [16]byte
	rand.Read(rnd[:])
	h.secret = hex.EncodeToString(rnd[:])
	hash, err := bcrypt.GenerateFromPassword([]byte(h.secret), 10)
	if err != nil {
		return h, err
	}
	if h.up, err = startUpstream(); err != nil {
		return h, err
	}
	h.cfg = filepath.Join(dir, "tok.yaml")
	cfg := fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
# The load comes from one address and every token is revealed to verify
# it: the budgets are out of the way.
budgets: {handle_anonymous: 1000000000, inbound: 1000000000, reveal: 1000000000}
clients:
  - {name: crash, secret_hash: %q, reveal: true}
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
%s`, h.boltPath(), keyringPath, filepath.Join(dir, "audit.log"), hash, h.up.url, cvcField(res.scenario))
	return h, os.WriteFile(h.cfg, []byte(cfg), 0o600)
}

func (h *harness) boltPath() string { return filepath.Join(h.dir, "tok.db") }

// close kills tok if it runs, stops the upstream app and removes the
// directory (kept with -keep, or when the scenario failed other than by
// an interruption).
func (h *harness) close() {
	if p := h.cur.Swap(nil); p != nil {
		p.Kill()
	}
	if h.up != nil {
		h.up.close()
	}
	if h.o.keep || (!h.res.ok() && !h.res.interrupted) {
		h.res.dir = h.dir
		return
	}
	os.RemoveAll(h.dir)
}

// start starts tok and waits until /readyz answers 200.
func (h *harness) start(ctx context.Context) (time.Duration, error) {
	p, err := tokbin.Start(tokbin.Cmd{Name: "tok", Bin: h.o.tokBin, Args: []string{"serve", "-config", h.cfg},
		Dir: h.dir, Env: tokbin.Env(h.env...), Log: h.logPath})
	if err != nil {
		return 0, err
	}
	d, err := p.WaitReady(ctx)
	if err != nil {
		p.Kill()
		return 0, err
	}
	h.cur.Store(p)
	return d, nil
}

// check verifies acks and receipts with reveal and records the failures.
// It returns how many tokens it verified and how many failed.
func (h *harness) check(ctx context.Context, acks []ack, rs []receipt, reveal revealFunc) (n, failed int) {
	ws, problems := wants(acks, rs, h.led)
	for _, p := range problems {
		h.res.problem("%s", p)
	}
	fails := verify(ctx, ws, h.o.verifyParallel, reveal)
	for _, f := range fails {
		if _, seen := h.failed[f.token]; !seen {
			h.failed[f.token] = f
		}
	}
	return len(ws), len(fails)
}

// checkOnline verifies through the running tok's /@me.
func (h *harness) checkOnline(ctx context.Context, acks []ack, rs []receipt) (n, failed int, err error) {
	p := h.cur.Load()
	reveal, err := httpRevealer(ctx, p.Addr("auth"), "crash", h.secret)
	if err != nil {
		return 0, 0, err
	}
	n, failed = h.check(ctx, acks, rs, reveal)
	return n, failed, nil
}

// finish fills in the totals of the result from the ledger, the upstream
// and the failures.
func (h *harness) finish() {
	acks, _ := h.led.acksSince(0)
	rs, _ := h.up.receiptsSince(0)
	ws, _ := wants(acks, rs, h.led)
	for _, w := range ws {
		if w.acked {
			h.res.acked++
		}
		if w.upstream {
			h.res.upstream++
		}
	}
	for _, a := range acks {
		if a.checkout {
			h.res.ackedCheckout++
		}
	}
	var fails []failure
	for _, f := range h.failed {
		fails = append(fails, f)
		if f.acked {
			h.res.lost++
		}
		if f.upstream {
			h.res.noRecord++
		}
	}
	sort.Slice(fails, func(i, j int) bool { return fails[i].token < fails[j].token })
	for _, f := range fails[:min(len(fails), 5)] {
		h.res.failureSamples = append(h.res.failureSamples, fmt.Sprintf("token %s (PAN %s…): %s", f.token, f.pan[:6], f.reason))
	}
	h.led.mu.Lock()
	defer h.led.mu.Unlock()
	h.res.noAnswer = h.led.errs
	h.res.non2xx = map[int]int{}
	for code, n := range h.led.statuses {
		h.res.non2xx[code] = n
	}
	for _, b := range h.led.bad2xx[:min(len(h.led.bad2xx), 5)] {
		h.res.problem("a 2xx without a usable token: %s", b)
	}
	if len(h.led.bad2xx) > 5 {
		h.res.problem("%d more 2xx answers without a usable token", len(h.led.bad2xx)-5)
	}
}

// runKill is the kill scenario on store "bolt" or "postgres": cycles of
// load ended by a SIGKILL, each followed by a restart on the same vault and
// a check through tok of what the cycle acknowledged; the last kill is
// checked offline, by opening the store directly.
func runKill(ctx context.Context, o options, store string) *result {
	res := &result{scenario: store}
	var env []string
	var pgURL string
	if store != "bolt" {
		if o.pgURL == "" {
			res.skipped = "no PostgreSQL URL (-postgres-url, TOK_POSTGRES_URL or TOK_TEST_POSTGRES_URL)"
			return res
		}
		url, drop, err := freshSchema(ctx, o.pgURL)
		if err != nil {
			res.problem("%v", err)
			return res
		}
		defer func() {
			if !o.keep && res.ok() {
				drop()
			}
		}()
		pgURL = url
		env = []string{"TOK_POSTGRES_URL=" + url}
	}
	if store == scenarioPGRedis {
		if o.redisURL == "" {
			res.skipped = "no Redis URL (-redis-url or TOK_TEST_REDIS_URL)"
			return res
		}
		env = append(env, "TOK_REDIS_URL="+o.redisURL)
	}
	h, err := newHarness(o, res, env, false)
	if h != nil {
		defer h.close()
		defer markInterrupted(ctx, res)
	}
	if err != nil {
		res.problem("setup: %v", err)
		return res
	}
	if _, err := h.start(ctx); err != nil {
		res.problem("first start: %v", err)
		return res
	}
	ackIdx, rIdx := 0, 0
	for c := 1; c <= o.cycles && ctx.Err() == nil; c++ {
		h.cycle.Store(int64(c))
		lctx, cancel := context.WithCancel(ctx)
		ld := newLoad(h.led, &h.cur, &h.cycle, o.workers)
		ld.cvc = store == scenarioPGRedis
		ld.start(lctx, o.workers)
		delay := randDuration(o.killMin, o.killMax)
		sleep(ctx, delay)
		h.cur.Swap(nil).Kill()
		cancel()
		ld.wait()
		res.cycles++
		acks, a2 := h.led.acksSince(ackIdx)
		rs, r2 := h.up.receiptsSince(rIdx)
		ackIdx, rIdx = a2, r2
		if c == o.cycles {
			fmt.Fprintf(o.out, "%s cycle %d/%d: SIGKILL after %v of load: +%d acked, +%d upstream receipts; checking offline\n",
				store, c, o.cycles, delay.Round(time.Millisecond), len(acks), len(rs))
			break
		}
		d, err := h.start(ctx)
		if err != nil {
			res.problem("restart after cycle %d: %v", c, err)
			return res
		}
		res.ready = append(res.ready, d)
		n, failed, err := h.checkOnline(ctx, acks, rs)
		if err != nil {
			res.problem("cycle %d: online check: %v", c, err)
		}
		fmt.Fprintf(o.out, "%s cycle %d/%d: SIGKILL after %v of load: +%d acked, +%d upstream receipts; ready again in %v; %d tokens revealed via /@me, %d failed\n",
			store, c, o.cycles, delay.Round(time.Millisecond), len(acks), len(rs), d.Round(time.Millisecond), n, failed)
	}
	if ctx.Err() != nil {
		res.problem("interrupted")
		return res
	}
	// tok is down (killed): check everything straight from the store.
	acks, _ := h.led.acksSince(0)
	rs, _ := h.up.receiptsSince(0)
	var fails []failure
	start := time.Now()
	if store == "bolt" {
		fails, err = verifyBoltOffline(ctx, h.boltPath(), h.keys, mustWants(h, acks, rs), o.verifyParallel)
		res.boltCheck = "ok"
		if err != nil {
			res.boltCheck = "FAILED"
			res.problem("offline: %v", err)
		}
	} else {
		fails, err = verifyPostgresOffline(ctx, pgURL, h.keys, mustWants(h, acks, rs), o.verifyParallel)
		if err != nil {
			res.problem("offline: %v", err)
		}
	}
	for _, f := range fails {
		if _, seen := h.failed[f.token]; !seen {
			h.failed[f.token] = f
		}
	}
	fmt.Fprintf(o.out, "%s: offline check of all %d acked tokens and %d upstream receipts: %d failed (%v)\n",
		store, len(acks), len(rs), len(fails), time.Since(start).Round(time.Millisecond))
	if store == scenarioPGRedis {
		checkCVCs(ctx, h, pgURL, rs)
	}
	// And tok starts cleanly on the checked store, and stops cleanly.
	d, err := h.start(ctx)
	if err != nil {
		res.problem("final start: %v", err)
	} else {
		res.ready = append(res.ready, d)
		last := acks[max(0, len(acks)-200):]
		if _, failed, err := h.checkOnline(ctx, last, nil); err != nil || failed > 0 {
			res.problem("final start: online check of %d tokens: %d failed, %v", len(last), failed, err)
		}
		if err := h.cur.Swap(nil).Stop(stopGrace); err != nil {
			res.problem("final SIGTERM: %v", err)
		}
		if store == "bolt" {
			if err := boltCheck(h.boltPath()); err != nil {
				res.boltCheck = "FAILED"
				res.problem("after a clean stop: %v", err)
			}
		}
	}
	h.finish()
	return res
}

// markInterrupted records in res whether ctx was cancelled (Ctrl-C).
func markInterrupted(ctx context.Context, res *result) {
	if ctx.Err() != nil {
		res.interrupted = true
	}
}

// mustWants is wants, recording its problems in the result.
func mustWants(h *harness, acks []ack, rs []receipt) []want {
	ws, problems := wants(acks, rs, h.led)
	for _, p := range problems {
		h.res.problem("%s", p)
	}
	return ws
}

// freshSchema creates a schema of its own in the database at url and
// returns url with search_path set to it, and a function dropping it.
func freshSchema(ctx context.Context, url string) (string, func(), error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "tok_crash_" + hex.EncodeToString(rnd[:])
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), url)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema, drop, nil
}

// randDuration returns a uniformly random duration in [lo, hi].
func randDuration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(hi-lo)+1))
	return lo + time.Duration(n.Int64())
}

// pollStatus polls GET url until it answers want, for at most limit. It
// returns how long that took.
func pollStatus(ctx context.Context, url string, want int, limit time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	start := time.Now()
	last := "no answer"
	for time.Since(start) < limit && ctx.Err() == nil {
		code, err := get(ctx, client, url)
		if err == nil && code == want {
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprint(code)
		}
		sleep(ctx, 10*time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("GET %s: not %d within %v (last: %s)", url, want, limit, last)
}

// stopGrace is how long tok may take to drain after SIGTERM.
const stopGrace = 10 * time.Second

// get returns the status code of GET url.
func get(ctx context.Context, client *http.Client, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
