package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/vault"
)

// redisServer is a redis-server a test started on a free port, with no
// persistence, so that it can stop and restart it.
type redisServer struct {
	port int
	dir  string
	cmd  *exec.Cmd
}

// startRedis starts a redis-server for t, or skips t when
// TOK_TEST_REDIS_URL is unset (no Redis wanted) or redis-server is absent.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	if os.Getenv("TOK_TEST_REDIS_URL") == "" {
		t.Skip("TOK_TEST_REDIS_URL is unset: no Redis to test against")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &redisServer{port: l.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	l.Close()
	r.start(t)
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

func (r *redisServer) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen on %d", r.port)
		}
	}
}

// stop kills the server: whatever it held is gone, as after a crash.
func (r *redisServer) stop() {
	if r.cmd != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// scaleoutConfig is a replica's config: a checkout route with a bound CVC,
// an egress route to psp on egress, a reveal client, the volatile store on
// Redis at redisURL; the vault is on PostgreSQL (TOK_POSTGRES_URL).
func scaleoutConfig(t *testing.T, dir, name, egress, redisURL, shop, psp, hash string) string {
	return writeFile(t, dir, name, fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: %q}
vault: {keyring: /nonexistent/keyring.yaml, volatile: %q}
audit: {path: "-"}
upstream: %s
budgets: {inbound: 1000000, reveal: 1000000}
clients:
  - {name: cih, secret_hash: %q, reveal: true}
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - {json: card.number, format: pan}
      - {json: card.cvc, format: digits, store: memory, ttl: 15m, bind: card.number}
egress:
  - name: psp
    match: {method: POST, path: /psp/*}
    upstream: %s
    strip_prefix: /psp
    fields:
      - form: card[number]
      - form: card[cvc]
        bind: card[number]
    egress_key: env:TOK_EGRESS_KEY
`, egress, redisURL, shop, hash, psp))
}

// TestScaleOut is the scale-out shape through the binary: two
// tok processes on one PostgreSQL vault and one Redis volatile store, with
// a round-robin in the test. A checkout with a bound CVC on one replica is
// paid through the other's egress and the provider sees the right CVC; a
// login on one serves /@me on the other; one replica SIGKILLed mid-load
// loses no acknowledged token (each reveals through the survivor), which
// keeps serving; Redis killed makes CVC checkouts 503 with nothing
// forwarded and /readyz 503, and once it is back tok serves again, the
// CVCs it held lost (their payment is refused 422 unknown_token: the app
// asks the shopper for the CVC again).
func TestScaleOut(t *testing.T) {
	pg := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pg == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
	}
	rds := startRedis(t)
	pg = pgSchema(t, pg, "tok_scaleout_")
	const egressKey, secret = "scaleout-egress-key", "scaleout-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := vault.NewKeyringFile().Marshal()
	if err != nil {
		t.Fatal(err)
	}

	var shopHits atomic.Int64
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		shopHits.Add(1)
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, r.Body)
	}))
	t.Cleanup(shop.Close)
	var cvcOf sync.Map // card number → CVC typed at checkout
	var charged, wrong atomic.Int64
	psp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		charged.Add(1)
		if want, ok := cvcOf.Load(r.PostForm.Get("card[number]")); !ok || want != r.PostForm.Get("card[cvc]") {
			wrong.Add(1)
			w.WriteHeader(http.StatusPaymentRequired)
			return
		}
		io.WriteString(w, `{"status":"succeeded"}`)
	}))
	t.Cleanup(psp.Close)

	dir := t.TempDir()
	env := []string{"TOK_POSTGRES_URL=" + pg, "TOK_KEYRING=" + string(keyring), "TOK_EGRESS_KEY=" + egressKey}
	var reps [2]*server
	var egress [2]string
	for i := range reps {
		if egress[i], err = freeport.Addr(); err != nil {
			t.Fatal(err)
		}
		cfg := scaleoutConfig(t, dir, fmt.Sprintf("tok%d.yaml", i), egress[i], rds.url(), shop.URL, psp.URL, string(hash))
		reps[i] = startTok(t, dir, cfg, env...)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	checkout := func(rep int, card, cvc string) (code int, cardTok, cvcTok string, err error) {
		resp, err := client.Post("http://"+reps[rep].addrs["public"]+"/checkout", "application/json",
			strings.NewReader(`{"card":{"number":"`+card+`","cvc":"`+cvc+`"},"amount":100}`))
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, "", "", nil
		}
		var got struct{ Card struct{ Number, CVC string } }
		if err := json.Unmarshal(body, &got); err != nil {
			return resp.StatusCode, "", "", err
		}
		return resp.StatusCode, got.Card.Number, got.Card.CVC, nil
	}
	pay := func(rep int, cardTok, cvcTok string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+egress[rep]+"/psp/v1/charges",
			strings.NewReader("card[number]="+cardTok+"&card[cvc]="+cvcTok))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Tok-Egress-Key", egressKey)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("pay: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	// A checkout on one replica, the payment on the other, 50 times each way.
	const n = 100
	cards := make([]string, n)
	for i := range n {
		cards[i] = luhnComplete(fmt.Sprintf("4%014d", 170000+i))
		cvc := fmt.Sprintf("%03d", (i*37)%1000)
		cvcOf.Store(cards[i], cvc)
		code, cardTok, cvcTok, err := checkout(i%2, cards[i], cvc)
		if err != nil || code != http.StatusOK {
			t.Fatalf("checkout %d on replica %d = %d, %v", i, i%2, code, err)
		}
		if code, body := pay((i+1)%2, cardTok, cvcTok); code != http.StatusOK {
			t.Fatalf("payment %d on replica %d of a checkout on replica %d = %d %s; want 200", i, (i+1)%2, i%2, code, body)
		}
	}
	if c, w := charged.Load(), wrong.Load(); c != n || w != 0 {
		t.Fatalf("the provider saw %d charges, %d with a wrong CVC; want %d, 0", c, w, n)
	}

	// Both replicas report the shared store's fill on /metrics.
	for i, rep := range reps {
		_, metrics := rep.getMetrics(t)
		held, max := metricLine(metrics, "tok_volatile_records"), metricLine(metrics, "tok_volatile_records_max")
		if held < n || max != 262144 {
			t.Errorf("replica %d: tok_volatile_records = %v, tok_volatile_records_max = %v; want at least %d of 262144 (both replicas' CVCs)", i, held, max, n)
		}
	}

	// A login on one replica, /@me on the other.
	cookie := reps[0].login(t, "cih", secret)
	_, cardTok, _, _ := checkout(0, testPAN, "123")
	if code, pan := reps[1].reveal(t, cookie, cardTok); code != http.StatusOK || pan != testPAN {
		t.Fatalf("/@me on replica 1 with replica 0's session = %d, %s; want 200 and the card", code, vault.Mask(pan))
	}

	// Replica 1 SIGKILLed mid-load: every acknowledged checkout's card
	// token reveals through replica 0, which keeps serving.
	const load = 400
	type acked struct{ card, tok string }
	var mu sync.Mutex
	var acks []acked
	var sent atomic.Int64
	var killOnce sync.Once
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < load; i += 8 {
				if sent.Add(1) == load/4 {
					killOnce.Do(func() { reps[1].p.Kill() })
				}
				card := luhnComplete(fmt.Sprintf("4%014d", 270000+i))
				code, tok, _, err := checkout(i%2, card, "321")
				if err == nil && code == http.StatusOK {
					mu.Lock()
					acks = append(acks, acked{card, tok})
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(acks) < load/2 {
		t.Fatalf("%d of %d checkouts acknowledged; want at least replica 0's half", len(acks), load)
	}
	for _, a := range acks {
		if code, pan := reps[0].reveal(t, cookie, a.tok); code != http.StatusOK || pan != a.card {
			t.Fatalf("acknowledged token %s on the survivor = %d, %s; want the card", vault.Mask(a.tok), code, vault.Mask(pan))
		}
	}
	t.Logf("replica 1 killed after %d sends: %d of %d checkouts acknowledged, all revealed by replica 0", load/4, len(acks), load)

	// Redis killed: 503, nothing forwarded; /readyz says so.
	_, lostCard, lostCVC, _ := checkout(0, cards[0], "999")
	cvcOf.Store(cards[0], "999")
	rds.stop()
	before := shopHits.Load()
	if code, _, _, err := checkout(0, cards[1], "111"); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("checkout with Redis down = %d, %v; want 503", code, err)
	}
	if got := shopHits.Load(); got != before {
		t.Errorf("the shop saw %d requests while Redis was down, want none", got-before)
	}
	paid := charged.Load()
	if code, body := pay(0, lostCard, lostCVC); code != http.StatusServiceUnavailable {
		t.Errorf("payment with a CVC while Redis is down = %d %s; want 503", code, body)
	}
	if got := charged.Load(); got != paid {
		t.Errorf("the provider saw %d charges while Redis was down, want none", got-paid)
	}
	if code := reps[0].get(t, "admin", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", code)
	}
	// Back: tok recovers by itself; the CVCs the restart lost are refused.
	rds.start(t)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, _, _, _ := checkout(0, cards[2], "222")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkout 15s after Redis came back = %d, want 200", code)
		}
	}
	if code := reps[0].get(t, "admin", "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with Redis back = %d, want 200", code)
	}
	if code, body := pay(0, lostCard, lostCVC); code != http.StatusUnprocessableEntity || !strings.Contains(body, "unknown_token") {
		t.Errorf("payment with a CVC the Redis restart lost = %d %s; want 422 unknown_token", code, body)
	}
	reps[0].stop(t)
}

// metricLine returns the value of the unlabelled series name in a
// Prometheus text exposition, or -1.
func metricLine(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
