package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
)

// Tests of the convergence oracle: the /handle oracle closed, the convergent paths
// bounded by budgets in values, every /handle call audited, and /@me
// rate-limited and trimmed for masked-only clients.

// TestAnonymousHandleNeverConverges: the public /handle answers the seed's
// contract with a fresh token every time, stored without a fingerprint, so
// no answer depends on whether the card already has a token.
func TestAnonymousHandleNeverConverges(t *testing.T) {
	e := newTestEnv(t, nil)
	known := e.clientHandle(e.login("cih"), panVisa) // the card's convergent token
	seen := map[string]bool{known: true}
	for i := range 20 {
		tok := e.handle(panVisa)
		if seen[tok] {
			t.Fatalf("anonymous POST /handle %d returned %s, a token seen before; want a fresh one each time", i, tok)
		}
		seen[tok] = true
		rec, err := e.vault.Lookup(t.Context(), tok)
		if err != nil || len(rec.Fingerprint) != 0 {
			t.Fatalf("record of anonymous token %s: fingerprint %x, %v; want none", tok, rec.Fingerprint, err)
		}
	}
	// A batch holding the card many times gets as many distinct tokens.
	body := `{"pan_numbers":["` + strings.TrimSuffix(strings.Repeat(panVisa+`","`, 50), `","`) + `"]}`
	r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", body)
	var out struct{ Tokens []string }
	if err := json.Unmarshal(r.body, &out); r.StatusCode != 200 || err != nil || len(out.Tokens) != 50 {
		t.Fatalf("batch = %d %s", r.StatusCode, r.body)
	}
	for _, tok := range out.Tokens {
		if seen[tok] {
			t.Errorf("batch token %s seen before", tok)
		}
		seen[tok] = true
	}
	// The seed contract: same length, digits, first 6 and last 4 kept.
	if tok := e.handle(seedPAN); len(tok) != len(seedPAN) || tok[:6] != seedPAN[:6] || tok[len(tok)-4:] != seedPAN[len(seedPAN)-4:] || vault.Luhn(tok) {
		t.Errorf("anonymous token %s for %s breaks the seed's token format", tok, vault.Mask(seedPAN))
	}
}

