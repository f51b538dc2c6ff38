// Command merchant is the demo merchant app that tok fronts: a shop with a
// checkout endpoint that records exactly what it received, so that a person
// can see a token arrive where the shopper sent a card number, and a charge
// endpoint that pays for an order through tok's egress listener, so that the
// payment provider gets the card the app never held.
//
// Usage:
//
//	go run ./examples/merchant [-addr 127.0.0.1:3000] \
//	    [-egress http://127.0.0.1:8081/psp] [-egress-key KEY]
//
// Endpoints:
//
//	POST /checkout            JSON ({"card": {"number": ..., "cvc": ...},
//	                          "amount": 4999, "currency": "eur"}) or a form
//	                          (card[number]=...&card[cvc]=...&amount=...);
//	                          answers {"order_id": "...", "card": {"number":
//	                          "<what it received>"}}. amount (minor units) and
//	                          currency are optional: 4999 and eur.
//	POST /orders/{id}/charge  charges the order: sends the card token and
//	                          security-code token it received, as a form, to
//	                          <egress>/v1/charges, and records the provider's
//	                          answer on the order. 200 when paid, 402 when the
//	                          provider declined, 502 for anything else.
//	GET  /orders/{id}         one order, with its charge
//	GET  /orders              the last 100 orders as received, newest first
//
// -egress is the URL of tok's egress listener followed by the egress route's
// path prefix; the app sends the egress key (-egress-key, or the environment
// variable TOK_EGRESS_KEY) in X-Tok-Egress-Key. The provider's API key is not
// the app's to hold: tok adds it on the way out.
//
// The app keeps orders in memory only. It never sees a real card number when
// tok is in front of it; run on its own, it stores whatever it is sent.
package main

import (
	"bytes"
	"context"
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
	// maxOrders is how many orders the app remembers.
	maxOrders = 100
	// maxBody caps a checkout body, and the provider's answer to a charge.
	maxBody = 1 << 20
	// defaultAmount and defaultCurrency are an order's when the checkout
	// names none.
	defaultAmount   = 4999
	defaultCurrency = "eur"
	// chargeTimeout bounds one charge, tok and the provider included.
	chargeTimeout = 20 * time.Second
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen `address` (host:port)")
	egress := flag.String("egress", "", "`URL` of tok's egress listener and route prefix, e.g. http://127.0.0.1:8081/psp (empty: orders cannot be charged)")
	egressKey := flag.String("egress-key", os.Getenv("TOK_EGRESS_KEY"), "`key` sent in X-Tok-Egress-Key (default: $TOK_EGRESS_KEY)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "merchant: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	a := newApp()
	if *egress != "" {
		if err := a.setEgress(*egress, *egressKey); err != nil {
			fmt.Fprintf(os.Stderr, "merchant: -egress: %v\n", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, a); err != nil {
		log.Fatalf("merchant: %v", err)
	}
}

// run serves a on addr until ctx is done, then drains.
func run(ctx context.Context, addr string, a *app) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           a.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	charge := "orders cannot be charged: no -egress"
	if a.egress != "" {
		charge = "charging through " + a.egress
	}
	log.Printf("merchant: listening on http://%s (POST /checkout, POST /orders/{id}/charge, GET /orders); %s", addr, charge)
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

// card is the card data the app received, as it received it: a token when
// tok is in front, whatever the client sent otherwise.
type card struct {
	Number string `json:"number"`
	CVC    string `json:"cvc,omitempty"`
}

// order is one checkout as the app received it.
type order struct {
	ID          string    `json:"order_id"`
	ReceivedAt  time.Time `json:"received_at"`
	ContentType string    `json:"content_type"`
	Card        card      `json:"card"`
	Amount      int64     `json:"amount"`
	Currency    string    `json:"currency"`
	// Body is the request body exactly as received.
	Body string `json:"body"`
	// CardHeaders are the Tok-Card-* headers the checkout came with: tok
	// sets them on a route with card_headers (and drops any a shopper
	// sends), so the shop can show "Visa ending 1111" without a card.
	CardHeaders map[string]string `json:"card_headers,omitempty"`
	// Charge is the latest attempt to charge the order, if any.
	Charge *chargeRecord `json:"charge,omitempty"`

	charging bool // a charge is on its way
}

// chargeRecord is the payment provider's answer to a charge, as the app
// got it back through tok.
type chargeRecord struct {
	At time.Time `json:"at"`
	// HTTPStatus is the answer's status: the provider's, or tok's when tok
	// refused to forward the charge.
	HTTPStatus int  `json:"http_status"`
	Paid       bool `json:"paid"`
	// Response is the answer's body: JSON as sent, anything else as a
	// JSON string.
	Response json.RawMessage `json:"response"`
}

// app is the merchant application: its routes, its order book and where
// it sends charges.
type app struct {
	mu     sync.Mutex
	orders []order // oldest first, at most maxOrders
	seq    int
	now    func() time.Time

	egress    string // tok's egress URL and route prefix, no trailing "/"; "" if none
	egressKey string
	client    *http.Client
}

func newApp() *app {
	return &app{now: time.Now, client: &http.Client{Timeout: chargeTimeout}}
}

// setEgress makes the app charge orders through tok's egress listener at
// rawURL (an http or https URL with the route's path prefix), sending key
// in X-Tok-Egress-Key unless it is empty.
func (a *app) setEgress(rawURL, key string) error {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("%q: want an http or https URL with a host, e.g. http://127.0.0.1:8081/psp", rawURL)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("%q: want no query, fragment or credentials", rawURL)
	}
	a.egress, a.egressKey = strings.TrimSuffix(u.String(), "/"), key
	return nil
}

// routes returns the app's HTTP handler.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", a.checkout)
	mux.HandleFunc("POST /orders/{id}/charge", a.charge)
	mux.HandleFunc("GET /orders/{id}", a.getOrder)
	mux.HandleFunc("GET /orders", a.listOrders)
	return mux
}

// checkout records the order and answers with what the app received. It
// does not charge: POST /orders/{id}/charge does, so that the demo shows
// the token arrive before the card leaves.
func (a *app) checkout(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read body")
		return
	}
	ct := r.Header.Get("Content-Type")
	co, err := parseCheckout(ct, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o := a.record(ct, co, body, cardHeaders(r.Header))
	writeJSON(w, http.StatusOK, struct {
		OrderID string `json:"order_id"`
		Card    card   `json:"card"`
	}{o.ID, o.Card})
}

// listOrders shows the orders as received, newest first.
func (a *app) listOrders(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	out := make([]order, len(a.orders))
	for i, o := range a.orders {
		out[len(out)-1-i] = o
	}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, struct {
		Orders []order `json:"orders"`
	}{out})
}

