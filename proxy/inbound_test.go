package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// End-to-end tests of the inbound tokenizing proxy: a real tok
// server in front of a recording upstream, checked on exactly what the
// upstream received.

var updateGolden = flag.Bool("update", false, "rewrite the inbound golden files under testdata/inbound")

// Card numbers used by these tests. All but seedPAN pass the Luhn check.
const (
	panVisa     = "4111111111111111"
	panVisa2    = "4000056655665556"
	panVisa3    = "4242424242424242"
	panMC       = "5555555555554444"
	panAmex     = "378282246310005"
	panDiscover = "6011111111111117"
)

// inboundPANs is every card number these tests send; none may ever reach a log.
var inboundPANs = []string{panVisa, panVisa2, panVisa3, panMC, panAmex, panDiscover, seedPAN}

// upReq is what the upstream app received.
type upReq struct {
	Method, RequestURI, Host string
	Path, RawQuery           string
	Header                   http.Header
	ContentLength            int64
	TransferEncoding         []string
	Body                     []byte
}

// recordingUpstream is the merchant app (or, over TLS, the payment
// provider): it records every request, whole, then answers with respond
// (200 "ok" if nil).
type recordingUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []upReq
	respond http.HandlerFunc
	// intercept, if set before the first request, sees each request first
	// and may answer it unrecorded (returning true), e.g. to read a body as
	// it streams.
	intercept func(http.ResponseWriter, *http.Request) bool
}

// newRecordingUpstream starts a recording upstream over plain HTTP.
func newRecordingUpstream(t *testing.T, respond http.HandlerFunc) *recordingUpstream {
	t.Helper()
	return startRecordingUpstream(t, respond, false)
}

// startRecordingUpstream starts a recording upstream, over TLS (with
// httptest's certificate) if tls is set.
func startRecordingUpstream(t *testing.T, respond http.HandlerFunc, tls bool) *recordingUpstream {
	t.Helper()
	u := &recordingUpstream{respond: respond}
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u.intercept != nil && u.intercept(w, r) {
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: reading the body: %v", err)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, upReq{
			Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
			Header: r.Header.Clone(), ContentLength: r.ContentLength, TransferEncoding: r.TransferEncoding, Body: b,
		})
		u.mu.Unlock()
		if u.respond != nil {
			u.respond(w, r)
			return
		}
		io.WriteString(w, "ok")
	}))
	if tls {
		u.StartTLS()
	} else {
		u.Start()
	}
	t.Cleanup(u.Close)
	return u
}

func (u *recordingUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func (u *recordingUpstream) since(n int) []upReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs[n:])
}

// got returns every request recorded so far.
func (u *recordingUpstream) got() []upReq { return u.since(0) }

// inboundConfig varies an inboundEnv.
type inboundConfig struct {
	store   vault.Durable    // durable store; a fresh memory store if nil
	respond http.HandlerFunc // the upstream's answer after recording
	opts    func(*Options)   // last word on the Options
	// volatileMax caps the volatile store's records (its default if 0).
	volatileMax int
}

// checkoutRoutes is the route set of the README's checkout example, plus a
// route without fields.
func checkoutRoutes() []Route {
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: 15 * time.Minute, Bound: true}
	return []Route{
		{Name: "checkout", Method: "POST", Path: "/checkout", Fields: []RouteField{
			{JSON: "card.number"},
			{JSON: "card.cvc", Spec: cvc, Bind: "card.number"},
			{JSON: "items.#.card.number"},
			{Form: "card[number]"},
		}},
		// Binary uploads, opted out of inspection (inspect: false).
		{Name: "upload", Path: "/upload/*", Uninspected: true},
	}
}

// newInboundEnv builds tok (the pieces of newTestEnv, plus a volatile store
// for CVCs) in front of a recording upstream. When the test ends it checks
// that no card number reached tok's log or audit log.
func newInboundEnv(t *testing.T, cfg inboundConfig) *inboundEnv {
	t.Helper()
	e := &inboundEnv{t: t, store: cfg.store}
	t.Cleanup(func() { e.checkLogs(t) }) // runs last: after the servers are closed
	if e.store == nil {
		m := memory.New()
		t.Cleanup(func() { m.Close() })
		e.store = m
	}
	var vopts []memory.Option
	if cfg.volatileMax > 0 {
		vopts = append(vopts, memory.WithMaxRecords(cfg.volatileMax))
	}
	volatile := memory.New(vopts...)
	t.Cleanup(func() { volatile.Close() })
	e.up = newRecordingUpstream(t, cfg.respond)
	u, err := url.Parse(e.up.URL)
	if err != nil {
		t.Fatal(err)
	}
	e.start(nil, []vault.Option{vault.WithVolatile(volatile)}, Options{
		Volatile: volatile, Upstream: u, Routes: checkoutRoutes(),
		// One client at bcrypt's minimum cost keeps the unknown-client dummy
		// hash cheap to build.
		Clients: []Client{{Name: "app", SecretHash: cheapHash()}},
		Guard:   GuardOptions{Mode: rewrite.GuardReject, Ignore: []string{"order.id"}},
	}, cfg.opts)
	return e
}

// cheapHash is a bcrypt hash at the minimum cost.
var cheapHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("app-secret"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// checkLogs fails the test if any card number reached a log line.
func (e *inboundEnv) checkLogs(t *testing.T) {
	for name, buf := range map[string]*syncBuffer{"log": e.log, "audit log": e.audit} {
		s := buf.String()
		for _, p := range inboundPANs {
			if strings.Contains(s, p) || strings.Contains(stripSeparators(s), p) {
				t.Errorf("the %s holds the card number %s", name, vault.Mask(p))
			}
		}
	}
}

// send makes one request to tok's public listener. hdr holds name/value
// pairs, added in order ("Host" sets the request's host).
func (e *inboundEnv) send(method, path, ct string, body []byte, hdr ...string) response {
	e.t.Helper()
	return e.sendCtx(context.Background(), method, path, ct, body, hdr...)
}

func (e *inboundEnv) sendCtx(ctx context.Context, method, path, ct string, body []byte, hdr ...string) response {
	e.t.Helper()
	resp, err := e.roundTrip(ctx, method, path, ct, body, hdr...)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func (e *inboundEnv) roundTrip(ctx context.Context, method, path, ct string, body []byte, hdr ...string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.public.URL+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if body == nil {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp, b}, nil
}

// raw writes a request to tok byte for byte over a fresh connection and
// reads one response. A connection closed without an answer is status 0.
func (e *inboundEnv) raw(req string) response {
	e.t.Helper()
	c, err := net.Dial("tcp", e.public.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return response{Response: &http.Response{Header: http.Header{}}}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp, b}
}

// stripSeparators removes the spaces and dashes a card number may be
// written with.
func stripSeparators(s string) string {
	return strings.NewReplacer(" ", "", "-", "", "+", "").Replace(s)
}

// findPAN returns the first test card number that b holds in any spelling
// an app could read: raw, without separators, JSON-decoded (strings,
// numbers and keys) or form-decoded. It returns "" if there is none.
func findPAN(b []byte) string {
	cands := []string{string(b), stripSeparators(string(b))}
	if json.Valid(b) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			if s, ok := tok.(string); ok {
				cands = append(cands, s, stripSeparators(s))
			}
			if n, ok := tok.(json.Number); ok {
				cands = append(cands, n.String())
			}
		}
	}
	q, _ := url.ParseQuery(string(b)) // partial results are fine
	for k, vs := range q {
		cands = append(cands, k, stripSeparators(k))
		for _, v := range vs {
			cands = append(cands, v, stripSeparators(v))
		}
	}
	for _, p := range inboundPANs {
		for _, c := range cands {
			if strings.Contains(c, p) {
				return p
			}
		}
	}
	return ""
}

