package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tokproxy/tok/examples/internal/tokbin"
	"github.com/tokproxy/tok/vault"
)

// demoConfig is examples/tok.yaml, the config the shipped cases are for.
func demoConfig(t *testing.T) string {
	t.Helper()
	root, err := tokbin.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "examples", "tok.yaml")
}

// tokEnv runs the binary in dir with extra environment variables and
// returns its exit code and output.
func tokEnv(t *testing.T, dir string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(tokBin, args...)
	cmd.Dir = dir
	cmd.Env = tokbin.Env(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run tok %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// explained is tok explain -json's output for one request.
type explained struct {
	Request  string   `json:"request"`
	Listener string   `json:"listener"`
	Route    string   `json:"route"`
	NoRoute  []string `json:"no_route"`
	Fields   []struct {
		Path, Selector, Format, Store, TTL, Bind, Value, Became, Outcome, Code string
		Offset                                                                 int
	} `json:"fields"`
	Guard   string `json:"guard"`
	Verdict struct {
		Forwarded bool   `json:"forwarded"`
		To        string `json:"to"`
		Status    int    `json:"status"`
		Code      string `json:"code"`
		Path      string `json:"path"`
		Offset    *int   `json:"offset"`
		In        string `json:"in"`
	} `json:"verdict"`
	Forwarded string `json:"forwarded"`
}

// explainJSON runs tok explain -json on a request file holding req and
// decodes every object it prints.
func explainJSON(t *testing.T, req string, args ...string) []explained {
	t.Helper()
	dir := t.TempDir()
	file := writeFile(t, dir, "request.http", req)
	code, out, errOut := tokEnv(t, dir, nil, append(append([]string{"explain", "-config", demoConfig(t), "-json"}, args...), file)...)
	if code != 0 {
		t.Fatalf("tok explain exit %d: %s", code, errOut)
	}
	var res []explained
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e explained
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("tok explain -json: %v\n%s", err, out)
		}
		res = append(res, e)
	}
	return res
}

const checkoutBody = `{"order":"A-1","card":{"number":"4111 1111 1111 1111","cvc":"123"},"notes":"ring twice"}`

func TestExplainCheckout(t *testing.T) {
	req := "POST /checkout HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n" + checkoutBody + "\n"
	res := explainJSON(t, req)
	if len(res) != 1 {
		t.Fatalf("explain printed %d objects, want 1", len(res))
	}
	e := res[0]
	if e.Route != "checkout" || e.Listener != "public" || !e.Verdict.Forwarded || e.Verdict.To != "shop.example" {
		t.Errorf("route %q listener %q verdict %+v, want checkout, public, forwarded to shop.example", e.Route, e.Listener, e.Verdict)
	}
	if len(e.Fields) != 2 {
		t.Fatalf("fields = %+v, want card.number and card.cvc", e.Fields)
	}
	num, cvc := e.Fields[0], e.Fields[1]
	if num.Path != "card.number" || num.Selector != "json:card.number" || num.Format != "pan" || num.Store != "vault" || num.Outcome != "tokenized" {
		t.Errorf("card.number = %+v", num)
	}
	if want := strings.Index(checkoutBody, `"4111 1111`); num.Offset != want {
		t.Errorf("card.number offset = %d, want %d", num.Offset, want)
	}
	if num.Value != "411111******1111" {
		t.Errorf("card.number value = %q, want it masked as 411111******1111", num.Value)
	}
	tok := num.Became
	if len(tok) != 16 || !strings.HasPrefix(tok, "411111") || !strings.HasSuffix(tok, "1111") || vault.Luhn(tok) {
		t.Errorf("card.number became %q, want a pan token (411111…1111, failing the Luhn check)", tok)
	}
	if cvc.Path != "card.cvc" || cvc.Format != "digits" || cvc.Store != "memory" || cvc.TTL != "15m" || cvc.Bind != "card.number" || cvc.Value != "***" || len(cvc.Became) != 3 {
		t.Errorf("card.cvc = %+v, want digits in memory for 15m bound to card.number, masked", cvc)
	}
	// The bytes the app receives: the tokens in place, nothing else changed.
	wantBody := strings.Replace(strings.Replace(checkoutBody, `"4111 1111 1111 1111"`, `"`+tok+`"`, 1), `"123"`, `"`+cvc.Became+`"`, 1)
	if !strings.HasPrefix(e.Forwarded, "POST /checkout HTTP/1.1\r\nHost: shop.example\r\n") || !strings.HasSuffix(e.Forwarded, "\r\n\r\n"+wantBody) {
		t.Errorf("forwarded =\n%s\nwant POST /checkout to shop.example with body %s", e.Forwarded, wantBody)
	}
	if !strings.Contains(e.Forwarded, "X-Forwarded-For: 192.0.2.1\r\n") {
		t.Errorf("forwarded lacks the dry run's X-Forwarded-For:\n%s", e.Forwarded)
	}
}

