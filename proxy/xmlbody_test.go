package proxy

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// xmlOrder is the XML order the test app takes, as Braintree's API shapes
// a transaction.
func xmlOrder(pan, cvv, extra string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n<transaction>\n  <amount>10.00</amount>" + extra +
		"\n  <credit-card>\n    <number>" + pan + "</number>\n    <cvv>" + cvv + "</cvv>\n  </credit-card>\n</transaction>\n"
}

// xmlApp is a merchant app that parses the XML order it got (the body
// e's upstream recorded last) with encoding/xml and answers with the card
// fields it read.
func xmlApp(e **inboundEnv) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var tx struct {
			Card struct {
				Number string `xml:"number"`
				CVV    string `xml:"cvv"`
			} `xml:"credit-card"`
		}
		up := (*e).up
		if err := xml.Unmarshal(up.since(up.count() - 1)[0].Body, &tx); err != nil {
			http.Error(w, "bad xml", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "number=%s cvv=%s", tx.Card.Number, tx.Card.CVV)
	}
}

// TestInboundXMLFields: an inbound route with XML fields tokenizes the
// selected elements' text in place (the rest of the body byte for byte as
// sent), and refuses what the rewrite engine refuses, each with its code,
// before the app sees anything.
func TestInboundXMLFields(t *testing.T) {
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: 15 * 60e9, Bound: true}
	var e *inboundEnv
	e = newInboundEnv(t, inboundConfig{respond: xmlApp(&e), opts: func(o *Options) {
		o.Routes = append(o.Routes, Route{Name: "xml", Method: "POST", Path: "/orders.xml", Fields: []RouteField{
			{XML: "/transaction/credit-card/number"},
			{XML: "/transaction/credit-card/cvv", Spec: cvc, Bind: "/transaction/credit-card/number"},
		}})
	}})
	in := xmlOrder("&#52;111 1111 1111 1111", "<![CDATA[737]]>", "\n  <!-- gift -->")
	n := e.up.count()
	r := e.send("POST", "/orders.xml", "application/xml; charset=utf-8", []byte(in))
	if r.StatusCode != 200 {
		t.Fatalf("XML order = %d %s; the app got %s", r.StatusCode, r.body, e.up.since(n)[0].Body)
	}
	got := e.up.since(n)
	if len(got) != 1 {
		t.Fatalf("the app got %d requests, want 1", len(got))
	}
	var panTok, cvcTok string
	if _, err := fmt.Sscanf(string(r.body), "number=%s cvv=%s", &panTok, &cvcTok); err != nil {
		t.Fatalf("app answered %q: %v", r.body, err)
	}
	if want := xmlOrder(panTok, cvcTok, "\n  <!-- gift -->"); string(got[0].Body) != want {
		t.Errorf("the app got\n%s\nwant the body as sent with only the two fields' contents replaced:\n%s", got[0].Body, want)
	}
	if rv, err := e.vault.Reveal(t.Context(), panTok); err != nil || rv.Value != "4111 1111 1111 1111" && rv.Value != panVisa {
		t.Errorf("the number's token reveals %v, %v; want the card", vault.Mask(rv.Value), err)
	}
	if len(cvcTok) != 3 || cvcTok == "737" {
		t.Errorf("cvv token %q, want 3 other digits", cvcTok)
	}

	for _, tc := range []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"DTD", "application/xml", `<!DOCTYPE t [<!ENTITY a "4111">]>` + xmlOrder(panVisa, "737", ""), 400, rewrite.CodeInvalidXML},
		{"duplicate element", "text/xml", xmlOrder(panVisa, "737", "<credit-card><number>"+panMC+"</number></credit-card>"), 400, rewrite.CodeDuplicateKey},
		{"too deep", "application/xml", strings.Repeat("<a>", 70) + strings.Repeat("</a>", 70), 400, rewrite.CodeTooDeep},
		{"element in the field", "application/xml", xmlOrder("<b>"+panVisa+"</b>", "737", ""), 422, rewrite.CodeFieldType},
		{"comment in the field", "application/xml", xmlOrder("4111<!---->111111111111", "737", ""), 422, rewrite.CodeFieldType},
		{"card outside the fields", "application/soap+xml", xmlOrder(panVisa, "737", "<note>"+panMC+"</note>"), 422, rewrite.CodeCardNumberDetected},
		{"card in references outside", "application/xml", xmlOrder(panVisa, "737", "<note>&#53;555555555554444</note>"), 422, rewrite.CodeCardNumberDetected},
		{"card in an attribute", "application/xml", xmlOrder(panVisa, "737", `<note ref="`+panMC+`"/>`), 422, rewrite.CodeCardNumberDetected},
		{"card split by a comment", "application/xml", xmlOrder(panVisa, "737", "<note>55555555<!-- -->55554444</note>"), 422, rewrite.CodeCardNumberDetected},
		{"not well-formed", "application/xml", xmlOrder(panVisa, "737", "<note>"), 400, rewrite.CodeInvalidXML},
		{"json on the xml route", "application/json", `{"card":{"number":"` + panVisa + `"}}`, 422, rewrite.CodeCardNumberDetected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.up.count()
			r := e.send("POST", "/orders.xml", tc.ct, []byte(tc.body))
			wantError(t, r, tc.status, tc.code)
			if e.up.count() != n {
				t.Error("the app got the refused request")
			}
		})
	}
}

