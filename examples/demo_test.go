package examples

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/freeport"
	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// TestDemoLoop runs the demo as the README tells it, with real processes:
// tok (built from the module root, with examples/tok.yaml on free ports and
// a fresh keyring), the merchant app charging through tok's egress
// listener, and the stand-in payment provider. A card posted to tok's
// checkout reaches the app as a token; the app charges the order with that
// token; the provider receives the real card number and security code,
// and the app records the provider's answer, which shows the last four
// digits only. Skipped with -short.
func TestDemoLoop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tok and runs three processes; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := startDemo(ctx, t)

	const pan, cvc = "4242424242424242", "737"

	// 1. A shopper posts a card to tok, which fronts the shop.
	status, body := d.do(t, "POST", d.public+"/checkout", "application/json",
		`{"card": {"number": "`+pan+`", "cvc": "`+cvc+`"}, "amount": 1999, "currency": "usd"}`, nil)
	if status != http.StatusOK {
		t.Fatalf("POST /checkout through tok: %d %s", status, body)
	}
	var checkout struct {
		OrderID string `json:"order_id"`
		Card    struct{ Number, CVC string }
	}
	if err := json.Unmarshal(body, &checkout); err != nil {
		t.Fatalf("checkout answer %s: %v", body, err)
	}
	panTok, cvcTok := checkout.Card.Number, checkout.Card.CVC
	if panTok == pan || len(panTok) != len(pan) || panTok[:6] != pan[:6] || panTok[12:] != pan[12:] {
		t.Fatalf("the shop got card number %q, want a pan token keeping 424242…4242", panTok)
	}
	if cvcTok == cvc || len(cvcTok) != len(cvc) {
		t.Fatalf("the shop got security code %q, want a 3-digit token", cvcTok)
	}

	// 2. The shop stored the tokens, never the card.
	status, body = d.do(t, "GET", d.merchant+"/orders/"+checkout.OrderID, "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET the order from the shop: %d %s", status, body)
	}
	if bytes.Contains(body, []byte(pan)) || !bytes.Contains(body, []byte(panTok)) {
		t.Fatalf("the shop's order holds the card number, or not the token:\n%s", body)
	}

	// 3. Someone charges the order (through tok's public listener, like
	// any request to the shop); the shop sends the tokens to tok's egress.
	status, body = d.do(t, "POST", d.public+"/orders/"+checkout.OrderID+"/charge", "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("charge: %d %s\n%s", status, body, d.logs())
	}
	if bytes.Contains(body, []byte(pan)) {
		t.Errorf("the shop's charged order holds the card number:\n%s", body)
	}
	var order struct {
		Charge *struct {
			HTTPStatus int  `json:"http_status"`
			Paid       bool `json:"paid"`
			Response   struct {
				ID     string `json:"id"`
				Status string `json:"status"`
				Amount int64  `json:"amount"`
				Card   struct{ Brand, Last4 string }
			} `json:"response"`
		} `json:"charge"`
	}
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatalf("charged order %s: %v", body, err)
	}
	c := order.Charge
	if c == nil || !c.Paid || c.HTTPStatus != 200 || c.Response.Status != "succeeded" || c.Response.Amount != 1999 ||
		c.Response.Card.Brand != "visa" || c.Response.Card.Last4 != "4242" {
		t.Fatalf("the shop recorded %s, want the provider's succeeded charge of 1999 on visa …4242", body)
	}

	// 4. The provider received the real card, at exactly those fields.
	charges := d.pspCharges(t)
	if len(charges) != 1 {
		t.Fatalf("the provider got %d charges, want 1", len(charges))
	}
	got := charges[0]
	if got.ID != c.Response.ID || got.Card.Number != pan || got.Card.CVC != cvc || got.Amount != 1999 || got.Currency != "usd" {
		t.Errorf("the provider got %+v, want charge %s of 1999 usd with card %s cvc %s", got, c.Response.ID, pan, cvc)
	}
	wantBody := "amount=1999&card%5Bcvc%5D=" + cvc + "&card%5Bnumber%5D=" + pan + "&currency=usd&metadata%5Border_id%5D=" + checkout.OrderID
	if got.Body != wantBody {
		t.Errorf("the provider got body\n%s\nwant\n%s", got.Body, wantBody)
	}

	// 5. Each reveal left an audit line, naming the token, never the card.
	audit, err := os.ReadFile(filepath.Join(d.dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(audit, []byte(pan)) {
		t.Error("the audit log holds the card number")
	}
	reveals := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(audit))
	for sc.Scan() {
		var ev struct{ Event, Route, Field, Outcome string }
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Event == "egress_reveal" && ev.Route == "psp" && ev.Outcome == "ok" {
			reveals[ev.Field] = true
		}
	}
	if len(reveals) != 2 {
		t.Errorf("audit log: egress reveals of %v, want card[number] and card[cvc]:\n%s", reveals, audit)
	}

	// 6. Fail closed: a raw card number sent to egress never leaves.
	status, body = d.do(t, "POST", d.egress+"/psp/v1/charges", "application/x-www-form-urlencoded",
		"amount=1&currency=usd&card%5Bnumber%5D="+pan, map[string]string{"X-Tok-Egress-Key": d.egressKey})
	if status != http.StatusUnprocessableEntity || !bytes.Contains(body, []byte("card[number]")) {
		t.Errorf("a raw card to egress: %d %s, want 422 naming card[number]", status, body)
	}
	if n := len(d.pspCharges(t)); n != 1 {
		t.Errorf("the provider got %d charges, want still 1", n)
	}
}

