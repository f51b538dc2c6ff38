// Command merchant is the demo merchant app that tok fronts: a shop with a
// checkout endpoint that records exactly what it received, so that a person
// can see a token arrive where the shopper sent a card number.
//
// Usage:
//
//	go run ./examples/merchant [-addr 127.0.0.1:3000]
//
// Endpoints:
//
//	POST /checkout  JSON ({"card": {"number": ..., "cvc": ...}, ...}) or a form
//	                (card[number]=...&card[cvc]=...); answers
//	                {"order_id": "...", "card": {"number": "<what it received>"}}
//	GET  /orders    the last 100 orders as received, newest first
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
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxOrders is how many orders the app remembers.
	maxOrders = 100
	// maxBody caps a checkout body.
	maxBody = 1 << 20
)

func main() {
	addr := flag.String("addr", "127.0.0.1:3000", "listen `address` (host:port)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "merchant: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr); err != nil {
		log.Fatalf("merchant: %v", err)
	}
}

// run serves the app on addr until ctx is done, then drains.
func run(ctx context.Context, addr string) error {
	srv := &http.Server{
		Addr:              addr,
		Handler:           newApp().routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("merchant: listening on http://%s (POST /checkout, GET /orders)", addr)
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
	// Body is the request body exactly as received.
	Body string `json:"body"`
}

// app is the merchant application: its routes and its order book.
type app struct {
	mu     sync.Mutex
	orders []order // oldest first, at most maxOrders
	seq    int
	now    func() time.Time
}

func newApp() *app { return &app{now: time.Now} }

// routes returns the app's HTTP handler.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /checkout", a.checkout)
	mux.HandleFunc("GET /orders", a.listOrders)
	return mux
}

// checkout records the order and answers with what the app received.
//
// This is where a real shop would charge the card: it would send the
// token it received to its payment provider through tok's egress listener,
// which swaps the card number back in on the way out. A charge step belongs
// between parsing and answering, after the order is recorded.
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
	c, err := parseCard(ct, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	o := a.record(ct, c, body)
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

// record stores an order, forgetting the oldest beyond maxOrders.
func (a *app) record(contentType string, c card, body []byte) order {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	o := order{
		ID:          fmt.Sprintf("ord_%06d", a.seq),
		ReceivedAt:  a.now().UTC(),
		ContentType: contentType,
		Card:        c,
		Body:        string(body),
	}
	if len(a.orders) == maxOrders {
		copy(a.orders, a.orders[1:])
		a.orders = a.orders[:maxOrders-1]
	}
	a.orders = append(a.orders, o)
	return o
}

// parseCard reads card.number and card.cvc from a JSON body, or
// card[number] and card[cvc] from a form body.
func parseCard(contentType string, body []byte) (card, error) {
	media, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return card{}, fmt.Errorf("bad content type: %w", err)
	}
	switch {
	case media == "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return card{}, fmt.Errorf("bad form body: %w", err)
		}
		c := card{Number: v.Get("card[number]"), CVC: v.Get("card[cvc]")}
		if c.Number == "" {
			return card{}, errors.New("card[number] is required")
		}
		return c, nil
	case media == "application/json", strings.HasSuffix(media, "+json"), media == "":
		var req struct {
			Card struct {
				Number json.RawMessage `json:"number"`
				CVC    json.RawMessage `json:"cvc"`
			} `json:"card"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return card{}, fmt.Errorf("bad JSON body: %w", err)
		}
		number, err := scalar(req.Card.Number)
		if err != nil || number == "" {
			return card{}, errors.New("card.number is required: a string or a number")
		}
		cvc, err := scalar(req.Card.CVC)
		if err != nil {
			return card{}, errors.New("card.cvc must be a string or a number")
		}
		return card{Number: number, CVC: cvc}, nil
	}
	return card{}, fmt.Errorf("unsupported content type %q: send JSON or a form", media)
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