// TestInboundXMLGuard: on any path, whatever the declared type, a card
// number an XML parser would read out of the body (through references,
// CDATA or a comment) is refused: apps parse XML by sniffing.
func TestInboundXMLGuard(t *testing.T) {
	e := newInboundEnv(t, inboundConfig{})
	for _, tc := range []struct{ name, ct, body string }{
		{"xml, references", "application/xml", `<o><n>&#52;111111111111111</n></o>`},
		{"xml, split by CDATA", "text/xml", `<o><n>41111111<![CDATA[11111111]]></n></o>`},
		{"text/plain sniffed", "text/plain", `<o><n>&#x34;111111111111111</n></o>`},
		{"no type, byte-order mark", "", "\ufeff  <o n=\"&#52;111111111111111\"/>"},
		{"form type sniffed", "application/x-www-form-urlencoded", `<o><n>41111111<![CDATA[11111111]]></n></o>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := e.up.count()
			r := e.send("POST", "/anything", tc.ct, []byte(tc.body))
			wantError(t, r, 422, rewrite.CodeCardNumberDetected)
			if e.up.count() != n {
				t.Error("the app got the refused request")
			}
		})
	}
	// XML without a card passes untouched.
	n := e.up.count()
	body := `<?xml version="1.0"?><o id="ord_1"><amount>10.00</amount><!-- ok --></o>`
	if r := e.send("POST", "/anything", "application/xml", []byte(body)); r.StatusCode != 200 {
		t.Fatalf("plain XML = %d %s", r.StatusCode, r.body)
	}
	if got := e.up.since(n); len(got) != 1 || string(got[0].Body) != body {
		t.Errorf("the app got %v, want the body unchanged", got)
	}
}

// TestEgressXMLAnswer: a provider's XML answer is parsed by the response
// guard as a JSON one is: card numbers in text and attributes are
// tokenized, response_ignore exempts element and attribute paths, an
// echoed CVC goes back as its token, and an answer the guard cannot read
// is refused with 502 response_uninspectable saying the provider acted.
func TestEgressXMLAnswer(t *testing.T) {
	const ntid = "483931234567891" // a network transaction id that passes the Luhn check
	answer := "<transaction>\n  <id>tx_1</id>\n  <credit-card bin=\"555555\" full=\"" + panMC + "\">\n    <number>" + panMC +
		"</number>\n    <cvv>737</cvv>\n  </credit-card>\n  <network-transaction-id>" + ntid + "</network-transaction-id>\n</transaction>"
	var reply string
	e := newEgressEnv(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		io.WriteString(w, reply)
	}, func(r *EgressRoute) {
		r.Fields = []RouteField{{XML: "/transaction/credit-card/number"}, {XML: "/transaction/credit-card/cvv", Bind: "/transaction/credit-card/number"}}
		r.ResponseIgnore = []string{"/transaction/network-transaction-id"}
	})
	panTok, cvcTok := e.checkout(t, panVisa, "737")
	pay := func() response {
		return e.pay(t, "/psp/v1/tx", "application/xml", xmlOrder(panTok, cvcTok, ""), EgressKeyHeader, egressKey, "Idempotency-Key", "order-7")
	}

	reply = answer
	r := pay()
	if r.StatusCode != 200 {
		t.Fatalf("pay = %d %s", r.StatusCode, maskAll([]string{string(r.body)}))
	}
	if strings.Contains(string(r.body), panMC) {
		t.Fatal("the provider's card number reached the app")
	}
	var got struct {
		Card struct {
			Full   string `xml:"full,attr"`
			Number string `xml:"number"`
			CVV    string `xml:"cvv"`
		} `xml:"credit-card"`
		NTID string `xml:"network-transaction-id"`
	}
	if err := xml.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("the app's answer does not parse: %v", err)
	}
	if got.NTID != ntid || got.Card.CVV != cvcTok || got.Card.Number != got.Card.Full {
		t.Errorf("answer: ntid %q, cvv %q, attribute and element tokens %q %q; want the id unchanged, the CVC token, one token twice",
			got.NTID, got.Card.CVV, got.Card.Full, got.Card.Number)
	}
	if rv, err := e.vault.Reveal(t.Context(), got.Card.Number); err != nil || rv.Value != panMC {
		t.Errorf("the answer's token reveals %s, %v; want the provider's card", vault.Mask(rv.Value), err)
	}
	want := strings.NewReplacer(panMC, got.Card.Number, "<cvv>737", "<cvv>"+cvcTok).Replace(answer)
	if string(r.body) != want {
		t.Errorf("the app got\n%s\nwant the answer with only the card and the CVC replaced:\n%s", r.body, want)
	}

	for _, tc := range []struct{ name, reply string }{
		{"DTD", `<!DOCTYPE t>` + answer},
		{"card split by markup", "<t><number>55555555<!-- -->55554444</number></t>"},
		{"broken XML", "<t><number>" + panMC + "</t>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply = tc.reply
			n := len(e.psp.got())
			r := pay()
			wantError(t, r, 502, "response_uninspectable")
			if strings.Contains(stripSeparators(string(r.body)), panMC) {
				t.Error("the refusal carries the card number")
			}
			if !strings.Contains(string(r.body), `"provider_acted":true`) || !strings.Contains(string(r.body), "order-7") {
				t.Errorf("refusal %s, want provider_acted and the idempotency key", r.body)
			}
			if len(e.psp.got()) != n+1 {
				t.Errorf("the provider got %d requests, want exactly one", len(e.psp.got())-n)
			}
		})
	}
}

// TestEgressXMLUnrevealed: a live token at an XML element the route does
// not reveal is refused on a route that says so, as in JSON.
func TestEgressXMLUnrevealed(t *testing.T) {
	e := newEgressEnv(t, nil, func(r *EgressRoute) {
		r.Fields = []RouteField{{XML: "/transaction/credit-card/number"}}
		r.RefuseUnrevealed = true
	})
	panTok, _ := e.checkout(t, panVisa, "737")
	n := len(e.psp.got())
	r := e.pay(t, "/psp/v1/tx", "application/xml",
		"<transaction><credit-card><number>"+panTok+"</number></credit-card><payment-method><card>"+panTok+"</card></payment-method></transaction>",
		EgressKeyHeader, egressKey)
	wantError(t, r, 422, "unrevealed_token")
	if !strings.Contains(string(r.body), "/transaction/payment-method/card") {
		t.Errorf("refusal %s does not name the element", r.body)
	}
	if len(e.psp.got()) != n {
		t.Error("the provider got the request")
	}
}