// TestClientHandleBudget: the convergent /handle on the auth listener wants
// a login and spends the client's budget in values, refusing with 429, a
// stable code and Retry-After once it is spent, until it refills.
func TestClientHandleBudget(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) {
		o.Budgets = Budgets{Window: time.Hour, HandleClient: 10}
		o.Clients[1].HandleBudget = 2 // viewer
	})
	wantError(t, do(t, nil, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number":"`+panVisa+`"}`), 401, "unauthenticated")

	cih := e.login("cih")
	batch := func(n int) string {
		pans := make([]string, n)
		for i := range pans {
			pans[i] = fmt.Sprintf("4%015d", 1000+i)
		}
		return `{"pan_numbers":["` + strings.Join(pans, `","`) + `"]}`
	}
	if r := do(t, cih, "POST", e.auth.URL+"/handle", "application/json", batch(6)); r.StatusCode != 200 {
		t.Fatalf("6 of 10 = %d %s, want 200", r.StatusCode, r.body)
	}
	// 4 left: a batch of 5 is refused whole, nothing tokenized.
	r := do(t, cih, "POST", e.auth.URL+"/handle", "application/json", batch(5))
	wantError(t, r, 429, "budget_exceeded")
	// 1 value short at 10 per hour: 360 s.
	if ra := r.Header.Get("Retry-After"); ra != "360" {
		t.Errorf("Retry-After = %q, want 360", ra)
	}
	// 4 left still: they are spendable.
	if r := do(t, cih, "POST", e.auth.URL+"/handle", "application/json", batch(4)); r.StatusCode != 200 {
		t.Fatalf("the last 4 = %d %s, want 200", r.StatusCode, r.body)
	}
	wantError(t, do(t, cih, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number":"`+panVisa+`"}`), 429, "budget_exceeded")
	// More than the whole budget in one request can never pass.
	wantError(t, do(t, cih, "POST", e.auth.URL+"/handle", "application/json", batch(11)), 413, "batch_too_large")
	// The budget refills at 10 an hour.
	e.clock.Advance(6 * time.Minute)
	if r := do(t, cih, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number":"`+panVisa+`"}`); r.StatusCode != 200 {
		t.Errorf("after 6 minutes = %d %s, want 200", r.StatusCode, r.body)
	}
	// Budgets are per client: viewer has its own, of 2.
	viewer := e.login("viewer")
	if r := do(t, viewer, "POST", e.auth.URL+"/handle", "application/json", batch(2)); r.StatusCode != 200 {
		t.Errorf("viewer's 2 = %d %s, want 200", r.StatusCode, r.body)
	}
	wantError(t, do(t, viewer, "POST", e.auth.URL+"/handle", "application/json", batch(1)), 429, "budget_exceeded")
	if got := counterValue(t, e.srv.metrics.budgetRefusals.WithLabelValues(budgetHandleClient)); got != 4 {
		t.Errorf("tok_budget_refusals_total{budget=handle_client} = %v, want 4", got)
	}
}

// TestAnonymousHandleBudget: the public /handle spends its caller address's
// budget, in values.
func TestAnonymousHandleBudget(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.Budgets.HandleAnonymous = 3 })
	r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_numbers":["`+panVisa+`","`+panMC+`","`+panAmex+`"]}`)
	if r.StatusCode != 200 {
		t.Fatalf("3 of 3 = %d %s", r.StatusCode, r.body)
	}
	r = do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number":"`+seedPAN+`"}`)
	wantError(t, r, 429, "budget_exceeded")
	if r.Header.Get("Retry-After") != "1200" { // 1 value at 3 an hour
		t.Errorf("Retry-After = %q, want 1200", r.Header.Get("Retry-After"))
	}
}

// TestHandleAuditLines: one audit line per /handle call, naming the
// client (or anonymous and the address), the count and the outcome, and
// never a card number; no audit line, no tokens.
func TestHandleAuditLines(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.Budgets.HandleClient = 2 })
	e.handle(seedPAN)
	do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_numbers":["`+panVisa+`","12ab"]}`)
	cih := e.login("cih")
	do(t, cih, "POST", e.auth.URL+"/handle", "application/json", `{"pan_numbers":["`+panVisa+`","`+panMC+`"]}`)
	do(t, cih, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number":"`+panAmex+`"}`)

	var lines []audit.Event
	for _, l := range strings.Split(strings.TrimSpace(e.audit.String()), "\n") {
		var ev audit.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if ev.Event == "handle" {
			lines = append(lines, ev)
		}
	}
	want := []struct {
		client  string
		count   int
		outcome string
	}{
		{"anonymous", 1, "ok"},
		{"anonymous", 2, "invalid_pan"},
		{"cih", 2, "ok"},
		{"cih", 1, "budget_exceeded"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d handle audit lines, want %d:\n%s", len(lines), len(want), e.audit.String())
	}
	for i, w := range want {
		l := lines[i]
		if l.Client != w.client || l.Count != w.count || l.Outcome != w.outcome || l.Source != "127.0.0.1" {
			t.Errorf("handle audit line %d = client %q count %d outcome %q source %q; want %q %d %q from 127.0.0.1",
				i, l.Client, l.Count, l.Outcome, l.Source, w.client, w.count, w.outcome)
		}
		if w.client == "cih" && l.Session == "" {
			t.Errorf("handle audit line %d has no session id", i)
		}
	}
	for _, p := range []string{seedPAN, panVisa, panMC, panAmex} {
		if strings.Contains(e.audit.String()+e.log.String(), p) {
			t.Errorf("the audit log or log holds %s", vault.Mask(p))
		}
	}

	// Fail closed: an audit log that cannot be written withholds the tokens.
	e.clock.Advance(time.Hour) // refills cih's budget of 2
	cih = e.login("cih")
	e.audit.breakWrites()
	for _, url := range []string{e.public.URL, e.auth.URL} {
		r := do(t, cih, "POST", url+"/handle", "application/json", `{"pan_number":"`+panDiscover+`"}`)
		wantError(t, r, 503, "audit_unavailable")
		if strings.Contains(string(r.body), `"token"`) {
			t.Errorf("POST %s/handle with a broken audit log answered %s: want no token", url, r.body)
		}
	}
}

// TestMeMaskedShape: a masked-only client gets neither encrypted_pan nor
// the fingerprint; a reveal client keeps the prototype's shape, with a
// hash for tokens that store no fingerprint too.
func TestMeMaskedShape(t *testing.T) {
	e := newTestEnv(t, nil)
	anon := e.handle(seedPAN)
	conv := e.clientHandle(e.login("cih"), seedPAN)
	for _, tok := range []string{anon, conv} {
		viewer := do(t, e.login("viewer"), "GET", e.auth.URL+"/@me?token="+tok, "", "").json(t)
		for _, k := range []string{"encrypted_pan", "hash", "pan"} {
			if _, ok := viewer[k]; ok {
				t.Errorf("masked client got %q for token %s: %v", k, tok, viewer)
			}
		}
		if viewer["masked_pan"] != vault.Mask(seedPAN) || viewer["token"] != tok {
			t.Errorf("masked client got %v, want the token and the masked PAN", viewer)
		}
		cih := do(t, e.login("cih"), "GET", e.auth.URL+"/@me?token="+tok, "", "").json(t)
		for _, k := range []string{"token", "encrypted_pan", "hash", "transaction_time", "pan"} {
			if s, _ := cih[k].(string); s == "" {
				t.Errorf("reveal client: %q missing or empty for token %s: %v", k, tok, cih)
			}
		}
	}
	// Both tokens stand for one card: a reveal client sees one hash.
	h := func(tok string) any {
		return do(t, e.login("cih"), "GET", e.auth.URL+"/@me?token="+tok, "", "").json(t)["hash"]
	}
	if a, c := h(anon), h(conv); a != c {
		t.Errorf("hash of the anonymous token %v, of the convergent one %v: want the card's one fingerprint", a, c)
	}
}

// TestRevealBudget: /@me lookups spend the client's budget, misses too;
// past it 429 with Retry-After and an audit line; other clients are
// unaffected; the budget refills.
func TestRevealBudget(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.Budgets.Reveal = 3 })
	tok := e.handle(seedPAN)
	cih := e.login("cih")
	for _, q := range []string{tok, "123", tok} { // "123": a CVC-sized guess, refused (a short token reveals only with its card) but spent
		if r := do(t, cih, "GET", e.auth.URL+"/@me?token="+q, "", ""); r.StatusCode != 200 && r.StatusCode != 422 {
			t.Fatalf("lookup of %s = %d %s", q, r.StatusCode, r.body)
		}
	}
	r := do(t, cih, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	wantError(t, r, 429, "budget_exceeded")
	if r.Header.Get("Retry-After") != "1200" {
		t.Errorf("Retry-After = %q, want 1200 (1 of 3 an hour)", r.Header.Get("Retry-After"))
	}
	if strings.Contains(string(r.body), seedPAN) {
		t.Error("a refused lookup holds the PAN")
	}
	if !strings.Contains(e.audit.String(), `"event":"reveal","client":"cih"`) || !strings.Contains(e.audit.String(), `"outcome":"budget_exceeded"`) {
		t.Errorf("no audit line for the refused reveal:\n%s", e.audit.String())
	}
	if r := do(t, e.login("viewer"), "GET", e.auth.URL+"/@me?token="+tok, "", ""); r.StatusCode != 200 {
		t.Errorf("viewer's lookup = %d %s: budgets are per client", r.StatusCode, r.body)
	}
	e.clock.Advance(20 * time.Minute)
	cih = e.login("cih") // the session idled out meanwhile
	if r := do(t, cih, "GET", e.auth.URL+"/@me?token="+tok, "", ""); r.StatusCode != 200 {
		t.Errorf("after 20 minutes = %d %s, want 200", r.StatusCode, r.body)
	}
}