// checkNoPAN fails if the upstream request holds a card number anywhere:
// body, query, path or headers.
func checkNoPAN(t *testing.T, r upReq) {
	t.Helper()
	parts := [][]byte{r.Body, []byte(r.RequestURI), []byte(r.RawQuery)}
	if q, err := url.QueryUnescape(r.RawQuery); err == nil {
		parts = append(parts, []byte(q))
	}
	for k, vs := range r.Header {
		parts = append(parts, []byte(k+": "+strings.Join(vs, ", ")))
	}
	for _, p := range parts {
		if pan := findPAN(p); pan != "" {
			t.Errorf("the upstream received the card number %s", vault.Mask(pan))
		}
	}
}

// checkLength checks that the upstream saw a Content-Length equal to the
// body it received, and no chunked framing.
func checkLength(t *testing.T, r upReq) {
	t.Helper()
	if r.ContentLength != int64(len(r.Body)) || r.Header.Get("Content-Length") != fmt.Sprint(len(r.Body)) {
		t.Errorf("upstream Content-Length = %d (header %q), want the body length %d",
			r.ContentLength, r.Header.Get("Content-Length"), len(r.Body))
	}
	if len(r.TransferEncoding) > 0 {
		t.Errorf("upstream Transfer-Encoding = %q, want none", r.TransferEncoding)
	}
}

var digitRun = regexp.MustCompile(`[0-9]+`)

// tokensIn finds the tokens in b: every run of digits that the vault
// reveals. It returns them with their revealed values, in order. A short
// token reveals bound to a longer token of b, or, if it is bound to none,
// from its own record.
func (e *inboundEnv) tokensIn(t *testing.T, b []byte) (tokens, values []string) {
	t.Helper()
	runs := digitRun.FindAllString(string(b), -1)
	for _, run := range runs {
		if !vault.ValidToken(run) {
			continue
		}
		rv, err := e.vault.Reveal(t.Context(), run)
		if errors.Is(err, vault.ErrUnbound) {
			rv, err = revealShort(t, e.vault, run, runs)
		}
		switch {
		case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrInvalidToken):
			continue
		case err != nil:
			t.Fatalf("Reveal(%q): %v", run, err)
		}
		tokens, values = append(tokens, run), append(values, rv.Value)
	}
	return tokens, values
}

// checkToken checks the shape of a token for value: same length, and for a
// card number (a pan token) the first 6 and last 4 digits kept and the
// Luhn check failed.
func checkToken(t *testing.T, tok, value string) {
	t.Helper()
	if tok == value {
		t.Errorf("token %q equals its value", vault.Mask(tok))
	}
	if len(tok) != len(value) {
		t.Errorf("token %q has %d digits, want %d like %s", tok, len(tok), len(value), vault.Mask(value))
	}
	if len(value) < vault.MinPANLength || len(tok) != len(value) {
		return
	}
	// The kept prefix, then the suffix, shrink until 6 digits are random.
	first, last := 6, 4
	for len(value)-first-last < 6 && first > 0 {
		first--
	}
	for len(value)-first-last < 6 && last > 0 {
		last--
	}
	if tok[:first] != value[:first] || tok[len(tok)-last:] != value[len(value)-last:] || vault.Luhn(tok) {
		t.Errorf("token %q does not keep the first %d and last %d digits of %s, or passes Luhn", tok, first, last, vault.Mask(value))
	}
}

// forwarded checks that r succeeded and the upstream received exactly one
// new request since n, without any card number; it returns that request
// and the values of the tokens in it.
func (e *inboundEnv) forwarded(t *testing.T, r response, n int) (upReq, []string) {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("status = %d (body %s), want 200", r.StatusCode, r.body)
	}
	got := e.up.since(n)
	if len(got) != 1 {
		t.Fatalf("the upstream received %d requests, want 1", len(got))
	}
	checkNoPAN(t, got[0])
	tokens, values := e.tokensIn(t, got[0].Body)
	for i := range tokens {
		checkToken(t, tokens[i], values[i])
	}
	return got[0], values
}

// refused checks that r is the JSON error status/code and the upstream
// received nothing since n.
func (e *inboundEnv) refused(t *testing.T, r response, n, status int, code string) {
	t.Helper()
	wantError(t, r, status, code)
	if got := e.up.count() - n; got != 0 {
		t.Errorf("the upstream received %d requests, want none", got)
		for _, u := range e.up.since(n) {
			checkNoPAN(t, u)
		}
	}
	if pan := findPAN(r.body); pan != "" {
		t.Errorf("the error body holds the card number %s", vault.Mask(pan))
	}
}

// TestInboundGolden posts realistic bodies to /checkout and compares what
// the upstream received with testdata/inbound/NAME.golden, each token
// replaced by a placeholder naming its (masked) value after checking that
// the vault reveals it. Run with -update to rewrite the golden files.
func TestInboundGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, ct string
		values   []string // the card values the body holds, in document order
	}{
		{"checkout_pretty.json", "application/json", []string{panVisa, "737", panMC, panAmex}},
		{"checkout_compact.json", "application/json; charset=utf-8", []string{"4242", panVisa2, panDiscover}},
		{"checkout_escaped.json", "application/vnd.shop+json", []string{panVisa, "737", panVisa2}},
		{"checkout.form", "application/x-www-form-urlencoded", []string{panVisa3, panMC}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(filepath.Join("testdata", "inbound", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			e := newInboundEnv(t, inboundConfig{})
			got, values := e.forwarded(t, e.send("POST", "/checkout", tc.ct, in), 0)
			if !slices.Equal(values, tc.values) {
				t.Errorf("the upstream body holds tokens of %q, want %q", maskAll(values), maskAll(tc.values))
			}
			checkLength(t, got)
			if got.Header.Get("Content-Type") != tc.ct {
				t.Errorf("upstream Content-Type = %q, want %q", got.Header.Get("Content-Type"), tc.ct)
			}
			// A JSON number stays a number: no quote before its token.
			if tc.file == "checkout_compact.json" && !bytes.Contains(got.Body, []byte(`"number":4000`)) {
				t.Errorf("the JSON-number card number did not stay a number: %s", got.Body)
			}

			tokens, _ := e.tokensIn(t, got.Body)
			norm := string(got.Body)
			for i, tok := range tokens {
				norm = replaceWhole(norm, tok, "<token of "+vault.Mask(values[i])+">")
			}
			var out strings.Builder
			fmt.Fprintf(&out, "%s %s\nContent-Type: %s\nContent-Length: %d\n\n%s",
				got.Method, got.RequestURI, got.Header.Get("Content-Type"), len(got.Body), norm)
			golden := filepath.Join("testdata", "inbound", tc.file+".golden")
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out.String() != string(want) {
				t.Errorf("the upstream received (normalised)\n%s\nwant (%s)\n%s", out.String(), golden, want)
			}
		})
	}
}

func maskAll(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = vault.Mask(v)
	}
	return out
}

