package rewrite

import (
	"errors"
	"strings"
	"testing"
)

// braintree is a transaction in the shape Braintree's XML API takes it.
const braintree = `<?xml version="1.0" encoding="UTF-8"?>
<transaction>
  <type>sale</type>
  <amount>10.00</amount>
  <credit-card>
    <number>4111110000001111</number>
    <cvv>123</cvv>
    <expiration-date>05/2030</expiration-date>
  </credit-card>
</transaction>`

// authorizeNet is createTransactionRequest in Authorize.net's namespace.
const authorizeNet = `<createTransactionRequest xmlns="AnetApi/xml/v1/schema/AnetApiSchema.xsd">` +
	`<merchantAuthentication><name>api</name></merchantAuthentication><transactionRequest>` +
	`<transactionType>authCaptureTransaction</transactionType><amount>5</amount><payment><creditCard>` +
	`<cardNumber><![CDATA[4111110000001111]]></cardNumber><expirationDate>2030-12</expirationDate><cardCode>999</cardCode>` +
	`</creditCard></payment></transactionRequest></createTransactionRequest>`

func TestXMLRewrite(t *testing.T) {
	bt, err := NewXML([]XMLField{{Path: "/transaction/credit-card/number", Spec: 0}, {Path: "/transaction/credit-card/cvv", Spec: 1}}, GuardReject, 8)
	if err != nil {
		t.Fatal(err)
	}
	an, err := NewXML([]XMLField{{Path: "/createTransactionRequest/transactionRequest/payment/creditCard/cardNumber"}}, GuardReject, 8)
	if err != nil {
		t.Fatal(err)
	}
	reveal := func(vals []Value) ([]string, error) {
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = map[string]string{"4111110000001111": "4111111111111111", "123": "7<3"}[v.Text]
		}
		return out, nil
	}
	for _, tc := range []struct {
		name string
		rw   *XMLRewriter
		in   string
		want string // "" with code: refused
		code string
		path string
	}{
		{"braintree", bt, braintree, strings.NewReplacer("4111110000001111", "4111111111111111", "<cvv>123", "<cvv>7&lt;3").Replace(braintree), "", ""},
		{"authorize.net, CDATA, namespace", an, authorizeNet, strings.Replace(authorizeNet, "<![CDATA[4111110000001111]]>", "4111111111111111", 1), "", ""},
		{"empty element skipped", bt, `<transaction><credit-card><number/></credit-card></transaction>`, `<transaction><credit-card><number/></credit-card></transaction>`, "", ""},
		{"character reference", bt, `<transaction><credit-card><number>&#52;111110000001111</number></credit-card></transaction>`,
			`<transaction><credit-card><number>4111111111111111</number></credit-card></transaction>`, "", ""},
		{"doctype", bt, `<!DOCTYPE transaction [<!ENTITY x "4111110000001111">]><transaction/>`, "", CodeInvalidXML, ""},
		{"unknown entity", bt, `<transaction><note>&nbsp;</note></transaction>`, "", CodeInvalidXML, ""},
		{"duplicate element", bt, `<transaction><credit-card><number>1</number><number>2</number></credit-card></transaction>`, "", CodeDuplicateKey, "/transaction/credit-card/number"},
		{"element in a field", bt, `<transaction><credit-card><number><x>1</x></number></credit-card></transaction>`, "", CodeFieldType, "/transaction/credit-card/number"},
		{"comment in a field", bt, `<transaction><credit-card><number>4111<!-- -->110000001111</number></credit-card></transaction>`, "", CodeFieldType, "/transaction/credit-card/number"},
		{"too deep", bt, strings.Repeat("<a>", 9) + strings.Repeat("</a>", 9), "", CodeTooDeep, ""},
		{"two roots", bt, `<a/><b/>`, "", CodeInvalidXML, ""},
		{"mismatched tags", bt, `<a><b></a></b>`, "", CodeInvalidXML, ""},
		{"latin-1", bt, `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, "", CodeInvalidXML, ""},
		{"card in a text", bt, `<transaction><note>card 4000 0566 5566 5556</note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"},
		{"card in an attribute", bt, `<transaction pan="4000056655665556"/>`, "", CodeCardNumberDetected, "/transaction/@pan"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.rw.Rewrite([]byte(tc.in), reveal)
			if tc.code != "" {
				var re *Error
				if !errors.As(err, &re) || re.Code != tc.code || re.Path != tc.path {
					t.Fatalf("Rewrite = %q, %v; want %s at %q", got, err, tc.code, tc.path)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Errorf("Rewrite =\n%s, %v\nwant\n%s", got, err, tc.want)
			}
		})
	}
	if err := ValidateXMLSelector("transaction.number"); err == nil {
		t.Error("ValidateXMLSelector accepted a relative path")
	}
	for ct, want := range map[string]bool{"application/xml": true, "text/xml; charset=utf-8": true, "application/soap+xml": true, "application/json": false} {
		if got, err := IsXMLMediaType(ct); got != want || err != nil {
			t.Errorf("IsXMLMediaType(%q) = %v, %v; want %v", ct, got, err, want)
		}
	}
	if _, err := IsXMLMediaType("text/xml; charset=latin1"); err == nil {
		t.Error("IsXMLMediaType accepted latin1")
	}
}

// FuzzXMLRewrite: no input panics the XML rewriter, and whatever it
// accepts and rewrites is still well-formed XML with the field replaced.
func FuzzXMLRewrite(f *testing.F) {
	for _, s := range []string{braintree, authorizeNet, `<a><b>1</b></a>`, `<!DOCTYPE a><a/>`, `<a x="4111111111111111"/>`,
		`<transaction><credit-card><number><![CDATA[1]]>2</number></credit-card></transaction>`} {
		f.Add(s)
	}
	rw, err := NewXML([]XMLField{{Path: "/transaction/credit-card/number"}}, GuardReject, 16)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := rw.Rewrite([]byte(in), func(vals []Value) ([]string, error) {
			r := make([]string, len(vals))
			for i := range r {
				r[i] = "<&>"
			}
			return r, nil
		})
		if err != nil || string(out) == in {
			return
		}
		again, err := rw.Rewrite(out, func(vals []Value) ([]string, error) {
			for _, v := range vals {
				if v.Text != "<&>" {
					t.Errorf("rewritten field reads %q, want <&>", v.Text)
				}
			}
			return make([]string, len(vals)), nil
		})
		if err != nil {
			t.Errorf("rewritten body %q no longer reads: %v (again %q)", out, err, again)
		}
	})
}