// TestInboundBudget: inbound routes spend the shopper address's budget on
// convergent values only; past it nothing reaches the app.
func TestInboundBudget(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)} // no refill mid-test
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Budgets.Inbound, o.Now = 2, clock.Now }})
	post := func(body string) response {
		return e.send("POST", "/checkout", "application/json", []byte(body))
	}
	// The CVC (store: memory) is unique: it does not count.
	for _, p := range []string{panVisa, panMC} {
		if r := post(`{"card":{"number":"` + p + `","cvc":"123"}}`); r.StatusCode != 200 {
			t.Fatalf("checkout = %d %s", r.StatusCode, r.body)
		}
	}
	r := post(`{"card":{"number":"` + panAmex + `"}}`)
	wantError(t, r, 429, "budget_exceeded")
	if r.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	e.up.mu.Lock()
	n := len(e.up.reqs)
	e.up.mu.Unlock()
	if n != 2 {
		t.Errorf("the app received %d requests, want 2: the refused one must not be forwarded", n)
	}
	// Each checkout stored its card and its CVC (a volatile record).
	if got := counterValue(t, e.srv.metrics.recordsCreated.WithLabelValues(pathInbound)); got != 4 {
		t.Errorf("tok_records_created_total{path=inbound} = %v, want 4", got)
	}
}

