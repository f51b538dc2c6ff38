package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newApp().routes())
	t.Cleanup(srv.Close)
	return srv
}

type checkoutReply struct {
	OrderID string `json:"order_id"`
	Card    card   `json:"card"`
}

func post(t *testing.T, srv *httptest.Server, contentType, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/checkout", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func orders(t *testing.T, srv *httptest.Server) []order {
	t.Helper()
	resp, err := http.Get(srv.URL + "/orders")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /orders: status %d", resp.StatusCode)
	}
	var got struct{ Orders []order }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got.Orders
}

func TestCheckoutRecordsWhatItReceived(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		number, cvc             string
	}{
		{"json string", "application/json", `{"card": {"number": "4111119876541111", "cvc": "123"}, "amount": 4999}`, "4111119876541111", "123"},
		{"json number kept exact", "application/json; charset=utf-8", `{"card":{"number":4111119876541111}}`, "4111119876541111", ""},
		{"form", "application/x-www-form-urlencoded", "card%5Bnumber%5D=4111119876541111&card%5Bcvc%5D=987&amount=10", "4111119876541111", "987"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			status, b := post(t, srv, tt.contentType, tt.body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, b)
			}
			var reply checkoutReply
			if err := json.Unmarshal(b, &reply); err != nil {
				t.Fatal(err)
			}
			if reply.OrderID == "" || reply.Card.Number != tt.number || reply.Card.CVC != tt.cvc {
				t.Errorf("reply = %+v, want number %q cvc %q", reply, tt.number, tt.cvc)
			}
			got := orders(t, srv)
			if len(got) != 1 {
				t.Fatalf("got %d orders, want 1", len(got))
			}
			o := got[0]
			if o.ID != reply.OrderID || o.Card != reply.Card || o.Body != tt.body || o.ContentType != tt.contentType {
				t.Errorf("order = %+v, want the checkout exactly as sent", o)
			}
		})
	}
}

func TestCheckoutRefusesBadRequests(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		want                    int
	}{
		{"no card", "application/json", `{"amount": 1}`, http.StatusBadRequest},
		{"card number is an object", "application/json", `{"card": {"number": {}}}`, http.StatusBadRequest},
		{"broken json", "application/json", `{"card":`, http.StatusBadRequest},
		{"form without number", "application/x-www-form-urlencoded", "amount=1", http.StatusBadRequest},
		{"other content type", "text/plain", "4111119876541111", http.StatusBadRequest},
		{"too large", "application/json", `{"pad":"` + strings.Repeat("x", maxBody) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			if status, b := post(t, srv, tt.contentType, tt.body); status != tt.want {
				t.Errorf("status %d, want %d: %s", status, tt.want, b)
			}
			if got := orders(t, srv); len(got) != 0 {
				t.Errorf("a refused checkout was recorded: %+v", got)
			}
		})
	}
}

func TestOrdersKeepsTheLastHundredNewestFirst(t *testing.T) {
	srv := newServer(t)
	const n = maxOrders + 5
	for i := range n {
		body := fmt.Sprintf(`{"card":{"number":"%016d"}}`, i)
		if status, b := post(t, srv, "application/json", body); status != http.StatusOK {
			t.Fatalf("checkout %d: status %d: %s", i, status, b)
		}
	}
	got := orders(t, srv)
	if len(got) != maxOrders {
		t.Fatalf("got %d orders, want %d", len(got), maxOrders)
	}
	if want := fmt.Sprintf("%016d", n-1); got[0].Card.Number != want {
		t.Errorf("newest order has number %q, want %q", got[0].Card.Number, want)
	}
	if want := fmt.Sprintf("%016d", n-maxOrders); got[len(got)-1].Card.Number != want {
		t.Errorf("oldest order has number %q, want %q", got[len(got)-1].Card.Number, want)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	srv := newServer(t)
	resp, err := http.Get(srv.URL + "/checkout")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /checkout: status %d, want 405", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: status %d, want 404", resp.StatusCode)
	}
}

// fakeEgress stands in for tok's egress listener: it records each request
// and answers with status and body.
type fakeEgress struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	form         url.Values
}