// getOrder shows one order.
func (a *app) getOrder(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	o, ok := a.find(r.PathValue("id"))
	var out order
	if ok {
		out = *o
	}
	a.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "no such order")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// find returns the order with id. The caller holds a.mu.
func (a *app) find(id string) (*order, bool) {
	for i := range a.orders {
		if a.orders[i].ID == id {
			return &a.orders[i], true
		}
	}
	return nil, false
}

// record stores an order, forgetting the oldest beyond maxOrders.
func (a *app) record(contentType string, co checkoutData, body []byte, cardHeaders map[string]string) order {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	o := order{
		ID:          fmt.Sprintf("ord_%06d", a.seq),
		ReceivedAt:  a.now().UTC(),
		ContentType: contentType,
		Card:        co.card,
		Amount:      co.amount,
		Currency:    co.currency,
		Body:        string(body),
		CardHeaders: cardHeaders,
	}
	if len(a.orders) == maxOrders {
		copy(a.orders, a.orders[1:])
		a.orders = a.orders[:maxOrders-1]
	}
	a.orders = append(a.orders, o)
	return o
}

// cardHeaders returns h's Tok-Card-* headers, or nil if it has none.
func cardHeaders(h http.Header) map[string]string {
	var out map[string]string
	for name := range h {
		if strings.HasPrefix(name, "Tok-Card-") {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = h.Get(name)
		}
	}
	return out
}

// checkoutData is what the app reads from a checkout.
type checkoutData struct {
	card     card
	amount   int64
	currency string
}

// parseCheckout reads card.number, card.cvc, amount and currency from a
// JSON body, or card[number], card[cvc], amount and currency from a form
// body.
func parseCheckout(contentType string, body []byte) (checkoutData, error) {
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return checkoutData{}, fmt.Errorf("bad content type: %w", err)
	}
	var co checkoutData
	var amount string
	switch {
	case media == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return co, fmt.Errorf("bad form body: %w", err)
		}
		co.card = card{Number: v.Get("card[number]"), CVC: v.Get("card[cvc]")}
		if co.card.Number == "" {
			return co, errors.New("card[number] is required")
		}
		amount, co.currency = v.Get("amount"), v.Get("currency")
	case media == "application/json", strings.HasSuffix(media, "+json"), media == "":
		var req struct {
			Card struct {
				Number json.RawMessage `json:"number"`
				CVC    json.RawMessage `json:"cvc"`
			} `json:"card"`
			Amount   json.RawMessage `json:"amount"`
			Currency string          `json:"currency"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return co, fmt.Errorf("bad JSON body: %w", err)
		}
		number, err := scalar(req.Card.Number)
		if err != nil || number == "" {
			return co, errors.New("card.number is required: a string or a number")
		}
		cvc, err := scalar(req.Card.CVC)
		if err != nil {
			return co, errors.New("card.cvc must be a string or a number")
		}
		co.card = card{Number: number, CVC: cvc}
		if amount, err = scalar(req.Amount); err != nil {
			return co, errors.New("amount must be a whole number of the currency's minor unit")
		}
		co.currency = req.Currency
	default:
		return co, fmt.Errorf("unsupported content type %q: send JSON or a form", media)
	}
	co.amount = defaultAmount
	if amount != "" {
		n, err := strconv.ParseInt(amount, 10, 64)
		if err != nil || n <= 0 {
			return co, errors.New("amount must be a positive whole number of the currency's minor unit")
		}
		co.amount = n
	}
	if co.currency == "" {
		co.currency = defaultCurrency
	}
	return co, nil
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

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