func TestExplainHumanOutputMasksCards(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "co.http", "POST /checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ncard%5Bnumber%5D=5555555555554444&card%5Bcvc%5D=737\r\n")
	code, out, errOut := tokEnv(t, dir, nil, "explain", file, "-config", demoConfig(t))
	if code != 0 {
		t.Fatalf("tok explain exit %d: %s", code, errOut)
	}
	for _, want := range []string{"route      checkout", "card[number]  form:card[number]", "555555******4444", "tokenized", "guard      passed", "verdict    forwarded to shop.example", "  | POST /checkout HTTP/1.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("tok explain output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "5555555555554444") || regexp.MustCompile(`cvc\]=737|\b737\b`).MatchString(out) {
		t.Errorf("tok explain printed a card number or CVC:\n%s", out)
	}
}

func TestExplainGuardRefusal(t *testing.T) {
	body := `{"card":{"number":"4111111111111111","cvc":"123"},"notes":"my other card: 5555 5555 5555 4444"}`
	e := explainJSON(t, "POST /checkout HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n"+body+"\n")[0]
	v := e.Verdict
	if v.Forwarded || v.Status != 422 || v.Code != "card_number_detected" || v.Path != "notes" || v.In != "body" {
		t.Errorf("verdict = %+v, want refused 422 card_number_detected at notes in the body", v)
	}
	if want := strings.Index(body, `"my other`); v.Offset == nil || *v.Offset != want {
		t.Errorf("verdict offset = %v, want %d", v.Offset, want)
	}
	if e.Forwarded != "" || !strings.Contains(e.Guard, "refused") || !strings.Contains(e.Guard, "notes") {
		t.Errorf("forwarded %q, guard %q: want nothing forwarded and the guard's refusal at notes", e.Forwarded, e.Guard)
	}

	// In the query string: the offset counts from the query's start.
	e = explainJSON(t, "GET /orders?page=2&q=4111111111111111 HTTP/1.1\nHost: shop.example\n\n")[0]
	if v := e.Verdict; v.Code != "card_number_detected" || v.Path != "q" || v.In != "query" || v.Offset == nil || *v.Offset != len("page=2&q=") {
		t.Errorf("query verdict = %+v, want card_number_detected at q, byte %d of the query", v, len("page=2&q="))
	}
	if strings.Contains(e.Request, "4111111111111111") {
		t.Errorf("request line %q shows the card number", e.Request)
	}
}

func TestExplainNoRoute(t *testing.T) {
	e := explainJSON(t, "GET /checkout HTTP/1.1\nHost: shop.example\n\n")[0]
	if e.Route != "" || !e.Verdict.Forwarded {
		t.Errorf("route %q forwarded %v, want no route and forwarded", e.Route, e.Verdict.Forwarded)
	}
	if len(e.NoRoute) != 1 || e.NoRoute[0] != "inbound route checkout: method GET is not POST" {
		t.Errorf("no_route = %q, want the checkout route's method named", e.NoRoute)
	}
	e = explainJSON(t, "POST /cart HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n{}\n")[0]
	if len(e.NoRoute) != 1 || e.NoRoute[0] != "inbound route checkout: path /cart is not /checkout" {
		t.Errorf("no_route = %q, want the checkout route's path named", e.NoRoute)
	}
}

