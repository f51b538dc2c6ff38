package rewrite

import (
	"fmt"
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

// checkoutXML is checkout300 as XML (without the shipping address, which
// XML's closing tags make too long), padded to the same length, so that
// BenchmarkRewriteCheckoutXML compares with BenchmarkRewriteCheckout byte
// for byte.
var checkoutXML = func() []byte {
	b := `<order id="ord_8f2c91"><customer><name>Jenny Rosen</name><email>jenny@example.com</email></customer>` +
		`<card><number>4111111111111111</number><exp-month>12</exp-month><exp-year>2030</exp-year><cvc>123</cvc></card>` +
		`<amount>1999</amount><currency>eur</currency><items><item sku="A-1" qty="2"/><item sku="B-2" qty="1"/></items></order>`
	if len(b) > len(checkout300) {
		panic(fmt.Sprintf("checkoutXML is %d bytes, checkout300 %d", len(b), len(checkout300)))
	}
	return []byte(strings.Replace(b, "<order ", "<order "+strings.Repeat(" ", len(checkout300)-len(b)), 1))
}()

func BenchmarkRewriteCheckoutXML(b *testing.B) {
	r, err := New(Config{Fields: []Field{{XML: "/order/card/number"}, {XML: "/order/card/cvc", Spec: 1}}, ReadAll: true})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(checkoutXML)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Rewrite(checkoutXML, ctXML, nines); err != nil {
			b.Fatal(err)
		}
	}
}
