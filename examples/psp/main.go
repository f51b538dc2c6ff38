// Command psp is the demo's stand-in payment provider: the service tok's
// egress listener forwards the merchant app's payment requests to, with the
// tokens at the card fields replaced by the real card number and security
// code. It answers the way a card processor's API does (an id, a status, the
// card's brand and last four digits, never the whole number) and keeps the
// last charges in memory so that a person can see the real card arrive.
//
// Usage:
//
//	PSP_API_KEY=sk_test_demo go run ./examples/psp [-addr 127.0.0.1:4000]
//
// Endpoints:
//
//	POST /v1/payment_methods  a card: form (card[number], card[cvc],
//	                          card[exp_month], card[exp_year]) or JSON
//	                          ({"source": {"card": {"number": ..., "cvc": ...}}});
//	                          answers {"id": "pm_...", "card": {"brand", "last4", ...}}
//	POST /v1/charges          the same card fields (or payment_method=pm_...)
//	                          with amount (minor units) and currency; answers
//	                          {"id": "ch_...", "status": "succeeded", ...}, or
//	                          402 with a card_error for a card it declines
//	GET  /charges             the last 100 charges as received, card numbers
//	                          included, newest first: the demo's proof
//
// The /v1 endpoints want Authorization: Bearer <key>, where the key is the
// environment variable PSP_API_KEY (default sk_test_demo). Because tok's
// egress route sends the variable's value as the whole Authorization header,
// the variable may hold "Bearer sk_test_demo" too: one exported variable
// then serves both processes.
//
// Card numbers that fail the Luhn check (tok's tokens always do) are
// declined with incorrect_number, so a token that reached the provider
// unrevealed shows at once. 4000000000000002 is always declined, as with
// real providers' test cards. Plain HTTP: this is a demo, on loopback only.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxCharges is how many charges GET /charges shows.
	maxCharges = 100
	// maxPaymentMethods is how many payment methods are remembered.
	maxPaymentMethods = 1000
	// maxBody caps a request body.
	maxBody = 64 << 10
	// defaultAPIKey is the key when PSP_API_KEY is not set.
	defaultAPIKey = "sk_test_demo"
	// declinedCard is the test card that is always declined.
	declinedCard = "4000000000000002"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4000", "listen `address` (host:port)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "psp: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, apiKey(os.Getenv("PSP_API_KEY"))); err != nil {
		log.Fatalf("psp: %v", err)
	}
}

// apiKey returns the key the /v1 endpoints want, from the value of
// PSP_API_KEY: the default if empty, without a "Bearer " prefix if it has
// one.
func apiKey(env string) string {
	env = strings.TrimSpace(env)
	if k, ok := cutPrefixFold(env, "Bearer "); ok {
		env = strings.TrimSpace(k)
	}
	if env == "" {
		return defaultAPIKey
	}
	return env
}

