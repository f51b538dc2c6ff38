package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/vault"
)

// TestBoundCVCAtScale proves CVCs bound to their card, through the binary
// with the README's example config (examples/tok.yaml, only its addresses
// changed): 100,000 checkouts of distinct cards with random CVCs inside one
// ttl are all accepted (an unbound 3-digit CVC ran out after ~900), each
// CVC reaches the provider through egress only with its own card token,
// and a card token paired with another card's CVC token never reveals that
// CVC. With -short, 5,000 checkouts; under the race detector 20,000
// (.ci/run runs it at full size without).
func TestBoundCVCAtScale(t *testing.T) {
	n := 100_000
	switch {
	case testing.Short():
		n = 5_000
	case raceEnabled:
		n = 20_000
	}
	const workers = 16
	const egressKey = "e2e-egress-key"
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := tok(t, dir, "", "keys", "new", "-o", "data/keyring.yaml"); code != 0 {
		t.Fatalf("keys new: %s", errOut)
	}

	// The shop echoes what it received: the client reads its tokens.
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		io.Copy(w, r.Body)
	}))
	t.Cleanup(shop.Close)
	// The provider checks each charge against the CVC the shopper typed.
	var cvcOf sync.Map // card number → CVC
	var charged, wrong atomic.Int64
	psp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		charged.Add(1)
		want, ok := cvcOf.Load(r.PostForm.Get("card[number]"))
		if !ok || want != r.PostForm.Get("card[cvc]") {
			wrong.Add(1)
			w.WriteHeader(http.StatusPaymentRequired)
			io.WriteString(w, `{"error":"card_declined"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"succeeded"}`)
	}))
	t.Cleanup(psp.Close)

	egressAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../tok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(
		`public: "127.0.0.1:8080"`, `public: "127.0.0.1:0"`,
		`auth: "127.0.0.1:5000"`, `auth: "127.0.0.1:0"`,
		`admin: "127.0.0.1:9090"`, `admin: "127.0.0.1:0"`,
		`egress: "127.0.0.1:8081"`, `egress: "`+egressAddr+`"`,
		"upstream: http://127.0.0.1:3000", "upstream: "+shop.URL,
		"upstream: http://127.0.0.1:4000", "upstream: "+psp.URL,
	).Replace(string(example))
	// All 100,000 checkouts come from one address, which the per-source
	// inbound budget (an app that echoes tokens is an oracle)
	// exists to stop; this test is about the CVC token space, so it lifts
	// that budget as a load test behind trusted_proxies-less loopback must.
	cfg += "\nbudgets: {inbound: 1000000}\n"
	if strings.Count(cfg, "127.0.0.1:0") != 3 || !strings.Contains(cfg, shop.URL) || !strings.Contains(cfg, psp.URL) {
		t.Fatalf("examples/tok.yaml changed shape; the test could not point it at its servers:\n%s", cfg)
	}
	s := startTok(t, dir, writeFile(t, dir, "tok.yaml", cfg), "TOK_EGRESS_KEY="+egressKey, "PSP_API_KEY=Bearer sk_test")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	post := func(u, ct, body string, hdr ...string) (int, []byte, error) {
		req, err := http.NewRequest("POST", u, strings.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Content-Type", ct)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	cards, cvcs := make([]string, n), make([]string, n)
	cardToks, cvcToks := make([]string, n), make([]string, n)
	r := rand.New(rand.NewPCG(12, uint64(n)))
	for i := range n {
		cards[i] = luhnComplete(fmt.Sprintf("4%014d", i*7919+r.IntN(7919)))
		cvcs[i] = fmt.Sprintf("%03d", r.IntN(1000))
		cvcOf.Store(cards[i], cvcs[i])
	}
	checkout := "http://" + s.addrs["public"] + "/checkout"
	parallel(t, n, workers, func(i int) error {
		var code int
		var body []byte
		var err error
		if i%10 == 0 { // the form too, as the shop's checkout page posts it
			code, body, err = post(checkout, "application/x-www-form-urlencoded",
				"card%5Bnumber%5D="+cards[i]+"&card%5Bcvc%5D="+cvcs[i]+"&amount=100")
		} else {
			code, body, err = post(checkout, "application/json",
				`{"card":{"number":"`+cards[i]+`","cvc":"`+cvcs[i]+`"},"amount":100}`)
		}
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("checkout %d = %d %s, %v", i, code, body, err)
		}
		if i%10 == 0 {
			q, err := url.ParseQuery(string(body))
			if err != nil {
				return err
			}
			cardToks[i], cvcToks[i] = q.Get("card[number]"), q.Get("card[cvc]")
		} else {
			var got struct{ Card struct{ Number, CVC string } }
			if err := json.Unmarshal(body, &got); err != nil {
				return fmt.Errorf("checkout %d: the shop got %q: %v", i, body, err)
			}
			cardToks[i], cvcToks[i] = got.Card.Number, got.Card.CVC
		}
		if cardToks[i] == cards[i] || len(cvcToks[i]) != 3 || !vault.IsShortToken(cvcToks[i]) {
			return fmt.Errorf("checkout %d: the shop got card %s, CVC %q; want tokens of the same shape", i, vault.Mask(cardToks[i]), cvcToks[i])
		}
		return nil
	})
	if t.Failed() {
		return
	}

	pay := "http://" + egressAddr + "/psp/v1/charges"
	parallel(t, n, workers, func(i int) error {
		code, body, err := post(pay, "application/x-www-form-urlencoded",
			"card[number]="+cardToks[i]+"&card[cvc]="+cvcToks[i], "X-Tok-Egress-Key", egressKey)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("charge %d = %d %s, %v; want the provider to see its own card and CVC", i, code, body, err)
		}
		return nil
	})
	if got, bad := charged.Load(), wrong.Load(); got != int64(n) || bad != 0 {
		t.Fatalf("the provider saw %d charges, %d with a wrong CVC; want %d, 0", got, bad, n)
	}

	// Cross pairs: card i's token with card j's CVC token never reaches the
	// provider (unless j's token happens to be i's own, which it is not
	// for distinct cards with one checkout each).
	const cross = 2_000
	parallel(t, cross, workers, func(k int) error {
		i, j := k*(n/cross), (k*(n/cross)+1+k%97)%n
		if cvcToks[j] == cvcToks[i] {
			return nil
		}
		code, body, err := post(pay, "application/x-www-form-urlencoded",
			"card[number]="+cardToks[i]+"&card[cvc]="+cvcToks[j], "X-Tok-Egress-Key", egressKey)
		if err != nil || code != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte(`"unknown_token"`)) {
			return fmt.Errorf("card %d's token with card %d's CVC token = %d %s, %v; want 422 unknown_token", i, j, code, body, err)
		}
		return nil
	})
	if got := charged.Load(); got != int64(n) {
		t.Errorf("the provider saw %d charges after the cross pairs, want still %d", got, n)
	}
	s.stop(t)
}