// TestInboundFailClosed: when the vault cannot commit, or a configured
// field holds something that is not a card number, the client gets a JSON
// error and the upstream nothing.
func TestInboundFailClosed(t *testing.T) {
	t.Parallel()
	t.Run("vault down", func(t *testing.T) {
		t.Parallel()
		m := memory.New()
		t.Cleanup(func() { m.Close() })
		fs := &failingStore{Durable: m, fail: true}
		e := newInboundEnv(t, inboundConfig{store: fs, opts: func(o *Options) { o.Guard.Mode = rewrite.GuardTokenize }})
		for _, tc := range []struct{ name, path, ct, body string }{
			{"json field", "/checkout", "application/json", `{"card":{"number":"` + panVisa + `","cvc":"123"}}`},
			{"form field", "/checkout", "application/x-www-form-urlencoded", "card[number]=" + panVisa},
			{"guard tokenize", "/profile", "application/json", `{"note":"` + panVisa + `"}`},
			{"guard tokenize query", "/profile?c=" + panVisa, "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := e.up.count()
				var body []byte
				if tc.body != "" {
					body = []byte(tc.body)
				}
				e.refused(t, e.send("POST", tc.path, tc.ct, body), n, http.StatusServiceUnavailable, "vault_unavailable")
			})
		}
		t.Run("nothing to tokenize passes", func(t *testing.T) {
			n := e.up.count()
			e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":null},"qty":1}`)), n)
		})
	})
	t.Run("invalid card values", func(t *testing.T) {
		t.Parallel()
		e := newInboundEnv(t, inboundConfig{})
		for _, tc := range []struct{ name, ct, body, code string }{
			{"letters", "application/json", `{"card":{"number":"4111abcd11111111"}}`, "invalid_card_number"},
			{"too short", "application/json", `{"card":{"number":"41111111"}}`, "invalid_card_number"},
			{"too long", "application/json", `{"card":{"number":"41111111111111111111"}}`, "invalid_card_number"},
			{"cvc too short", "application/json", `{"card":{"number":"` + panVisa + `","cvc":"12"}}`, "invalid_card_number"},
			{"one bad item", "application/json", `{"items":[{"card":{"number":"` + panVisa + `"}},{"card":{"number":"x"}}]}`, "invalid_card_number"},
			{"form", "application/x-www-form-urlencoded", "card[number]=" + panVisa + "&card[number]=nope", "invalid_card_number"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := e.up.count()
				r := e.send("POST", "/checkout", tc.ct, []byte(tc.body))
				e.refused(t, r, n, http.StatusUnprocessableEntity, tc.code)
			})
		}
	})
}

// attack is one way of writing a card number that tok must tokenize or
// refuse.
type attack struct {
	name         string
	method, path string // POST /checkout if empty
	ct           string
	body         string
	hdr          []string
	status       int    // 200: forwarded with tokens (and no card number)
	code         string // the error code when refused
	tokens       int    // for 200: the number of tokens the upstream must see
}

// anyBlock as an attack's status accepts any refusal (nothing forwarded) or
// a forwarded body with the number tokenized.
const anyBlock = -1