// cutPrefixFold is strings.CutPrefix, ignoring the case of prefix.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// run serves the provider on addr until ctx is done, then drains.
func run(ctx context.Context, addr, key string) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           newProvider(key).routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("psp: listening on http://%s (POST /v1/payment_methods, POST /v1/charges, GET /charges)", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// cardIn is a card as the provider received it.
type cardIn struct {
	Number   string `json:"number"`
	CVC      string `json:"cvc,omitempty"`
	ExpMonth int    `json:"exp_month,omitempty"`
	ExpYear  int    `json:"exp_year,omitempty"`
}

// cardOut is a card as the provider shows it to its client: never the
// whole number, never the security code.
type cardOut struct {
	Brand    string `json:"brand"`
	Last4    string `json:"last4"`
	ExpMonth int    `json:"exp_month,omitempty"`
	ExpYear  int    `json:"exp_year,omitempty"`
	// CVCCheck is "pass" when a well-formed code came with the card,
	// "unchecked" when none did.
	CVCCheck string `json:"cvc_check"`
}

func (c cardIn) public() cardOut {
	out := cardOut{Brand: brand(c.Number), Last4: last4(c.Number), ExpMonth: c.ExpMonth, ExpYear: c.ExpYear, CVCCheck: "unchecked"}
	if c.CVC != "" {
		out.CVCCheck = "pass"
	}
	return out
}

// paymentMethod is the answer to POST /v1/payment_methods.
type paymentMethod struct {
	ID      string  `json:"id"`
	Object  string  `json:"object"`
	Type    string  `json:"type"`
	Card    cardOut `json:"card"`
	Created int64   `json:"created"`
	card    cardIn
}

// charge is the answer to POST /v1/charges.
type charge struct {
	ID            string  `json:"id"`
	Object        string  `json:"object"`
	Amount        int64   `json:"amount"`
	Currency      string  `json:"currency"`
	Status        string  `json:"status"` // succeeded or failed
	Paid          bool    `json:"paid"`
	PaymentMethod string  `json:"payment_method,omitempty"`
	Card          cardOut `json:"card"`
	FailureCode   string  `json:"failure_code,omitempty"`
	Created       int64   `json:"created"`
}

// received is a charge as the provider received it, for GET /charges.
type received struct {
	ID          string    `json:"id"`
	ReceivedAt  time.Time `json:"received_at"`
	Status      string    `json:"status"`
	FailureCode string    `json:"failure_code,omitempty"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	// Card is the card the charge was made with, whole: the provider may
	// see it.
	Card          cardIn `json:"card"`
	PaymentMethod string `json:"payment_method,omitempty"`
	ContentType   string `json:"content_type"`
	// Body is the request body exactly as received.
	Body string `json:"body"`
}

// provider is the stand-in payment provider: its key and its memory.
type provider struct {
	key []byte

	mu        sync.Mutex
	charges   []received // oldest first, at most maxCharges
	methods   map[string]paymentMethod
	methodIDs []string // in creation order, for forgetting the oldest
	now       func() time.Time
}

func newProvider(key string) *provider {
	return &provider{key: []byte(key), methods: map[string]paymentMethod{}, now: time.Now}
}

// routes returns the provider's HTTP handler.
func (p *provider) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/payment_methods", p.authed(p.createPaymentMethod))
	mux.HandleFunc("POST /v1/charges", p.authed(p.createCharge))
	mux.HandleFunc("GET /charges", p.listCharges)
	return mux
}

// authed wants Authorization: Bearer <key> before h runs.
func (p *provider) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := cutPrefixFold(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), p.key) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="psp"`)
			writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "send Authorization: Bearer <your API key>", "")
			return
		}
		h(w, r)
	}
}

// request is a parsed /v1 request body.
type request struct {
	card          cardIn
	hasCard       bool
	amount        int64
	hasAmount     bool
	currency      string
	paymentMethod string
}

// paramError is a request the provider refuses with 400.
type paramError struct{ param, msg string }

func (e *paramError) Error() string { return e.msg }

// parseRequest reads a form or JSON body.
func parseRequest(contentType string, body []byte) (request, error) {
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return request{}, &paramError{"", "send application/x-www-form-urlencoded or application/json"}
	}
	switch {
	case media == "application/x-www-form-urlencoded":
		return parseForm(body)
	case media == "application/json", strings.HasSuffix(media, "+json"):
		return parseJSON(body)
	}
	return request{}, &paramError{"", fmt.Sprintf("unsupported content type %q: send a form or JSON", media)}
}

func parseForm(body []byte) (request, error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return request{}, &paramError{"", "malformed form body"}
	}
	var req request
	req.card.Number, req.card.CVC = v.Get("card[number]"), v.Get("card[cvc]")
	req.hasCard = v.Has("card[number]")
	if req.card.ExpMonth, err = optInt(v.Get("card[exp_month]")); err != nil {
		return req, &paramError{"card[exp_month]", "card[exp_month] must be a whole number"}
	}
	if req.card.ExpYear, err = optInt(v.Get("card[exp_year]")); err != nil {
		return req, &paramError{"card[exp_year]", "card[exp_year] must be a whole number"}
	}
	if s := v.Get("amount"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return req, &paramError{"amount", "amount must be a whole number of the currency's minor unit"}
		}
		req.amount, req.hasAmount = n, true
	}
	req.currency = v.Get("currency")
	req.paymentMethod = v.Get("payment_method")
	return req, nil
}

func optInt(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}