func TestExplainEgress(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "pay.http", `POST /psp/v1/charges HTTP/1.1
Host: 127.0.0.1:8081
Content-Type: application/x-www-form-urlencoded

amount=1000&card[number]={{token 4111111111111111}}&card[cvc]={{token 123 bound to 4111111111111111}}
`)
	// A real secret in the environment never reaches the output.
	secret := "Bearer sk_live_do_not_print"
	code, out, errOut := tokEnv(t, dir, []string{"PSP_API_KEY=" + secret, "TOK_EGRESS_KEY=k"}, "explain", "-egress", "-json", "-config", demoConfig(t), file)
	if code != 0 {
		t.Fatalf("tok explain -egress exit %d: %s", code, errOut)
	}
	if strings.Contains(out, secret) || strings.Contains(out, "4111111111111111") || strings.Contains(out, "=123") {
		t.Errorf("tok explain -egress printed a secret, a card number or a CVC:\n%s", out)
	}
	var e explained
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatal(err)
	}
	if e.Route != "psp" || !e.Verdict.Forwarded || e.Verdict.To != "127.0.0.1:4000" || len(e.Fields) != 2 {
		t.Fatalf("explained = %+v, want route psp forwarded to 127.0.0.1:4000 with two fields", e)
	}
	for _, f := range e.Fields {
		if f.Outcome != "revealed" {
			t.Errorf("field %s outcome %q, want revealed", f.Path, f.Outcome)
		}
	}
	if e.Fields[0].Became != "411111******1111" || e.Fields[1].Became != "***" {
		t.Errorf("revealed values shown as %q and %q, want masked", e.Fields[0].Became, e.Fields[1].Became)
	}
	for _, want := range []string{"POST /v1/charges HTTP/1.1\r\n", "Host: 127.0.0.1:4000\r\n", "Authorization: <env:PSP_API_KEY>\r\n", "card[number]=411111******1111&card[cvc]=***"} {
		if !strings.Contains(e.Forwarded, want) {
			t.Errorf("forwarded lacks %q:\n%s", want, e.Forwarded)
		}
	}

	// A token this run never minted: unknown_token, nothing forwarded.
	file = writeFile(t, dir, "unknown.http", "POST /psp/v1/charges HTTP/1.1\nHost: 127.0.0.1:8081\nContent-Type: application/x-www-form-urlencoded\n\ncard[number]=4111110000001111\n")
	code, out, _ = tokEnv(t, dir, nil, "explain", "-egress", "-json", "-config", demoConfig(t), file)
	e = explained{}
	if err := json.Unmarshal([]byte(out), &e); code != 0 || err != nil {
		t.Fatalf("exit %d, %v", code, err)
	}
	if e.Verdict.Forwarded || e.Verdict.Code != "unknown_token" || e.Forwarded != "" {
		t.Errorf("verdict = %+v, want refused unknown_token", e.Verdict)
	}
}

func TestExplainHAR(t *testing.T) {
	root, err := tokbin.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	har, err := os.ReadFile(filepath.Join(root, "examples", "cases", "checkout.har"))
	if err != nil {
		t.Fatal(err)
	}
	// A second entry: a page view, on no route.
	two := strings.Replace(string(har), `"entries": [`, `"entries": [{"request":{"method":"GET","url":"https://shop.example/orders","headers":[]}},`, 1)
	res := explainJSON(t, two)
	if len(res) != 2 || res[0].Route != "" || res[1].Route != "checkout" || len(res[1].Fields) != 2 {
		t.Fatalf("explained %d entries: %+v, want the page view (no route) and the checkout", len(res), res)
	}
	res = explainJSON(t, two, "-entry", "2")
	if len(res) != 1 || res[0].Route != "checkout" || res[0].Fields[0].Value != "400005******5556" {
		t.Errorf("-entry 2 = %+v, want the checkout only, card masked", res)
	}
}

func TestExplainExitCodes(t *testing.T) {
	dir := t.TempDir()
	req := writeFile(t, dir, "r.http", "GET / HTTP/1.1\nHost: shop.example\n\n")
	bad := writeFile(t, dir, "bad.yaml", "guard: {mode: loud}\n")
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"explained", []string{"explain", "-config", demoConfig(t), req}, 0},
		{"no file", []string{"explain", "-config", demoConfig(t)}, 2},
		{"two files", []string{"explain", "-config", demoConfig(t), req, req}, 2},
		{"missing file", []string{"explain", "-config", demoConfig(t), filepath.Join(dir, "none.http")}, 1},
		{"bad config", []string{"explain", "-config", bad, req}, 2},
		{"no such entry", []string{"explain", "-config", demoConfig(t), "-entry", "2", req}, 2},
	} {
		if code, _, errOut := tokEnv(t, dir, nil, tc.args...); code != tc.want {
			t.Errorf("%s: tok %v exit %d, want %d (%s)", tc.name, tc.args, code, tc.want, errOut)
		}
	}
}