// smugglingAttacks put a card number where the route's fields are, spelled
// in every way we know an app's parser could still read it there.
func smugglingAttacks() []attack {
	const ctJSON, ctForm = "application/json", "application/x-www-form-urlencoded"
	card := `{"card":{"number":"` + panVisa + `"}}`
	deep := strings.Repeat(`{"a":`, 65) + card + strings.Repeat("}", 65)
	var very strings.Builder
	for range 200_000 {
		very.WriteString("[")
	}
	return []attack{
		// Keys: duplicates, escapes, case.
		{name: "duplicate key", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `","number":"` + panVisa2 + `"}}`, status: 400, code: "duplicate_key"},
		{name: "duplicate parent", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `"},"card":{"number":"` + panVisa2 + `"}}`, status: 400, code: "duplicate_key"},
		{name: "duplicate by case", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `","NUMBER":"` + panVisa2 + `"}}`, status: 400, code: "duplicate_key"},
		{name: "duplicate by escape", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `","n\u0075mber":"` + panVisa2 + `"}}`, status: 400, code: "duplicate_key"},
		{name: "escaped key", ct: ctJSON, body: `{"\u0063ard":{"\u006e\u0075mber":"` + panVisa + `"}}`, status: 200, tokens: 1},
		{name: "case-variant keys", ct: ctJSON, body: `{"Card":{"Number":"` + panVisa + `"}}`, status: 200, tokens: 1},
		{name: "upper-case keys", ct: ctJSON, body: `{"CARD":{"NUMBER":"` + panVisa + `","CVC":"123"}}`, status: 200, tokens: 2},
		{name: "unicode fold (long s)", ct: ctJSON, body: `{"item\u017f":[{"card":{"number":"` + panVisa + `"}}]}`, status: 200, tokens: 1},
		{name: "items case and escapes", ct: ctJSON, body: `{"ITEMS":[{"card":{"number":"` + panVisa + `"}},{"\u0063ard":{"Number":"` + panMC + `"}}]}`, status: 200, tokens: 2},
		// Values: escapes, separators, numbers, types.
		{name: "escaped digits", ct: ctJSON, body: `{"card":{"number":"\u0034\u0031\u0031\u0031111111111111"}}`, status: 200, tokens: 1},
		{name: "escaped solidus and spaces", ct: ctJSON, body: `{"card":{"number":"4111\u00201111\u00201111-1111"}}`, status: 200, tokens: 1},
		{name: "json number", ct: ctJSON, body: `{"card":{"number":` + panVisa + `}}`, status: 200, tokens: 1},
		{name: "exponent number", ct: ctJSON, body: `{"card":{"number":4.111111111111111e15}}`, status: 422, code: "invalid_value"},
		{name: "negative number", ct: ctJSON, body: `{"card":{"number":-` + panVisa + `}}`, status: 422, code: "invalid_value"},
		{name: "fraction", ct: ctJSON, body: `{"card":{"number":` + panVisa + `.0}}`, status: 422, code: "invalid_value"},
		{name: "array at field", ct: ctJSON, body: `{"card":{"number":["` + panVisa + `"]}}`, status: 422, code: "field_type"},
		{name: "object at field", ct: ctJSON, body: `{"card":{"number":{"n":"` + panVisa + `"}}}`, status: 422, code: "field_type"},
		{name: "array for object", ct: ctJSON, body: `{"card":[{"number":"` + panVisa + `"}]}`, status: 422, code: "field_type"},
		{name: "object for array", ct: ctJSON, body: `{"items":{"0":{"card":{"number":"` + panVisa + `"}}}}`, status: 422, code: "field_type"},
		// Syntax the strict parser refuses and a lenient one reads.
		{name: "BOM", ct: ctJSON, body: "\xef\xbb\xbf" + card, status: 400, code: "invalid_json"},
		{name: "trailing garbage", ct: ctJSON, body: card + "x", status: 400, code: "invalid_json"},
		{name: "second document", ct: ctJSON, body: `{"a":1}` + "\n" + card, status: 400, code: "invalid_json"},
		{name: "comment", ct: ctJSON, body: `{/* c */"card":{"number":"` + panVisa + `"}}`, status: 400, code: "invalid_json"},
		{name: "trailing comma", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `",}}`, status: 400, code: "invalid_json"},
		{name: "single quotes", ct: ctJSON, body: `{'card':{'number':'` + panVisa + `'}}`, status: 400, code: "invalid_json"},
		{name: "lone surrogate", ct: ctJSON, body: `{"card":{"number":"` + panVisa + `","x":"\ud800"}}`, status: 400, code: "invalid_json"},
		{name: "invalid utf-8 key", ct: ctJSON, body: "{\"card\":{\"n\xffumber\":\"" + panVisa + "\"}}", status: 400, code: "invalid_json"},
		{name: "nesting 65", ct: ctJSON, body: deep, status: 400, code: "too_deep"},
		{name: "nesting 200000", ct: ctJSON, body: very.String(), status: 400, code: "too_deep"},
		// Content types and encodings.
		{name: "vendor json type", ct: "application/problem+json", body: card, status: 200, tokens: 1},
		{name: "charset utf-8", ct: "application/json; charset=UTF-8", body: card, status: 200, tokens: 1},
		{name: "charset utf-16", ct: "application/json; charset=utf-16", body: card, status: 415, code: "unsupported_media_type"},
		{name: "duplicate charset", ct: "application/json; charset=utf-8; charset=utf-16", body: card, status: 415, code: "unsupported_media_type"},
		{name: "text/plain", ct: "text/plain", body: card, status: 415, code: "unsupported_media_type"},
		{name: "json synonym (Rails)", ct: "text/x-json", body: card, status: 200, tokens: 1},
		{name: "no content type", body: card, status: 415, code: "unsupported_media_type"},
		{name: "multipart", ct: "multipart/form-data; boundary=x", body: "--x\r\nContent-Disposition: form-data; name=\"card[number]\"\r\n\r\n" + panVisa + "\r\n--x--\r\n", status: 415, code: "unsupported_media_type"},
		{name: "json sent as form", ct: ctForm, body: card, status: 400, code: "invalid_form"},
		// tok would read the first type; gunicorn's WSGI environ keeps the
		// last, so Flask or Django parse this JSON body as the form inside it.
		{name: "second content type", ct: ctJSON, hdr: []string{"Content-Type", ctForm},
			body: `{"a":"&card[number]=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31&x="}`, status: 415, code: "unsupported_media_type"},
		// The reverse proxy drops headers Connection names: tok must not
		// inspect by a type the app never receives.
		{name: "connection names content-type", ct: ctJSON, hdr: []string{"Connection", "Content-Type"},
			body: `{"a":"&card[number]=%34%31%31%31%31%31%31%31%31%31%31%31%31%31%31%31&x="}`, status: 415, code: "unsupported_media_type"},
		{name: "second content encoding", ct: ctJSON, hdr: []string{"Content-Encoding", "identity", "Content-Encoding", "gzip"}, body: string(gzipped(card)), status: 415, code: "unsupported_encoding"},
		{name: "gzip", ct: ctJSON, hdr: []string{"Content-Encoding", "gzip"}, body: string(gzipped(card)), status: 200, tokens: 1},
		{name: "x-gzip", ct: ctJSON, hdr: []string{"Content-Encoding", "x-gzip"}, body: string(gzipped(card)), status: 200, tokens: 1},
		{name: "deflate", ct: ctJSON, hdr: []string{"Content-Encoding", "deflate"}, body: string(deflated(card)), status: 200, tokens: 1},
		{name: "gzip form", ct: ctForm, hdr: []string{"Content-Encoding", "GZIP"}, body: string(gzipped("card[number]=" + panVisa)), status: 200, tokens: 1},
		{name: "br", ct: ctJSON, hdr: []string{"Content-Encoding", "br"}, body: card, status: 415, code: "unsupported_encoding"},
		{name: "gzip twice", ct: ctJSON, hdr: []string{"Content-Encoding", "gzip, gzip"}, body: string(gzipped(string(gzipped(card)))), status: 415, code: "unsupported_encoding"},
		{name: "corrupt gzip", ct: ctJSON, hdr: []string{"Content-Encoding", "gzip"}, body: "\x1f\x8b\x08\x00garbage", status: 400, code: "invalid_encoding"},
		{name: "body over max_body", ct: ctJSON, body: `{"pad":"` + strings.Repeat("x", DefaultMaxBody) + `","card":{"number":"` + panVisa + `"}}`, status: 413, code: "body_too_large"},
		// Form bodies.
		{name: "form", ct: ctForm, body: "card[number]=" + panVisa, status: 200, tokens: 1},
		{name: "form percent-encoded key", ct: ctForm, body: "card%5Bnumber%5D=" + panVisa, status: 200, tokens: 1},
		{name: "form fully encoded key", ct: ctForm, body: "%63%61%72%64%5b%6e%75%6d%62%65%72%5d=" + panVisa, status: 200, tokens: 1},
		{name: "form encoded value", ct: ctForm, body: "card[number]=%34%31%311+1111-1111%201111", status: 200, tokens: 1},
		{name: "form repeated key", ct: ctForm, body: "card[number]=" + panVisa + "&card[number]=" + panVisa2, status: 200, tokens: 2},
		{name: "form array key", ct: ctForm, body: "card[number][]=" + panVisa + "&card[number][]=" + panMC, status: 200, tokens: 2},
		{name: "form semicolon", ct: ctForm, body: "a=1;card[number]=" + panVisa, status: 400, code: "invalid_form"},
		{name: "form bad escape", ct: ctForm, body: "card[number]=" + panVisa + "&x=%zz", status: 400, code: "invalid_form"},
		{name: "form unclosed bracket", ct: ctForm, body: "card[number=" + panVisa, status: 400, code: "invalid_form"},
		{name: "form leading bracket (Rack)", ct: ctForm, body: "[card][number]=" + panVisa, status: 400, code: "invalid_form"},
		{name: "form trailing text (PHP)", ct: ctForm, body: "card[number]x=" + panVisa, status: 400, code: "invalid_form"},
		{name: "form leading space (PHP)", ct: ctForm, body: "+card[number]=" + panVisa, status: anyBlock, tokens: 1},
		{name: "form dotted key (qs allowDots)", ct: ctForm, body: "card.number=" + panVisa, status: anyBlock, tokens: 1},
		// Paths and methods.
		{name: "path trailing slash", path: "/checkout/", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path upper case", path: "/CHECKOUT", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path escaped", path: "/%63heckout", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path escaped slash", path: "/checkout%2F", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path params", path: "/checkout;jsessionid=1", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path escaped params", path: "/checkout%3Bjsessionid=1", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path backslash", path: "/checkout%5C", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "path double slash", path: "//checkout", ct: ctJSON, body: card, status: 307},
		{name: "path dot segment", path: "/x/../checkout", ct: ctJSON, body: card, status: 307},
		{name: "method lower case", method: "post", ct: ctJSON, body: card, status: 200, tokens: 1},
		{name: "method mixed case", method: "PoSt", ct: ctJSON, body: card, status: 200, tokens: 1},
	}
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

func deflated(s string) []byte {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.Bytes()
}

// runAttack sends a and checks the outcome: the expected refusal with
// nothing forwarded, or a forwarded body with tokens and no card number.
func (e *inboundEnv) runAttack(t *testing.T, mode rewrite.GuardMode, a attack) {
	t.Helper()
	method, path := a.method, a.path
	if method == "" {
		method = "POST"
	}
	if path == "" {
		path = "/checkout"
	}
	n := e.up.count()
	r := e.send(method, path, a.ct, []byte(a.body), a.hdr...)
	if a.status/100 == 3 {
		// Go's ServeMux redirects unclean paths: nothing is forwarded, and
		// a client that follows the redirect posts to the clean path.
		if r.StatusCode != a.status || r.Header.Get("Location") != "/checkout" {
			t.Errorf("status = %d, Location %q, want %d to /checkout", r.StatusCode, r.Header.Get("Location"), a.status)
		}
		if got := e.up.count() - n; got != 0 {
			t.Errorf("the upstream received %d requests, want none", got)
		}
		return
	}
	if a.status == anyBlock && r.StatusCode/100 == 4 {
		a.status, a.code = r.StatusCode, r.json(t)["error"].(string)
	}
	if a.status != http.StatusOK && a.status != anyBlock {
		e.refused(t, r, n, a.status, a.code)
		return
	}
	got, values := e.forwarded(t, r, n)
	if len(values) != a.tokens {
		t.Errorf("the upstream received %d tokens, want %d (body %q)", len(values), a.tokens, got.Body)
	}
	checkLength(t, got)
	if ce := got.Header.Get("Content-Encoding"); ce != "" {
		t.Errorf("upstream Content-Encoding = %q, want none (forwarded decoded)", ce)
	}
	if !json.Valid(got.Body) && strings.Contains(a.ct, "json") {
		t.Errorf("the upstream body is not valid JSON: %q", got.Body)
	}
	if a.path != "" && got.RequestURI != a.path {
		t.Errorf("upstream request URI = %q, want %q untouched", got.RequestURI, a.path)
	}
}

// TestInboundSmuggling sends each attack through the real HTTP path, with
// the guard rejecting and with the guard off: the route's fields alone must
// hold, since the guard does not recognise every card number (the seed's
// PAN fails Luhn).
func TestInboundSmuggling(t *testing.T) {
	t.Parallel()
	for _, mode := range []rewrite.GuardMode{rewrite.GuardReject, rewrite.GuardOff} {
		t.Run("guard "+mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.Mode = mode }})
			for _, a := range smugglingAttacks() {
				t.Run(a.name, func(t *testing.T) { e.runAttack(t, mode, a) })
			}
		})
	}
}