func newFakeEgress(t *testing.T, status int, body string) *fakeEgress {
	t.Helper()
	f := &fakeEgress{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(b))
		if err != nil {
			t.Errorf("egress got a body that is not a form: %q", b)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.Header.Clone(), form})
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeEgress) got() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// newCharging returns the app, charging through egress with key, behind a
// test server.
func newCharging(t *testing.T, egress, key string) *httptest.Server {
	t.Helper()
	a := newApp()
	if err := a.setEgress(egress, key); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	return srv
}

func chargeOrder(t *testing.T, srv *httptest.Server, id string) (int, order) {
	t.Helper()
	resp, err := http.Post(srv.URL+"/orders/"+id+"/charge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o order
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &o); err != nil {
		t.Fatalf("charge: status %d, body %s: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, o
}

const pspCharge = `{"id":"ch_abc","object":"charge","amount":1250,"currency":"usd","status":"succeeded","paid":true,"card":{"brand":"visa","last4":"4242"}}`

func TestChargeSendsTheTokensThroughEgress(t *testing.T) {
	eg := newFakeEgress(t, http.StatusOK, pspCharge)
	srv := newCharging(t, eg.URL+"/psp/", "the-egress-key")
	status, b := post(t, srv, "application/json", `{"card":{"number":"4242420000004243","cvc":"519"},"amount":1250,"currency":"usd"}`)
	if status != http.StatusOK {
		t.Fatalf("checkout: status %d: %s", status, b)
	}
	var reply checkoutReply
	if err := json.Unmarshal(b, &reply); err != nil {
		t.Fatal(err)
	}
	status, o := chargeOrder(t, srv, reply.OrderID)
	if status != http.StatusOK {
		t.Fatalf("charge: status %d, order %+v", status, o)
	}
	reqs := eg.got()
	if len(reqs) != 1 {
		t.Fatalf("egress got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != "POST" || r.path != "/psp/v1/charges" {
		t.Errorf("egress got %s %s, want POST /psp/v1/charges", r.method, r.path)
	}
	if got := r.header.Get("X-Tok-Egress-Key"); got != "the-egress-key" {
		t.Errorf("X-Tok-Egress-Key = %q", got)
	}
	if got := r.header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := r.header.Get("Authorization"); got != "" {
		t.Errorf("the app sent Authorization %q; the provider's key is tok's to add", got)
	}
	want := url.Values{"amount": {"1250"}, "currency": {"usd"}, "card[number]": {"4242420000004243"},
		"card[cvc]": {"519"}, "metadata[order_id]": {reply.OrderID}}
	if r.form.Encode() != want.Encode() {
		t.Errorf("egress got form %v, want %v", r.form, want)
	}
	if o.Charge == nil || !o.Charge.Paid || o.Charge.HTTPStatus != 200 || compact(t, o.Charge.Response) != pspCharge {
		t.Errorf("charge = %+v, want the provider's answer, paid", o.Charge)
	}
	if got := orders(t, srv); len(got) != 1 || got[0].Charge == nil || !got[0].Charge.Paid {
		t.Errorf("orders = %+v, want the charge recorded", got)
	}
	// Paid is paid: a second charge is refused before reaching egress.
	resp, err := http.Post(srv.URL+"/orders/"+reply.OrderID+"/charge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || len(eg.got()) != 1 {
		t.Errorf("second charge: status %d, egress requests %d; want 409 and 1", resp.StatusCode, len(eg.got()))
	}
}

func TestChargeDefaultsAndForm(t *testing.T) {
	eg := newFakeEgress(t, http.StatusOK, pspCharge)
	srv := newCharging(t, eg.URL, "")
	if status, b := post(t, srv, "application/x-www-form-urlencoded", "card%5Bnumber%5D=4242420000004243"); status != http.StatusOK {
		t.Fatalf("checkout: status %d: %s", status, b)
	}
	if status, o := chargeOrder(t, srv, "ord_000001"); status != http.StatusOK {
		t.Fatalf("charge: status %d, order %+v", status, o)
	}
	r := eg.got()[0]
	if r.path != "/v1/charges" || r.header.Get("X-Tok-Egress-Key") != "" {
		t.Errorf("egress got %s with key %q, want /v1/charges and no key", r.path, r.header.Get("X-Tok-Egress-Key"))
	}
	if r.form.Get("amount") != "4999" || r.form.Get("currency") != "eur" || r.form.Has("card[cvc]") {
		t.Errorf("egress got form %v, want the default amount and currency, and no card[cvc]", r.form)
	}
}

func TestChargeRecordsRefusals(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantStatus int
	}{
		{"declined", http.StatusPaymentRequired, `{"error":{"type":"card_error","code":"card_declined"}}`, http.StatusPaymentRequired},
		{"tok refused", http.StatusUnprocessableEntity, `{"error":"unknown_token"}`, http.StatusBadGateway},
		{"not json", http.StatusBadGateway, "bad gateway", http.StatusBadGateway},
		{"200 but failed", http.StatusOK, `{"status":"failed"}`, http.StatusBadGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eg := newFakeEgress(t, tt.status, tt.body)
			srv := newCharging(t, eg.URL, "k")
			post(t, srv, "application/json", `{"card":{"number":"4242420000004243"}}`)
			status, o := chargeOrder(t, srv, "ord_000001")
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d", status, tt.wantStatus)
			}
			if o.Charge == nil || o.Charge.Paid || o.Charge.HTTPStatus != tt.status {
				t.Fatalf("charge = %+v, want the refusal recorded, unpaid", o.Charge)
			}
			// JSON is kept as JSON, anything else as a JSON string.
			want, _ := json.Marshal(tt.body)
			if json.Valid([]byte(tt.body)) {
				want = []byte(tt.body)
			}
			if got := compact(t, o.Charge.Response); got != string(want) {
				t.Errorf("response = %s, want %s", got, want)
			}
			// Unpaid: it may be charged again.
			if _, o := chargeOrder(t, srv, "ord_000001"); len(eg.got()) != 2 || o.ID != "ord_000001" {
				t.Errorf("a retried charge did not reach egress")
			}
		})
	}
}