func TestTestShippedCases(t *testing.T) {
	root, err := tokbin.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := tokEnv(t, root, nil, "test", "-config", "examples/tok.yaml", "examples/cases/")
	if code != 0 {
		t.Fatalf("tok test on the shipped cases: exit %d\n%s%s", code, out, errOut)
	}
	cases, _ := filepath.Glob(filepath.Join(root, "examples", "cases", "*.yaml"))
	if n := strings.Count(out, "PASS "); n != len(cases) || n < 8 {
		t.Errorf("tok test printed %d PASS lines for %d case files (want at least 8):\n%s", n, len(cases), out)
	}
	if !strings.HasSuffix(out, "ok: "+strconv.Itoa(len(cases))+" case(s) passed\n") {
		t.Errorf("tok test summary:\n%s", out)
	}
}

func TestTestFailingCase(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "good.yaml", `request: |
  GET /products HTTP/1.1
  Host: shop.example
expect: [forwarded, no route]
`)
	writeFile(t, dir, "wrong.yaml", `name: stray card
request: |
  POST /checkout HTTP/1.1
  Host: shop.example
  Content-Type: application/json

  {"card":{"number":"4111111111111111"},"notes":"5555 5555 5555 4444"}
expect:
  - forwarded
  - field card.number tokenized
`)
	code, out, errOut := tokEnv(t, dir, nil, "test", "-config", demoConfig(t), dir)
	if code != 1 {
		t.Fatalf("tok test with a failing case: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"PASS good\n",
		"FAIL stray card: expected forwarded, got refused 422 card_number_detected at notes; expected field card.number tokenized, got no field found (refused 422 card_number_detected at notes)\n",
		"FAIL: 1 of 2 case(s) failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tok test output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "4111111111111111") || strings.Contains(out, "5555 5555 5555 4444") {
		t.Errorf("tok test printed a card number:\n%s", out)
	}

	// A case file tok test cannot read is a usage error.
	writeFile(t, dir, "broken.yaml", "expect: [forwarded, \"field card.number shredded\"]\nrequest: x\n")
	if code, _, errOut := tokEnv(t, dir, nil, "test", "-config", demoConfig(t), dir); code != 2 || !strings.Contains(errOut, "shredded") {
		t.Errorf("tok test with a bad case file: exit %d (%s), want 2 naming the expectation", code, errOut)
	}
}

// TestExplainRevealPolicy: tok explain shows the reveal policy an inbound
// field seals into its tokens, in -json and in the STORE column.
func TestExplainRevealPolicy(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "tok.yaml", `listen: {egress: "127.0.0.1:0"}
upstream: http://127.0.0.1:1
`+revealCheckout+`      - json: card.cvc
        format: digits
        store: memory
        ttl: 10m
        bind: card.number
egress:
  - name: stripe
    match: {method: POST, path: /stripe/*}
    upstream: https://api.stripe.com
    strip_prefix: /stripe
    fields: [{json: source.card.number}]
`)
	file := writeFile(t, dir, "request.http", "POST /checkout HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n"+checkoutBody+"\n")
	code, out, errOut := tokEnv(t, dir, nil, "explain", "-config", cfg, "-json", file)
	if code != 0 {
		t.Fatalf("tok explain -json exit %d: %s", code, errOut)
	}
	var e struct {
		Fields []struct {
			Path         string   `json:"path"`
			TTL          string   `json:"ttl"`
			RevealTo     []string `json:"reveal_to"`
			MaxReveals   uint32   `json:"max_reveals"`
			RevealWindow string   `json:"reveal_window"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(out), &e); err != nil || len(e.Fields) != 2 {
		t.Fatalf("tok explain -json = %v %s, want two fields", err, out)
	}
	if num := e.Fields[0]; strings.Join(num.RevealTo, ",") != "@me,stripe" || num.MaxReveals != 2 || num.RevealWindow != "24h" {
		t.Errorf("card.number = %+v, want reveal_to [@me stripe], max_reveals 2, reveal_window 24h", num)
	}
	if cvc := e.Fields[1]; cvc.RevealTo != nil || cvc.MaxReveals != 0 || cvc.RevealWindow != "" || cvc.TTL != "10m" {
		t.Errorf("card.cvc = %+v, want no policy of its own (its card's governs it) and ttl 10m", cvc)
	}
	code, out, errOut = tokEnv(t, dir, nil, "explain", "-config", cfg, file)
	if code != 0 {
		t.Fatalf("tok explain exit %d: %s", code, errOut)
	}
	if want := "vault; reveal_to @me,stripe; max_reveals 2; reveal_window 24h"; !strings.Contains(out, want) {
		t.Errorf("tok explain output lacks %q:\n%s", want, out)
	}
}