// TestRecordsCreatedMetric: new records are counted by path; a convergent
// value found again is not a new record.
func TestRecordsCreatedMetric(t *testing.T) {
	e := newTestEnv(t, nil)
	e.handle(panVisa)
	e.handle(panVisa)
	cih := e.login("cih")
	e.clientHandle(cih, panVisa)
	e.clientHandle(cih, panVisa)
	for path, want := range map[string]float64{pathHandleAnonymous: 2, pathHandleClient: 1} {
		if got := counterValue(t, e.srv.metrics.recordsCreated.WithLabelValues(path)); got != want {
			t.Errorf("tok_records_created_total{path=%s} = %v, want %v", path, got, want)
		}
	}
	r := do(t, nil, "GET", e.admin.URL+"/metrics", "", "")
	for _, want := range []string{`tok_records_created_total{path="handle_anonymous"} 2`, `tok_budget_refusals_total{budget="reveal"} 0`} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestSourceKey: IPv4 peers are keyed by address, IPv6 ones by their /64.
func TestSourceKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.7:5555":              "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:5555": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ff::1]:1":      "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:5555":     "192.0.2.7",
	} {
		r := &http.Request{RemoteAddr: addr, Header: http.Header{"X-Forwarded-For": {"198.51.100.1"}}}
		if got := sourceKey(r, nil); got != want {
			t.Errorf("sourceKey(%s) = %s, want %s", addr, got, want)
		}
	}
	// Behind trusted proxies, the last untrusted hop of X-Forwarded-For.
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, tt := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"10.1.2.3:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"10.1.2.3:80", []string{"6.6.6.6, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"}, // 6.6.6.6 is the client's own claim
		{"10.1.2.3:80", []string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"},
		{"10.1.2.3:80", nil, "10.1.2.3"},
		{"10.1.2.3:80", []string{"junk, 203.0.113.9"}, "203.0.113.9"},
		{"10.1.2.3:80", []string{"203.0.113.9, junk"}, "10.1.2.3"},
		{"[::1]:80", []string{"2001:db8:1:2::9"}, "2001:db8:1:2::/64"},
		{"192.0.2.7:80", []string{"203.0.113.9"}, "192.0.2.7"}, // an untrusted peer's header is not believed
	} {
		r := &http.Request{RemoteAddr: tt.peer, Header: http.Header{"X-Forwarded-For": tt.xff}}
		if got := sourceKey(r, trusted); got != tt.want {
			t.Errorf("sourceKey(%s, XFF %q) = %s, want %s", tt.peer, tt.xff, got, tt.want)
		}
	}
}

// TestBudgetSetBounded: past maxBudgetKeys, paid-off keys are dropped
// and, if none is, new keys share one budget: memory stays bounded.
func TestBudgetSetBounded(t *testing.T) {
	s := newBudgetSet()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxBudgetKeys {
		if ok, _ := s.take(fmt.Sprint(i), 1, 2, time.Hour, now); !ok {
			t.Fatal("fresh key refused")
		}
	}
	// Every key is mid-spend: two new keys share the overflow bucket of 2.
	s.take("new1", 2, 2, time.Hour, now)
	if ok, _ := s.take("new2", 1, 2, time.Hour, now); ok {
		t.Error("a new key past the cap got a full budget of its own")
	}
	if len(s.tat) > maxBudgetKeys {
		t.Errorf("%d keys held, want at most %d", len(s.tat), maxBudgetKeys)
	}
	// An hour on, every bucket has refilled: they are dropped for new keys.
	if ok, _ := s.take("new3", 1, 2, time.Hour, now.Add(time.Hour)); !ok {
		t.Error("a new key after the refill was refused")
	}
	if len(s.tat) != 1 {
		t.Errorf("%d keys held after the refill, want 1", len(s.tat))
	}
}

// counterValue reads one counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	m := <-ch
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// TestBudgetsSurviveReload: a reload keeps what callers have spent (a
// SIGHUP must not hand an attacker a fresh budget) and applies new sizes.
func TestBudgetsSurviveReload(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.Budgets.HandleClient = 2 })
	opts := e.srv.opts
	opts.Budgets.HandleClient = 3
	if err := e.srv.Reload(opts); err != nil {
		t.Fatal(err)
	}
	next := e.srv.live.Load()
	if next == e.srv || next.budgets != e.srv.budgets {
		t.Fatal("the reloaded generation does not share the budgets' state")
	}
	if next.opts.Budgets.HandleClient != 3 {
		t.Errorf("reloaded budget = %d, want 3", next.opts.Budgets.HandleClient)
	}
}