func TestChargeFailures(t *testing.T) {
	srv := newServer(t) // no egress
	post(t, srv, "application/json", `{"card":{"number":"4242420000004243"}}`)
	resp, err := http.Post(srv.URL+"/orders/ord_000001/charge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("charge without -egress: status %d, want 503", resp.StatusCode)
	}

	eg := newFakeEgress(t, 200, pspCharge)
	srv = newCharging(t, eg.URL, "")
	resp, err = http.Post(srv.URL+"/orders/ord_999999/charge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || len(eg.got()) != 0 {
		t.Errorf("charge of an unknown order: status %d, want 404 and nothing sent", resp.StatusCode)
	}

	eg.Close() // tok is down
	post(t, srv, "application/json", `{"card":{"number":"4242420000004243"}}`)
	resp, err = http.Post(srv.URL+"/orders/ord_000001/charge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("charge with egress down: status %d, want 502", resp.StatusCode)
	}
	if got := orders(t, srv); len(got) != 1 || got[0].Charge != nil {
		t.Errorf("orders = %+v, want no charge recorded", got)
	}
}

func TestGetOrder(t *testing.T) {
	srv := newServer(t)
	post(t, srv, "application/json", `{"card":{"number":"4242420000004243"},"amount":"700","currency":"gbp"}`)
	resp, err := http.Get(srv.URL + "/orders/ord_000001")
	if err != nil {
		t.Fatal(err)
	}
	var o order
	err = json.NewDecoder(resp.Body).Decode(&o)
	resp.Body.Close()
	if err != nil || o.ID != "ord_000001" || o.Amount != 700 || o.Currency != "gbp" {
		t.Errorf("GET /orders/ord_000001 = %+v (%v)", o, err)
	}
	resp, err = http.Get(srv.URL + "/orders/ord_000002")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET an unknown order: status %d, want 404", resp.StatusCode)
	}
}

func TestSetEgress(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8081/psp":     true,
		"https://tok.internal/psp/":     true,
		"127.0.0.1:8081/psp":            false,
		"ftp://127.0.0.1/psp":           false,
		"http:///psp":                   false,
		"http://127.0.0.1:8081/psp?x=1": false,
		"http://u:p@127.0.0.1:8081":     false,
	} {
		if err := newApp().setEgress(raw, ""); (err == nil) != ok {
			t.Errorf("setEgress(%q) = %v, want ok %v", raw, err, ok)
		}
	}
}

// compact returns JSON without insignificant space.
func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return buf.String()
}
