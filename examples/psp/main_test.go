package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

const testKey = "sk_test_unit"

func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newProvider(testKey).routes())
	t.Cleanup(srv.Close)
	return srv
}

// call sends a /v1 request with the test key (auth "" sends none).
func call(t *testing.T, srv *httptest.Server, path, auth, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
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

func charges(t *testing.T, srv *httptest.Server) []received {
	t.Helper()
	resp, err := http.Get(srv.URL + "/charges")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /charges: status %d", resp.StatusCode)
	}
	var got struct{ Charges []received }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got.Charges
}

const (
	bearer  = "Bearer " + testKey
	form    = "application/x-www-form-urlencoded"
	jsonCT  = "application/json"
	visa    = "4242424242424242"
	visaCVC = "737"
)

func TestChargeSucceedsAndShowsLast4Only(t *testing.T) {
	tests := []struct {
		name, contentType, body string
	}{
		{"form", form, "amount=4999&currency=EUR&card%5Bnumber%5D=" + visa + "&card[cvc]=" + visaCVC + "&card[exp_month]=12&card[exp_year]=2030"},
		{"json", jsonCT, `{"amount": 4999, "currency": "eur", "source": {"card": {"number": "` + visa + `", "cvc": ` + visaCVC + `, "exp_month": 12, "exp_year": 2030}}}`},
		{"json number kept exact", jsonCT + "; charset=utf-8", `{"amount":4999,"currency":"eur","source":{"card":{"number":` + visa + `,"cvc":"` + visaCVC + `","exp_month":12,"exp_year":2030}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			status, b := call(t, srv, "/v1/charges", bearer, tt.contentType, tt.body)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, b)
			}
			// The code as a value of its own: "created" may hold its digits.
			if strings.Contains(string(b), visa) || regexp.MustCompile(`[^0-9]`+visaCVC+`[^0-9]`).Match(b) {
				t.Errorf("the answer shows the card number or the security code: %s", b)
			}
			var ch charge
			if err := json.Unmarshal(b, &ch); err != nil {
				t.Fatal(err)
			}
			want := cardOut{Brand: "visa", Last4: "4242", ExpMonth: 12, ExpYear: 2030, CVCCheck: "pass"}
			if !strings.HasPrefix(ch.ID, "ch_") || ch.Status != "succeeded" || !ch.Paid || ch.Amount != 4999 || ch.Currency != "eur" || ch.Card != want {
				t.Errorf("charge = %+v, want a succeeded 4999 eur charge on %+v", ch, want)
			}
			got := charges(t, srv)
			if len(got) != 1 {
				t.Fatalf("got %d charges, want 1", len(got))
			}
			rc := got[0]
			if rc.ID != ch.ID || rc.Card.Number != visa || rc.Card.CVC != visaCVC || rc.Body != tt.body || rc.ContentType != tt.contentType || rc.Status != "succeeded" {
				t.Errorf("received = %+v, want the charge with the whole card, as sent", rc)
			}
		})
	}
}

func TestChargeDeclines(t *testing.T) {
	tests := []struct {
		name, number, cvc, code string
	}{
		{"token (fails luhn)", "4242420000004243", "", "incorrect_number"},
		{"letters", "tok_abc", "", "incorrect_number"},
		{"too short", "42424242", "", "incorrect_number"},
		{"bad cvc", visa, "12", "invalid_cvc"},
		{"test card", declinedCard, "123", "card_declined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			body := "amount=100&currency=usd&card[number]=" + tt.number + "&card[cvc]=" + tt.cvc
			status, b := call(t, srv, "/v1/charges", bearer, form, body)
			if status != http.StatusPaymentRequired {
				t.Fatalf("status %d, want 402: %s", status, b)
			}
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatal(err)
			}
			if e.Error.Type != "card_error" || e.Error.Code != tt.code || e.Error.Charge == "" {
				t.Errorf("error = %+v, want card_error %s with the charge id", e.Error, tt.code)
			}
			got := charges(t, srv)
			if len(got) != 1 || got[0].Status != "failed" || got[0].FailureCode != tt.code || got[0].Card.Number != tt.number {
				t.Errorf("received = %+v, want the failed charge recorded", got)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	good := "amount=100&currency=usd&card[number]=" + visa
	tests := []struct {
		name, auth, contentType, body string
		want                          int
		code                          string
	}{
		{"no key", "", form, good, 401, "invalid_api_key"},
		{"wrong key", "Bearer sk_test_other", form, good, 401, "invalid_api_key"},
		{"basic auth", "Basic c2tfdGVzdF91bml0Og==", form, good, 401, "invalid_api_key"},
		{"no amount", bearer, form, "currency=usd&card[number]=" + visa, 400, "parameter_missing"},
		{"zero amount", bearer, form, "amount=0&currency=usd&card[number]=" + visa, 400, "parameter_invalid_integer"},
		{"fractional amount", bearer, jsonCT, `{"amount": 1.5, "currency": "usd", "source": {"card": {"number": "` + visa + `"}}}`, 400, "parameter_invalid"},
		{"bad currency", bearer, form, "amount=1&currency=us&card[number]=" + visa, 400, "parameter_invalid"},
		{"no card", bearer, form, "amount=1&currency=usd", 400, "parameter_missing"},
		{"card and payment method", bearer, form, good + "&payment_method=pm_x", 400, "parameter_invalid"},
		{"unknown payment method", bearer, form, "amount=1&currency=usd&payment_method=pm_nope", 404, "resource_missing"},
		{"broken json", bearer, jsonCT, `{"amount":`, 400, "parameter_invalid"},
		{"number is an object", bearer, jsonCT, `{"amount":1,"currency":"usd","source":{"card":{"number":{}}}}`, 400, "parameter_invalid"},
		{"text", bearer, "text/plain", good, 400, "parameter_invalid"},
		{"no content type", bearer, "", good, 400, "parameter_invalid"},
		{"too large", bearer, form, good + "&pad=" + strings.Repeat("x", maxBody), 413, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			status, b := call(t, srv, "/v1/charges", tt.auth, tt.contentType, tt.body)
			var e errorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("status %d, body %s: %v", status, b, err)
			}
			if status != tt.want || e.Error.Code != tt.code {
				t.Errorf("status %d code %q, want %d %q: %s", status, e.Error.Code, tt.want, tt.code, b)
			}
			if got := charges(t, srv); len(got) != 0 {
				t.Errorf("a refused request was recorded as a charge: %+v", got)
			}
		})
	}
}

func TestPaymentMethodThenCharge(t *testing.T) {
	srv := newServer(t)
	status, b := call(t, srv, "/v1/payment_methods", bearer, jsonCT,
		`{"source":{"card":{"number":"5555555555554444","cvc":"123","exp_month":1,"exp_year":2031}}}`)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, b)
	}
	if strings.Contains(string(b), "5555555555554444") {
		t.Errorf("the answer shows the card number: %s", b)
	}
	var pm paymentMethod
	if err := json.Unmarshal(b, &pm); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pm.ID, "pm_") || pm.Card.Brand != "mastercard" || pm.Card.Last4 != "4444" {
		t.Fatalf("payment method = %+v", pm)
	}
	status, b = call(t, srv, "/v1/charges", bearer, form, "amount=250&currency=gbp&payment_method="+pm.ID)
	if status != http.StatusOK {
		t.Fatalf("charge: status %d: %s", status, b)
	}
	got := charges(t, srv)
	if len(got) != 1 || got[0].PaymentMethod != pm.ID || got[0].Card.Number != "5555555555554444" || got[0].Currency != "gbp" {
		t.Errorf("received = %+v, want the charge on the stored card", got)
	}
	// A payment method is no charge; a token is no card.
	status, b = call(t, srv, "/v1/payment_methods", bearer, form, "card[number]=5555550000004445")
	if status != http.StatusPaymentRequired || !strings.Contains(string(b), "incorrect_number") {
		t.Errorf("payment method with a token: status %d: %s", status, b)
	}
}

func TestChargesKeepsTheLastHundredNewestFirst(t *testing.T) {
	srv := newServer(t)
	const n = maxCharges + 5
	for i := range n {
		body := fmt.Sprintf("amount=%d&currency=eur&card[number]=%s", i+1, visa)
		if status, b := call(t, srv, "/v1/charges", bearer, form, body); status != http.StatusOK {
			t.Fatalf("charge %d: status %d: %s", i, status, b)
		}
	}
	got := charges(t, srv)
	if len(got) != maxCharges {
		t.Fatalf("got %d charges, want %d", len(got), maxCharges)
	}
	if got[0].Amount != n || got[len(got)-1].Amount != n-maxCharges+1 {
		t.Errorf("amounts from %d to %d, want %d to %d", got[0].Amount, got[len(got)-1].Amount, n, n-maxCharges+1)
	}
}

func TestAPIKey(t *testing.T) {
	for env, want := range map[string]string{
		"":                      defaultAPIKey,
		"sk_test_x":             "sk_test_x",
		"Bearer sk_test_x":      "sk_test_x",
		"bearer  sk_test_x \n":  "sk_test_x",
		"  Bearer sk_test_demo": "sk_test_demo",
	} {
		if got := apiKey(env); got != want {
			t.Errorf("apiKey(%q) = %q, want %q", env, got, want)
		}
	}
}

func TestBrand(t *testing.T) {
	for n, want := range map[string]string{
		"4242424242424242": "visa",
		"5555555555554444": "mastercard",
		"2223003122003222": "mastercard",
		"378282246310005":  "amex",
		"6011111111111117": "discover",
		"6445644564456445": "discover",
		"3566002020360505": "unknown",
		"":                 "unknown",
	} {
		if got := brand(n); got != want {
			t.Errorf("brand(%s) = %s, want %s", n, got, want)
		}
	}
}

func TestMethodsAndPaths(t *testing.T) {
	srv := newServer(t)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/charges", http.StatusMethodNotAllowed},
		{"POST", "/charges", http.StatusMethodNotAllowed},
		{"GET", "/nope", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}