// demo is the running demo: its addresses and files.
type demo struct {
	dir                                  string
	public, egress, merchant, psp, admin string // base URLs
	egressKey                            string
	procs                                []*tokbin.Proc
	client                               *http.Client
}

// startDemo builds the three programs, writes the config and keyring, and
// starts the processes, stopped when t ends.
func startDemo(ctx context.Context, t *testing.T) *demo {
	t.Helper()
	dir := t.TempDir()
	d := &demo{dir: dir, client: &http.Client{Timeout: 10 * time.Second}}
	bins, err := tokbin.BuildPackages(ctx, "..", dir, ".", "./examples/merchant", "./examples/psp")
	if err != nil {
		t.Fatal(err)
	}
	tokBin, merchantBin, pspBin := bins[0], bins[1], bins[2]

	var addr [5]string
	for i := range addr {
		addr[i] = freePort(t)
	}
	public, egress, admin, merchant, psp := addr[0], addr[1], addr[2], addr[3], addr[4]
	d.public, d.egress, d.admin, d.merchant, d.psp = "http://"+public, "http://"+egress, "http://"+admin, "http://"+merchant, "http://"+psp

	// examples/tok.yaml with these ports, its files in dir, auth off.
	src, err := os.ReadFile("tok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	subst := []string{
		`"127.0.0.1:8080"`, `"` + public + `"`,
		`"127.0.0.1:8081"`, `"` + egress + `"`,
		`"127.0.0.1:9090"`, `"` + admin + `"`,
		`"127.0.0.1:5000"`, `"off"`,
		"http://127.0.0.1:3000", d.merchant,
		"http://127.0.0.1:4000", d.psp,
		"./data/", dir + string(filepath.Separator),
	}
	for i := 0; i < len(subst); i += 2 {
		if !bytes.Contains(src, []byte(subst[i])) {
			t.Fatalf("examples/tok.yaml no longer has %s; update this test", subst[i])
		}
	}
	cfg := filepath.Join(dir, "tok.yaml")
	if err := os.WriteFile(cfg, []byte(strings.NewReplacer(subst...).Replace(string(src))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tokbin.NewKeyring(ctx, tokBin, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := tokbin.Run(ctx, tokBin, dir, "check", "-config", cfg); err != nil {
		t.Fatal(err)
	}

	d.egressKey = randomHex(t)
	const pspKey = "Bearer sk_test_demo_loop" // tok sends it whole; the provider takes it with or without "Bearer "
	d.start(t, "psp", []string{"PSP_API_KEY=" + pspKey}, pspBin, "-addr", psp)
	d.start(t, "merchant", []string{"TOK_EGRESS_KEY=" + d.egressKey}, merchantBin, "-addr", merchant, "-egress", d.egress+"/psp")
	d.start(t, "tok", []string{"PSP_API_KEY=" + pspKey, "TOK_EGRESS_KEY=" + d.egressKey}, tokBin, "serve", "-config", cfg)
	for i, ready := range []string{d.psp + "/charges", d.merchant + "/orders", d.admin + "/readyz"} {
		if err := d.procs[i].Poll(ctx, tokbin.HTTPReady(ready)); err != nil {
			t.Fatalf("%v\n%s", err, d.logs())
		}
	}
	return d
}

// env is the environment of the demo's processes: this process's without
// the variables that would change what tok, the shop or the provider do
// (TOK_KEYRING and TOK_POSTGRES_URL win over the config file), then extra.
func env(extra []string) []string {
	var env []string
	for _, kv := range tokbin.Env() {
		if !strings.HasPrefix(kv, "PSP_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// start runs bin in d.dir with extra environment variables, its output
// going to name.log; it is stopped when t ends.
func (d *demo) start(t *testing.T, name string, extra []string, bin string, args ...string) {
	t.Helper()
	p, err := tokbin.Start(tokbin.Cmd{Name: name, Bin: bin, Args: args, Dir: d.dir, Env: env(extra),
		Log: filepath.Join(d.dir, name+".log")})
	if err != nil {
		t.Fatal(err)
	}
	d.procs = append(d.procs, p)
	t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
}

// do sends a request and returns the status and body.
func (d *demo) do(t *testing.T, method, url, contentType, body string, header map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, url, err, d.logs())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// pspCharge is a charge as the provider shows it at GET /charges.
type pspCharge struct {
	ID       string
	Amount   int64
	Currency string
	Card     struct{ Number, CVC string }
	Body     string
}

func (d *demo) pspCharges(t *testing.T) []pspCharge {
	t.Helper()
	status, body := d.do(t, "GET", d.psp+"/charges", "", "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET the provider's /charges: %d %s", status, body)
	}
	var got struct{ Charges []pspCharge }
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	return got.Charges
}

// logs returns every process's output, for failure reports.
func (d *demo) logs() string {
	var b strings.Builder
	for _, p := range d.procs {
		fmt.Fprintf(&b, "--- %s:\n%s\n", p.Name(), p.Log())
	}
	return b.String()
}

// freePort returns a loopback address for one of the demo's processes;
// see freeport.Addr.
func freePort(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func randomHex(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