// TestInboundJSONNumberCVC sends CVCs as JSON numbers: a digits token
// with a leading zero would be no JSON integer (a 500, one time in ten), so
// every one must arrive as a number of the same length.
func TestInboundJSONNumberCVC(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	for cvc := 100; cvc < 160; cvc++ {
		n := e.up.count()
		r := e.send("POST", "/checkout", "application/json", []byte(fmt.Sprintf(`{"card":{"number":"%s","cvc":%d}}`, panVisa, cvc)))
		got, values := e.forwarded(t, r, n)
		if !json.Valid(got.Body) || !slices.Equal(values, []string{panVisa, fmt.Sprint(cvc)}) {
			t.Fatalf("cvc %d: the upstream received %q, want valid JSON with two tokens", cvc, got.Body)
		}
	}
}

// TestInboundGzipBomb posts bodies that decode to 32 and 256 MiB: refused with 413
// after decoding little more than max_body. Not parallel: it measures the
// process's allocations.
func TestInboundGzipBomb(t *testing.T) {
	e := newInboundEnv(t, inboundConfig{})
	// 256 gzip members of 1 MiB of zeros each: a 256 MiB body in ~260 KiB.
	member := gzipped(strings.Repeat("\x00", 1<<20))
	gz := bytes.Repeat(member, 256)
	zb := deflated(strings.Repeat("\x00", 32<<20)) // 32 MiB in ~32 KiB
	for _, tc := range []struct {
		name, enc, path, ct string
		body                []byte
	}{
		{"gzip", "gzip", "/checkout", "application/json", gz},
		{"deflate", "deflate", "/checkout", "application/x-www-form-urlencoded", zb},
		{"gzip on a guarded path", "gzip", "/profile", "application/json", gz},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.body) > DefaultMaxBody {
				t.Fatalf("bomb is %d bytes compressed, want under max_body", len(tc.body))
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			n := e.up.count()
			r := e.send("POST", tc.path, tc.ct, tc.body, "Content-Encoding", tc.enc)
			runtime.ReadMemStats(&after)
			e.refused(t, r, n, http.StatusRequestEntityTooLarge, "body_too_large")
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
				t.Errorf("refusing a bomb allocated %d MiB, want under 16 MiB", alloc>>20)
			}
		})
	}
}

// TestInboundFraming writes requests byte for byte: chunked bodies, both
// Content-Length and Transfer-Encoding, h2c upgrades. Whatever Go's server
// decides, no card number may reach the upstream.
func TestInboundFraming(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	card := `{"card":{"number":"` + panVisa + `"}}`
	chunked := func(s string, size int) string {
		var b strings.Builder
		for len(s) > 0 {
			n := min(size, len(s))
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, s[:n])
			s = s[n:]
		}
		return b.String() + "0\r\n\r\n"
	}
	head := "POST /checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\n"
	for _, tc := range []struct {
		name   string
		req    string
		status int // 0: any refusal (or a closed connection)
		code   string
	}{
		{"chunked", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(card, 7), 200, ""},
		{"chunked with extensions", head + "Transfer-Encoding: chunked\r\n\r\n" + strings.Replace(chunked(card, 16), "\r\n", ";ext=1\r\n", 1), 200, ""},
		{"chunked and content-length", head + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(card, 9), 0, ""},
		{"content-length and chunked", head + "Transfer-Encoding: chunked\r\nContent-Length: 200\r\n\r\n" + chunked(card, 9), 0, ""},
		{"chunked upper case", head + "Transfer-Encoding: CHUNKED\r\n\r\n" + chunked(card, 9), 200, ""},
		{"chunked, identity", head + "Transfer-Encoding: identity, chunked\r\n\r\n" + chunked(card, 9), 0, ""},
		{"two content-lengths", head + fmt.Sprintf("Content-Length: %d\r\nContent-Length: 5\r\n\r\n", len(card)) + card, 0, ""},
		{"chunked over max_body", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(`{"pad":"`+strings.Repeat("x", DefaultMaxBody)+`"}`, 1<<16), 413, "body_too_large"},
		{"h2c upgrade", head + fmt.Sprintf("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: %d\r\n\r\n", len(card)) + card, 200, ""},
		{"websocket upgrade on a card route", head + fmt.Sprintf("Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: %d\r\n\r\n", len(card)) + card, 400, "upgrade_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.up.count()
			r := e.raw(tc.req)
			got := e.up.since(n)
			for _, u := range got {
				checkNoPAN(t, u)
			}
			switch {
			case tc.status == 200:
				e.forwarded(t, r, n)
				checkLength(t, got[0])
				for _, h := range []string{"Upgrade", "HTTP2-Settings"} {
					if v := got[0].Header.Get(h); v != "" {
						t.Errorf("the upstream received %s: %q, want it stripped", h, v)
					}
				}
			case tc.status != 0:
				e.refused(t, r, n, tc.status, tc.code)
			case r.StatusCode == 200:
				e.forwarded(t, r, n)
			default:
				if len(got) != 0 {
					t.Errorf("refused with %d, yet the upstream received %d requests", r.StatusCode, len(got))
				}
			}
		})
	}
	t.Run("h2c upgrade on an open path", func(t *testing.T) {
		for _, up := range []string{
			"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
			"Upgrade: H2C\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
			"Upgrade: websocket, h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
			"Upgrade: h2c",
			"Upgrade: websocket, h2c",
			"Upgrade: h2c, websocket",
			"Upgrade:  h2c ",
		} {
			n := e.up.count()
			r := e.raw("GET /profile HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\n" + up + "\r\n\r\n")
			if r.StatusCode != 200 {
				t.Fatalf("Upgrade: %s: status %d %s, want 200", up, r.StatusCode, r.body)
			}
			got := e.up.since(n)
			if len(got) != 1 {
				t.Fatalf("Upgrade: %s: the upstream received %d requests, want 1", up, len(got))
			}
			if v := got[0].Header.Values("Upgrade"); strings.Contains(strings.ToLower(strings.Join(v, ",")), "h2c") {
				t.Errorf("Upgrade: %s: the upstream received Upgrade %q", up, v)
			}
			if v := got[0].Header.Get("HTTP2-Settings"); v != "" {
				t.Errorf("Upgrade: %s: the upstream received HTTP2-Settings %q", up, v)
			}
		}
	})
}