// parallel runs f(0..n-1) on workers goroutines and fails t on the first
// few errors, stopping early once one is seen.
func parallel(t *testing.T, n, workers int, f func(i int) error) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for failed.Load() == 0 {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					failed.Add(1)
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

// luhnComplete appends the check digit that makes d pass the Luhn check.
func luhnComplete(d string) string {
	for c := '0'; c <= '9'; c++ {
		if vault.Luhn(d + string(c)) {
			return d + string(c)
		}
	}
	panic("unreachable")
}

// TestEgressCVCEchoBinary, through the binary: a
// provider that echoes the CVC it was sent (JSON, and a form) hands the app
// the CVC token back, never the code; the same digits as an amount stay.
func TestEgressCVCEchoBinary(t *testing.T) {
	const egressKey = "e2e-egress-key"
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	shop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.Copy(w, r.Body)
	}))
	t.Cleanup(shop.Close)
	var form atomic.Bool
	psp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		cvc := r.PostForm.Get("card[cvc]")
		if form.Load() {
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			fmt.Fprintf(w, "amount=%s&card%%5Bcvc%%5D=%s", cvc, cvc)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"amount":%s,"card":{"cvc":"%s","cvc_check":"pass"}}`, cvc, cvc)
	}))
	t.Cleanup(psp.Close)
	egressAddr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: %q}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
      - {json: card.cvc, format: digits, store: memory, ttl: 15m, bind: card.number}
egress:
  - name: psp
    match: {method: POST, path: /psp/*}
    upstream: %s
    strip_prefix: /psp
    egress_key: env:TOK_EGRESS_KEY
    fields:
      - form: card[number]
      - form: card[cvc]
        bind: card[number]
`, egressAddr, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), shop.URL, psp.URL))
	s := startTok(t, dir, cfg, "TOK_EGRESS_KEY="+egressKey)

	resp, err := http.Post("http://"+s.addrs["public"]+"/checkout", "application/json",
		strings.NewReader(`{"card":{"number":"`+testPAN+`","cvc":"737"}}`))
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Card struct{ Number, CVC string } }
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 200 || got.Card.CVC == "" || got.Card.CVC == "737" {
		t.Fatalf("checkout = %d, card %s, CVC %q", resp.StatusCode, vault.Mask(got.Card.Number), got.Card.CVC)
	}
	for _, asForm := range []bool{false, true} {
		form.Store(asForm)
		req, _ := http.NewRequest("POST", "http://"+egressAddr+"/psp/v1/charges",
			strings.NewReader("card[number]="+got.Card.Number+"&card[cvc]="+got.Card.CVC))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Tok-Egress-Key", egressKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `{"amount":737,"card":{"cvc":"` + got.Card.CVC + `","cvc_check":"pass"}}`
		if asForm {
			want = "amount=737&card%5Bcvc%5D=" + got.Card.CVC
		}
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("form %v: the app got %d %s, want %s", asForm, resp.StatusCode, body, want)
		}
	}
	s.stop(t)
}
