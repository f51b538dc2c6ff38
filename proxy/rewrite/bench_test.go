package rewrite

import (
	"strings"
	"testing"
)

// The benchmarks build rewriters as the inbound proxy does (ReadAll).

// checkout300 is a typical ~300-byte checkout body with two card fields.
var checkout300 = []byte(`{"order_id":"ord_8f2c91","customer":{"name":"Jenny Rosen","email":"jenny@example.com"},` +
	`"card":{"number":"4111111111111111","exp_month":12,"exp_year":2030,"cvc":"123"},` +
	`"amount":1999,"currency":"eur","items":[{"sku":"A-1","qty":2},{"sku":"B-2","qty":1}],` +
	`"shipping":{"line1":"510 Townsend St","city":"San Francisco","postal_code":"94103"}}`)

func BenchmarkRewriteCheckout(b *testing.B) {
	r, err := New(Config{Fields: []Field{{JSON: "card.number"}, {JSON: "card.cvc", Spec: 1}}, ReadAll: true})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(checkout300)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Rewrite(checkout300, ctJSON, nines); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGuardOnly(b *testing.B) {
	r, err := New(Config{ReadAll: true})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Replace(string(checkout300), "4111111111111111", "4111119876541111", 1))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Rewrite(body, ctJSON, nines); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRewriteForm(b *testing.B) {
	r, err := New(Config{Fields: []Field{{Form: "card[number]"}, {Form: "card[cvc]", Spec: 1}}, ReadAll: true})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte("type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2030&card[cvc]=314&billing_details[name]=Jenny+Rosen")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Rewrite(body, ctForm, nines); err != nil {
			b.Fatal(err)
		}
	}
}