// TestInboundGuard covers card numbers outside the configured fields, in
// each guard mode.
func TestInboundGuard(t *testing.T) {
	t.Parallel()
	const ctJSON, ctForm = "application/json", "application/x-www-form-urlencoded"
	type req struct {
		name, method, path, ct, body string
		where                        string // the path the 422 names
	}
	reqs := []req{
		{"extra field on a route", "POST", "/checkout", ctJSON, `{"card":{"number":"` + panVisa + `"},"note":"` + panVisa2 + `"}`, "note"},
		{"unrouted path", "POST", "/profile", ctJSON, `{"profile":{"card":"` + panMC + `"}}`, "profile.card"},
		{"spaces", "PUT", "/profile", ctJSON, `{"note":"my card is 4000 0566 5566 5556 thanks"}`, "note"},
		{"dashes", "POST", "/profile", ctJSON, `{"x":["6011-1111-1111-1117"]}`, "x.0"},
		{"json number", "POST", "/profile", ctJSON, `{"n":` + panAmex + `}`, "n"},
		{"form", "POST", "/profile", ctForm, "name=Zo%C3%AB&pan=4242+4242+4242+4242", "pan"},
		// 16 ASCII digits then an Arabic-Indic 8: a card to a parser that
		// knows only 0-9, 17 digits failing Luhn to one that knows all.
		{"ascii card before an arabic digit", "POST", "/profile", ctJSON, `{"note":"4000056655665556٨"}`, "note"},
		{"json synonym (Rails)", "POST", "/profile", "application/jsonrequest", `{"note":"` + panVisa + `"}`, "note"},
		{"form on a route", "POST", "/checkout", ctForm, "card[number]=" + panVisa + "&card[backup]=" + panVisa2, "card[backup]"},
		{"query string", "GET", "/profile?card=" + panVisa, "", "", "card"},
		{"query string with dashes", "GET", "/search?q=4111-1111-1111-1111&x=1", "", "", "q"},
		{"query after semicolon", "GET", "/search?a=1;c=" + panVisa, "", "", "c"},
	}
	for _, mode := range []rewrite.GuardMode{rewrite.GuardReject, rewrite.GuardTokenize, rewrite.GuardOff} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.Mode = mode }})
			for _, tc := range reqs {
				t.Run(tc.name, func(t *testing.T) {
					n := e.up.count()
					var body []byte
					if tc.body != "" {
						body = []byte(tc.body)
					}
					r := e.send(tc.method, tc.path, tc.ct, body)
					switch mode {
					case rewrite.GuardReject:
						e.refused(t, r, n, http.StatusUnprocessableEntity, "card_number_detected")
						if msg, _ := r.json(t)["message"].(string); !strings.Contains(msg, tc.where) {
							t.Errorf("message %q does not name the field %q", msg, tc.where)
						}
					case rewrite.GuardTokenize:
						got, _ := e.forwarded(t, r, n)
						if toks, _ := e.tokensIn(t, append(got.Body, got.RawQuery...)); len(toks) != 1+strings.Count(tc.name, "on a route") {
							t.Errorf("the upstream received %d tokens (body %q, query %q), want the card number tokenized", len(toks), got.Body, got.RawQuery)
						}
						if tc.body == "" {
							want := stripTokens(t, e, strings.SplitN(tc.path, "?", 2)[1])
							if got := stripTokens(t, e, got.RawQuery); got != want {
								t.Errorf("upstream query = %q, want %q (only the card number changed)", got, want)
							}
						}
						// Only the card number changed.
						if want := stripTokens(t, e, tc.body); tc.body != "" && want != stripTokens(t, e, string(got.Body)) {
							t.Errorf("the upstream body %q differs from %q beyond the card number", got.Body, tc.body)
						}
					case rewrite.GuardOff:
						if r.StatusCode != 200 {
							t.Fatalf("status = %d %s, want 200", r.StatusCode, r.body)
						}
						got := e.up.since(n)
						if len(got) != 1 {
							t.Fatalf("the upstream received %d requests, want 1", len(got))
						}
						if findPAN(got[0].Body) == "" && findPAN([]byte(got[0].RawQuery)) == "" {
							t.Errorf("the upstream did not receive the unconfigured card number: body %q query %q", got[0].Body, got[0].RawQuery)
						}
						if stripTokens(t, e, string(got[0].Body)) != stripTokens(t, e, tc.body) {
							t.Errorf("the upstream body %q differs from %q beyond the configured field", got[0].Body, tc.body)
						}
					}
				})
			}
			t.Run("ignored field", func(t *testing.T) {
				n := e.up.count()
				body := `{"order":{"id":"` + panVisa + `"}}`
				r := e.send("POST", "/orders", ctJSON, []byte(body))
				if r.StatusCode != 200 {
					t.Fatalf("status = %d %s, want 200 (order.id is ignored)", r.StatusCode, r.body)
				}
				if got := e.up.since(n); len(got) != 1 || string(got[0].Body) != body {
					t.Errorf("the ignored field did not reach the upstream untouched")
				}
				if mode == rewrite.GuardReject {
					n := e.up.count()
					e.refused(t, e.send("POST", "/orders", ctJSON, []byte(`{"Order":{"ID":"`+panVisa+`"}}`)), n,
						http.StatusUnprocessableEntity, "card_number_detected")
				}
			})
			t.Run("utf-16 json on an unrouted path", func(t *testing.T) {
				n := e.up.count()
				body := []byte("\xff\xfe{\x00}\x00")
				r := e.send("POST", "/profile", "application/json; charset=utf-16", body)
				if mode != rewrite.GuardOff {
					e.refused(t, r, n, http.StatusUnsupportedMediaType, "unsupported_media_type")
					return
				}
				// Nothing to tokenize and nothing to guard: it streams through.
				if got := e.up.since(n); r.StatusCode != 200 || len(got) != 1 || !bytes.Equal(got[0].Body, body) {
					t.Errorf("status = %d %s, want 200 and the body untouched at the upstream", r.StatusCode, r.body)
				}
			})
			t.Run("non-luhn passes", func(t *testing.T) {
				n := e.up.count()
				body := `{"ref":"` + seedPAN + `"}`
				r := e.send("POST", "/profile", ctJSON, []byte(body))
				if got := e.up.since(n); r.StatusCode != 200 || len(got) != 1 || string(got[0].Body) != body {
					t.Errorf("a number that fails Luhn: status %d, want 200 and the body untouched", r.StatusCode)
				}
			})
		})
	}
}

// stripTokens replaces every token in s by "T" and every card number (in
// any spelling the guard reads) by "T", so two bodies can be compared
// beyond their card numbers.
func stripTokens(t *testing.T, e *inboundEnv, s string) string {
	t.Helper()
	toks, _ := e.tokensIn(t, []byte(s))
	for _, tok := range toks {
		s = strings.Replace(s, tok, "T", 1)
	}
	for _, p := range inboundPANs {
		s = strings.ReplaceAll(s, p, "T")
		for _, sep := range []string{" ", "-", "+"} {
			var spaced []string
			for i := 0; i < len(p); i += 4 {
				spaced = append(spaced, p[i:min(i+4, len(p))])
			}
			s = strings.ReplaceAll(s, strings.Join(spaced, sep), "T")
		}
	}
	return s
}

