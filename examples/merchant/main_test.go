package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