func parseJSON(body []byte) (request, error) {
	var in struct {
		Amount        json.Number `json:"amount"`
		Currency      string      `json:"currency"`
		PaymentMethod string      `json:"payment_method"`
		Source        struct {
			Card *struct {
				Number   json.RawMessage `json:"number"`
				CVC      json.RawMessage `json:"cvc"`
				ExpMonth int             `json:"exp_month"`
				ExpYear  int             `json:"exp_year"`
			} `json:"card"`
		} `json:"source"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil {
		return request{}, &paramError{"", "malformed JSON body: " + err.Error()}
	}
	req := request{currency: in.Currency, paymentMethod: in.PaymentMethod}
	if in.Amount != "" {
		n, err := strconv.ParseInt(in.Amount.String(), 10, 64)
		if err != nil {
			return req, &paramError{"amount", "amount must be a whole number of the currency's minor unit"}
		}
		req.amount, req.hasAmount = n, true
	}
	if c := in.Source.Card; c != nil {
		var err error
		if req.card.Number, err = scalar(c.Number); err != nil {
			return req, &paramError{"source.card.number", "source.card.number must be a string or a number"}
		}
		if req.card.CVC, err = scalar(c.CVC); err != nil {
			return req, &paramError{"source.card.cvc", "source.card.cvc must be a string or a number"}
		}
		req.card.ExpMonth, req.card.ExpYear = c.ExpMonth, c.ExpYear
		req.hasCard = req.card.Number != ""
	}
	return req, nil
}

// scalar returns a JSON string's value, or a JSON number's text as sent
// (never through float64, which would round a 16-digit number). Absent or
// null gives "".
func scalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", err
	}
	return n.String(), nil
}

// cardError is a card the provider declines (HTTP 402).
type cardError struct{ code, msg string }

// checkCard declines what a real provider would: a number that is not a
// card number (a token that was not revealed, say), a malformed security
// code, the always-declined test card.
func checkCard(c cardIn) *cardError {
	n := c.Number
	if len(n) < 12 || len(n) > 19 || !allDigits(n) || !luhnValid(n) {
		return &cardError{"incorrect_number", "the card number is incorrect"}
	}
	if c.CVC != "" && (len(c.CVC) < 3 || len(c.CVC) > 4 || !allDigits(c.CVC)) {
		return &cardError{"invalid_cvc", "the card's security code is invalid"}
	}
	if c.ExpMonth != 0 && (c.ExpMonth < 1 || c.ExpMonth > 12) {
		return &cardError{"invalid_expiry_month", "the card's expiration month is invalid"}
	}
	if n == declinedCard {
		return &cardError{"card_declined", "the card was declined"}
	}
	return nil
}

// createPaymentMethod stores a card and answers with its id.
func (p *provider) createPaymentMethod(w http.ResponseWriter, r *http.Request) {
	_, req, ok := readRequest(w, r)
	if !ok {
		return
	}
	if !req.hasCard {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_missing", "a card number is required", "card[number]")
		return
	}
	if ce := checkCard(req.card); ce != nil && ce.code != "card_declined" {
		writeError(w, http.StatusPaymentRequired, "card_error", ce.code, ce.msg, "")
		return
	}
	pm := paymentMethod{ID: newID("pm_"), Object: "payment_method", Type: "card", Card: req.card.public(),
		Created: p.now().Unix(), card: req.card}
	p.mu.Lock()
	if len(p.methodIDs) == maxPaymentMethods {
		delete(p.methods, p.methodIDs[0])
		p.methodIDs = p.methodIDs[1:]
	}
	p.methods[pm.ID] = pm
	p.methodIDs = append(p.methodIDs, pm.ID)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, pm)
}

// createCharge charges a card (or a stored payment method), records what
// it received and answers with the charge.
func (p *provider) createCharge(w http.ResponseWriter, r *http.Request) {
	body, req, ok := readRequest(w, r)
	if !ok {
		return
	}
	switch {
	case !req.hasAmount:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_missing", "amount is required", "amount")
		return
	case req.amount <= 0:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "amount must be positive", "amount")
		return
	case len(req.currency) != 3 || !allLetters(req.currency):
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", "currency must be a three-letter ISO code", "currency")
		return
	case req.hasCard && req.paymentMethod != "":
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", "send a card or a payment_method, not both", "payment_method")
		return
	case !req.hasCard && req.paymentMethod == "":
		writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_missing", "a card number or a payment_method is required", "card[number]")
		return
	}
	c := req.card
	if req.paymentMethod != "" {
		p.mu.Lock()
		pm, found := p.methods[req.paymentMethod]
		p.mu.Unlock()
		if !found {
			writeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "no such payment_method", "payment_method")
			return
		}
		c = pm.card
	}
	ch := charge{ID: newID("ch_"), Object: "charge", Amount: req.amount, Currency: strings.ToLower(req.currency),
		Status: "succeeded", Paid: true, PaymentMethod: req.paymentMethod, Card: c.public(), Created: p.now().Unix()}
	ce := checkCard(c)
	if ce != nil {
		ch.Status, ch.Paid, ch.FailureCode = "failed", false, ce.code
	}
	p.record(received{ID: ch.ID, ReceivedAt: p.now().UTC(), Status: ch.Status, FailureCode: ch.FailureCode,
		Amount: ch.Amount, Currency: ch.Currency, Card: c, PaymentMethod: req.paymentMethod,
		ContentType: r.Header.Get("Content-Type"), Body: string(body)})
	if ce != nil {
		writeJSON(w, http.StatusPaymentRequired, errorBody{Error: apiError{Type: "card_error", Code: ce.code,
			Message: ce.msg, Charge: ch.ID, DeclineCard: &ch.Card}})
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

// readRequest reads and parses a /v1 body; on failure it has answered.
func readRequest(w http.ResponseWriter, r *http.Request) ([]byte, request, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "body_too_large", "the body is too large", "")
			return nil, request{}, false
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", "body_unreadable", "cannot read the body", "")
		return nil, request{}, false
	}
	req, err := parseRequest(r.Header.Get("Content-Type"), body)
	if err != nil {
		var pe *paramError
		if errors.As(err, &pe) {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", pe.msg, pe.param)
		} else {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid", err.Error(), "")
		}
		return nil, request{}, false
	}
	return body, req, true
}

// record keeps a charge, forgetting the oldest beyond maxCharges.
func (p *provider) record(c received) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.charges) == maxCharges {
		copy(p.charges, p.charges[1:])
		p.charges = p.charges[:maxCharges-1]
	}
	p.charges = append(p.charges, c)
}

// listCharges shows the charges as received, newest first.
func (p *provider) listCharges(w http.ResponseWriter, _ *http.Request) {
	p.mu.Lock()
	out := make([]received, len(p.charges))
	for i, c := range p.charges {
		out[len(out)-1-i] = c
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Charges []received `json:"charges"`
	}{out})
}

// newID returns prefix followed by 16 random lower-case base32 characters.
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// brand names the card network from the number's leading digits.
func brand(n string) string {
	p := func(k int) int {
		if len(n) < k {
			return -1
		}
		v, err := strconv.Atoi(n[:k])
		if err != nil {
			return -1
		}
		return v
	}
	switch {
	case p(1) == 4:
		return "visa"
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720:
		return "mastercard"
	case p(2) == 34, p(2) == 37:
		return "amex"
	case p(4) == 6011, p(2) == 65, p(3) >= 644 && p(3) <= 649:
		return "discover"
	}
	return "unknown"
}

// last4 returns the last four characters of n, or n if shorter.
func last4(n string) string {
	if len(n) <= 4 {
		return n
	}
	return n[len(n)-4:]
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func allLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return s != ""
}

// luhnValid reports whether the digit string passes the Luhn check.
func luhnValid(n string) bool {
	sum, double := 0, false
	for i := len(n) - 1; i >= 0; i-- {
		d := int(n[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// apiError is the body of every refusal, in the shape card processors use.
type apiError struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	// Charge is the id of a declined charge.
	Charge string `json:"charge,omitempty"`
	// DeclineCard is the card of a declined charge, as shown to clients.
	DeclineCard *cardOut `json:"card,omitempty"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

func writeError(w http.ResponseWriter, status int, typ, code, msg, param string) {
	writeJSON(w, status, errorBody{Error: apiError{Type: typ, Code: code, Message: msg, Param: param}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Show bodies as sent: "&", not "\u0026".
	enc.SetEscapeHTML(false)
	// The client may have gone; there is nothing to do about an error.
	_ = enc.Encode(v)
}