// TestInboundForwarding: a good reverse proxy besides.
func TestInboundForwarding(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{respond: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "merchant")
		w.Header().Add("Set-Cookie", "a=1")
		w.WriteHeader(201)
		io.WriteString(w, "created "+r.Method)
	}})
	t.Run("x-forwarded and host", func(t *testing.T) {
		n := e.up.count()
		r := e.send("GET", "/profile", "", nil, "Host", "shop.example:8443", "X-Forwarded-For", "203.0.113.9", "X-Forwarded-Host", "evil.example")
		if r.StatusCode != 201 || string(r.body) != "created GET" || r.Header.Get("X-App") != "merchant" || r.Header.Get("Set-Cookie") != "a=1" {
			t.Errorf("response = %d %q %v, want the upstream's 201 with its headers", r.StatusCode, r.body, r.Header)
		}
		got := e.up.since(n)[0]
		for h, want := range map[string]string{
			"X-Forwarded-For": "127.0.0.1", // a client's own X-Forwarded-* are dropped "X-Forwarded-Host": "shop.example:8443", "X-Forwarded-Proto": "http",
		} {
			if v := strings.Join(got.Header.Values(h), ", "); v != want {
				t.Errorf("upstream %s = %q, want %q", h, v, want)
			}
		}
		if got.Host != "shop.example:8443" {
			t.Errorf("upstream Host = %q, want %q", got.Host, "shop.example:8443")
		}
	})
	for _, tc := range []struct{ name, method, target, ct, body string }{
		{"query untouched", "GET", "/search?q=caf%C3%A9+au+lait&sort=-price&empty=&flag&x=%2F", "", ""},
		{"query with semicolon", "GET", "/search?a=1;b=2", "", ""},
		{"delete", "DELETE", "/items/42?force=1", "", ""},
		{"put json", "PUT", "/profile", "application/json", "{\n  \"name\" : \"Zo\\u00eb\",  \"age\": 42 ,\"tags\":[ ]}\n"},
		{"patch form", "PATCH", "/profile", "application/x-www-form-urlencoded", "name=Zo%C3%AB&city=Lyon"},
		{"post to checkout without card", "POST", "/checkout", "application/json", `{"card":{"number":null,"cvc":""},"note":"x"}`},
		{"options", "OPTIONS", "/checkout", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.up.count()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			r := e.send(tc.method, tc.target, tc.ct, body)
			if r.StatusCode != 201 {
				t.Fatalf("status = %d %s, want 201", r.StatusCode, r.body)
			}
			got := e.up.since(n)
			if len(got) != 1 {
				t.Fatalf("the upstream received %d requests, want 1", len(got))
			}
			if got[0].Method != tc.method || got[0].RequestURI != tc.target || string(got[0].Body) != tc.body {
				t.Errorf("upstream got %s %s %q, want %s %s %q", got[0].Method, got[0].RequestURI, got[0].Body, tc.method, tc.target, tc.body)
			}
		})
	}
}

// TestInboundStreaming: responses stream, large bodies pass intact, routes
// without fields stream request bodies through.
func TestInboundStreaming(t *testing.T) {
	t.Parallel()
	first, release := make(chan struct{}), make(chan struct{})
	download := make([]byte, 8<<20)
	rnd := rand.NewChaCha8([32]byte{1})
	rnd.Read(download)
	e := newInboundEnv(t, inboundConfig{respond: func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			io.WriteString(w, "first chunk\n")
			http.NewResponseController(w).Flush()
			close(first)
			<-release
			io.WriteString(w, "second chunk\n")
		case "/download":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(download)
		default:
			io.WriteString(w, "ok")
		}
	}})
	partOne := make(chan struct{})
	e.up.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/upload/stream" {
			return false
		}
		buf := make([]byte, len("part one;"))
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			t.Errorf("upstream: %v", err)
			return true
		}
		close(partOne)
		rest, _ := io.ReadAll(r.Body)
		w.Write(append(buf, rest...))
		return true
	}
	t.Run("streaming response", func(t *testing.T) {
		resp, err := e.client.Get(e.public.URL + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		<-first
		buf := make([]byte, len("first chunk\n"))
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first chunk\n" {
			t.Fatalf("first chunk = %q, %v: the response did not stream", buf, err)
		}
		close(release) // only now may the upstream finish
		rest, err := io.ReadAll(resp.Body)
		if err != nil || string(rest) != "second chunk\n" {
			t.Errorf("rest = %q, %v, want the second chunk", rest, err)
		}
	})
	t.Run("8 MiB download", func(t *testing.T) {
		r := e.send("GET", "/download", "", nil)
		if r.StatusCode != 200 || sha256.Sum256(r.body) != sha256.Sum256(download) {
			t.Errorf("download: status %d, %d bytes, want 200 and the %d bytes intact", r.StatusCode, len(r.body), len(download))
		}
	})
	upload := make([]byte, 5<<20)
	rnd.Read(upload)
	t.Run("5 MiB octet-stream on an uninspected route", func(t *testing.T) {
		n := e.up.count()
		r := e.send("POST", "/upload", "application/octet-stream", upload)
		got := e.up.since(n)
		if r.StatusCode != 200 || len(got) != 1 || !bytes.Equal(got[0].Body, upload) {
			t.Errorf("upload: status %d %s, want 200 and the %d bytes intact at the upstream", r.StatusCode, r.body, len(upload))
		}
	})
	// Elsewhere every body is read: one beyond limits.max_body
	// cannot be, so it is refused.
	t.Run("5 MiB image on an unrouted path", func(t *testing.T) {
		n := e.up.count()
		e.refused(t, e.send("POST", "/avatar", "image/png", upload), n, http.StatusRequestEntityTooLarge, "body_too_large")
	})
	t.Run("chunked upload streams", func(t *testing.T) {
		// A buffered body could not reach the upstream before the client
		// finished it: here the client sends its second part only after the
		// upstream has read the first.
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte("part one;"))
			select {
			case <-partOne:
				pw.Write([]byte("part two"))
				pw.Close()
			case <-time.After(10 * time.Second): // a deadlock guard, not synchronisation
				pw.CloseWithError(errors.New("the upstream never saw the first part: the body was buffered"))
			}
		}()
		req, err := http.NewRequest("POST", e.public.URL+"/upload/stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || string(b) != "part one;part two" {
			t.Errorf("streamed upload = %d %q, %v, want 200 and both parts echoed", resp.StatusCode, b, err)
		}
	})
}

// TestInboundUpstreamFailures: the app down, slow, or the client gone.
func TestInboundUpstreamFailures(t *testing.T) {
	t.Parallel()
	t.Run("upstream down", func(t *testing.T) {
		t.Parallel()
		dead := httptest.NewServer(http.NotFoundHandler())
		deadURL, _ := url.Parse(dead.URL)
		dead.Close()
		e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Upstream = deadURL }})
		wantError(t, e.send("GET", "/profile", "", nil), http.StatusBadGateway, "upstream_unavailable")
		r := e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`))
		wantError(t, r, http.StatusBadGateway, "upstream_unavailable")
	})
	t.Run("upstream timeout", func(t *testing.T) {
		t.Parallel()
		block := make(chan struct{})
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = 100 * time.Millisecond
		e := newInboundEnv(t, inboundConfig{
			respond: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-block:
				case <-r.Context().Done():
				}
			},
			opts: func(o *Options) { o.Transport = tr },
		})
		t.Cleanup(func() { close(block) })
		wantError(t, e.send("GET", "/slow", "", nil), http.StatusGatewayTimeout, "upstream_timeout")
	})
	t.Run("client gone", func(t *testing.T) {
		t.Parallel()
		arrived := make(chan struct{}, 1)
		e := newInboundEnv(t, inboundConfig{respond: func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			<-r.Context().Done() // tok cancels its upstream request
		}})
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := e.roundTrip(ctx, "POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`))
			errc <- err
		}()
		<-arrived
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("client error = %v, want context.Canceled", err)
		}
		<-e.done // tok's handler has returned
		for line := range strings.Lines(e.log.String()) {
			if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
				t.Errorf("a client going away was logged: %s", line)
			}
		}
	})
}

// TestInboundLoadShedding: past MaxInFlight requests in progress, tok
// answers 503 at once instead of queueing.
func TestInboundLoadShedding(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	var once sync.Once
	e := newInboundEnv(t, inboundConfig{
		respond: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/block" {
				arrived <- struct{}{}
				<-release
			}
			io.WriteString(w, "ok")
		},
		opts: func(o *Options) { o.MaxInFlight = 2 },
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	results := make(chan int, 2)
	for range 2 {
		go func() {
			r, err := e.roundTrip(context.Background(), "GET", "/block", "", nil)
			if err != nil {
				results <- 0
				return
			}
			results <- r.StatusCode
		}()
	}
	<-arrived
	<-arrived
	wantError(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`)), http.StatusServiceUnavailable, "overloaded")
	wantError(t, e.send("GET", "/other", "", nil), http.StatusServiceUnavailable, "overloaded")
	once.Do(func() { close(release) })
	for range 2 {
		if s := <-results; s != 200 {
			t.Errorf("a blocked request ended with %d, want 200", s)
		}
	}
	n := e.up.count()
	e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`)), n)
}

// bodyTypes is a RoundTripper that notes the dynamic type of every
// outgoing body before the real transport writes it.
type bodyTypes struct {
	mu    sync.Mutex
	types []string
	next  http.RoundTripper
}

func (b *bodyTypes) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	b.types = append(b.types, fmt.Sprintf("%T", r.Body))
	b.mu.Unlock()
	return b.next.RoundTrip(r)
}

// A body tok rewrote reaches the transport as the in-memory reader it is
// (net/http then writes headers and body in one call, one TCP segment);
// a body tok streams stays the stream ReverseProxy wraps.
func TestInboundInMemoryBody(t *testing.T) {
	t.Parallel()
	bt := &bodyTypes{next: newTransport()}
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Transport = bt }})
	n := e.up.count()
	e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`)), n)
	e.forwarded(t, e.send("POST", "/upload", "application/octet-stream", []byte("0123456789")), n+1)
	bt.mu.Lock()
	defer bt.mu.Unlock()
	want := []string{"io.nopCloserWriterTo", "*httputil.noopCloseReader"}
	if !slices.Equal(bt.types, want) {
		t.Errorf("outgoing body types %q, want %q", bt.types, want)
	}
}

// A full volatile store refuses the checkout with 503 volatile_store_full
// before anything reaches the app; routes that keep nothing in memory go on.
func TestInboundVolatileFull(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{volatileMax: 1})
	withCVC := func(cvc string) []byte {
		return []byte(`{"card":{"number":"` + panVisa + `","cvc":"` + cvc + `"}}`)
	}
	n := e.up.count()
	e.forwarded(t, e.send("POST", "/checkout", "application/json", withCVC("123")), n)
	wantError(t, e.send("POST", "/checkout", "application/json", withCVC("456")), http.StatusServiceUnavailable, "volatile_store_full")
	if got := e.up.count(); got != n+1 {
		t.Fatalf("the upstream received %d requests after the refusal, want none", got-n-1)
	}
	e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`)), n+1)
	// /metrics shows the store full, so an operator can alert before it is.
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"\ntok_volatile_records 1\n", "\ntok_volatile_records_max 1\n", "\ntok_volatile_bytes "} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}

// Two Content-Type headers on a route without fields: the guard would read
// the body as the first type (text/plain: not at all) and an app that keeps
// the last would parse JSON with a card number in it.
func TestInboundGuardTwoContentTypes(t *testing.T) {
	t.Parallel()
	body := []byte(`{"note":"` + panVisa + `"}`)
	for _, mode := range []rewrite.GuardMode{rewrite.GuardReject, rewrite.GuardTokenize, rewrite.GuardOff} {
		e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.Mode = mode }})
		n := e.up.count()
		r := e.send("POST", "/profile", "text/plain", body, "Content-Type", "application/json")
		if mode == rewrite.GuardOff { // nothing to guard: the body streams through
			if r.StatusCode != 200 || e.up.count() != n+1 {
				t.Errorf("guard off: status %d, %d requests upstream; want 200 and one", r.StatusCode, e.up.count()-n)
			}
			continue
		}
		e.refused(t, r, n, http.StatusUnsupportedMediaType, "unsupported_media_type")
	}
}

// A POST without a Content-Type on a route without fields: Rack parses it
// as a form, so the guard reads it as one; other methods and typed bodies
// it does not read stream through.
func TestInboundGuardTypelessPOST(t *testing.T) {
	t.Parallel()
	form := []byte("note=" + panVisa + "&x=%zz")
	for _, mode := range []rewrite.GuardMode{rewrite.GuardReject, rewrite.GuardTokenize} {
		e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.Mode = mode }})
		n := e.up.count()
		r := e.send("POST", "/profile", "", form)
		if mode == rewrite.GuardReject {
			e.refused(t, r, n, http.StatusUnprocessableEntity, "card_number_detected")
		} else {
			got, _ := e.forwarded(t, r, n)
			if toks, _ := e.tokensIn(t, got.Body); len(toks) != 1 || !strings.HasSuffix(string(got.Body), "&x=%zz") {
				t.Errorf("the upstream received %q, want the card number tokenized and the rest as sent", got.Body)
			}
		}
		// Binary without a card-like run passes, as sent.
		n = e.up.count()
		bin := []byte("\x00\x01=&&==%\xff 12345")
		got, _ := e.forwarded(t, e.send("POST", "/profile", "", bin), n)
		if !bytes.Equal(got.Body, bin) {
			t.Errorf("a typeless body without a card number reached the upstream as %q, want it unchanged", got.Body)
		}
	}
}

// replaceWhole replaces the first occurrence of tok in s that is a whole
// token, not part of a longer run of letters and digits (a 3-digit CVC
// token may also appear inside a card number's token).
func replaceWhole(s, tok, repl string) string {
	word := func(c byte) bool {
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
	}
	for from := 0; ; {
		i := strings.Index(s[from:], tok)
		if i < 0 {
			return s
		}
		i += from
		j := i + len(tok)
		if (i == 0 || !word(s[i-1])) && (j == len(s) || !word(s[j])) {
			return s[:i] + repl + s[j:]
		}
		from = i + 1
	}
}

// A route without fields: "Connection: Content-Type" would strip the type
// after tok streamed a text/plain body through, and the app would parse a
// typeless POST as a form. tok reads it as the app will; "post" is POST.
func TestInboundConnectionNamesContentType(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	for _, method := range []string{"POST", "post"} {
		n := e.up.count()
		r := e.send(method, "/profile", "text/plain", []byte("card[number]="+panVisa), "Connection", "Content-Type")
		e.refused(t, r, n, http.StatusUnprocessableEntity, "card_number_detected")
	}
}
