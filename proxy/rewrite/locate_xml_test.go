package rewrite

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf16"
)

const ctXML = "application/xml"

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

var (
	btFields = []Field{{XML: "/transaction/credit-card/number", Spec: 0}, {XML: "/transaction/credit-card/cvv", Spec: 1}}
	anFields = []Field{{XML: "/createTransactionRequest/transactionRequest/payment/creditCard/cardNumber"}}
)

// xmlCase is a rewriteCase for an XML body with Braintree's fields.
func xmlCase(name, body, want, code, path string) rewriteCase {
	return rewriteCase{name: name, ct: ctXML, body: body, want: want, code: code, path: path, fields: btFields, all: true}
}

func TestRewriteXML(t *testing.T) {
	nn := "9999999999999999"
	runRewriteCases(t, []rewriteCase{
		xmlCase("braintree byte exact", braintree, strings.NewReplacer("4111110000001111", nn, "<cvv>123", "<cvv>999").Replace(braintree), "", ""),
		{name: "authorize.net: CDATA, namespace", ct: "text/xml; charset=utf-8", body: authorizeNet, fields: anFields, all: true,
			want: strings.Replace(authorizeNet, "<![CDATA[4111110000001111]]>", nn, 1)},
		{name: "+xml type", ct: "application/vnd.shop+xml", body: `<transaction><credit-card><number>4111111111111111</number></credit-card></transaction>`,
			fields: btFields, want: `<transaction><credit-card><number>` + nn + `</number></credit-card></transaction>`},
		xmlCase("prefixed element", `<t:transaction xmlns:t="urn:x"><t:credit-card><t:number>4111111111111111</t:number></t:credit-card></t:transaction>`,
			`<t:transaction xmlns:t="urn:x"><t:credit-card><t:number>`+nn+`</t:number></t:credit-card></t:transaction>`, "", ""),
		xmlCase("byte-order mark", "\ufeff<transaction><credit-card><number>4111111111111111</number></credit-card></transaction>",
			"\ufeff<transaction><credit-card><number>"+nn+"</number></credit-card></transaction>", "", ""),
		xmlCase("white space around the value kept", "<transaction><credit-card><number>\n    4111111111111111 \n  </number></credit-card></transaction>",
			"<transaction><credit-card><number>\n    "+nn+" \n  </number></credit-card></transaction>", "", ""),
		xmlCase("white space only skipped", "<transaction><credit-card><number> \n </number></credit-card></transaction>",
			"<transaction><credit-card><number> \n </number></credit-card></transaction>", "", ""),
		xmlCase("empty element skipped", `<transaction><credit-card><number/></credit-card></transaction>`,
			`<transaction><credit-card><number/></credit-card></transaction>`, "", ""),
		xmlCase("character references decoded, token written plainly", `<transaction><credit-card><number>&#52;111&#x31;1111111111&#49;</number></credit-card></transaction>`,
			`<transaction><credit-card><number>`+nn+`</number></credit-card></transaction>`, "", ""),
		xmlCase("CDATA and text joined", `<transaction><credit-card><number><![CDATA[4111]]>111111111111</number></credit-card></transaction>`,
			`<transaction><credit-card><number>`+nn+`</number></credit-card></transaction>`, "", ""),
		xmlCase("element name like a card field elsewhere untouched", `<transaction><number>12</number><credit-card><number>4111111111111111</number></credit-card></transaction>`,
			`<transaction><number>12</number><credit-card><number>`+nn+`</number></credit-card></transaction>`, "", ""),

		// Refusals, each with its code.
		xmlCase("doctype", `<!DOCTYPE transaction [<!ENTITY x "4111110000001111">]><transaction/>`, "", CodeInvalidXML, ""),
		xmlCase("entity reference", `<transaction><credit-card><number>&x;</number></credit-card></transaction>`, "", CodeInvalidXML, ""),
		xmlCase("html entity", `<transaction><note>&nbsp;</note></transaction>`, "", CodeInvalidXML, ""),
		xmlCase("duplicate field element", `<transaction><credit-card><number>4111111111111111</number><number>4000056655665556</number></credit-card></transaction>`,
			"", CodeDuplicateKey, "/transaction/credit-card/number"),
		xmlCase("duplicate parent", `<transaction><credit-card><number/></credit-card><credit-card><number>4000056655665556</number></credit-card></transaction>`,
			"", CodeDuplicateKey, "/transaction/credit-card/number"),
		xmlCase("element in a field", `<transaction><credit-card><number><x>1</x></number></credit-card></transaction>`, "", CodeFieldType, "/transaction/credit-card/number"),
		xmlCase("comment in a field", `<transaction><credit-card><number>4111<!-- -->110000001111</number></credit-card></transaction>`, "", CodeFieldType, "/transaction/credit-card/number"),
		{name: "too deep", ct: ctXML, body: strings.Repeat("<a>", DefaultMaxDepth+1) + strings.Repeat("</a>", DefaultMaxDepth+1), fields: btFields, code: CodeTooDeep},
		xmlCase("two roots", `<a/><b/>`, "", CodeInvalidXML, ""),
		xmlCase("text after the root", `<a/>4111111111111111`, "", CodeInvalidXML, ""),
		xmlCase("mismatched tags", `<a><b></a></b>`, "", CodeInvalidXML, ""),
		xmlCase("truncated", `<transaction><credit-card><number>4111111111111111`, "", CodeInvalidXML, ""),
		xmlCase("latin-1 declaration", `<?xml version="1.0" encoding="ISO-8859-1"?><a/>`, "", CodeInvalidXML, ""),
		xmlCase("processing instruction", `<a><?php echo 1; ?></a>`, "", CodeInvalidXML, ""),
		xmlCase("invalid utf-8", "<a>\xff</a>", "", CodeInvalidXML, ""),
		{name: "latin-1 charset", ct: "text/xml; charset=iso-8859-1", body: `<a/>`, fields: btFields, code: CodeUnsupportedMediaType},

		// The guard.
		xmlCase("card in a text", `<transaction><note>card 4000 0566 5566 5556</note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card in an attribute", `<transaction pan="4000056655665556"/>`, "", CodeCardNumberDetected, "/transaction/@pan"),
		xmlCase("card in character references", `<transaction><note>&#52;000056655665556</note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card in CDATA", `<transaction><note><![CDATA[4000056655665556]]></note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card in a comment", `<transaction><!-- 4000056655665556 --></transaction>`, "", CodeCardNumberDetected, "/transaction"),
		xmlCase("card split by a comment", `<transaction><note>40000566<!-- -->55665556</note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card split by CDATA", `<transaction><note>40000566<![CDATA[55665556]]></note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card split by an element", `<transaction><note>40000566<br/>55665556</note></transaction>`, "", CodeCardNumberDetected, "/transaction/note"),
		xmlCase("card in an element name", `<transaction><a-4000056655665556/></transaction>`, "", CodeCardNumberDetected, ""),
		xmlCase("card after the field", `<transaction><credit-card><number>4111111111111111</number></credit-card><n>4000056655665556</n></transaction>`,
			"", CodeCardNumberDetected, "/transaction/n"),
		{name: "answers: digits beside elements are not joined", ct: ctXML, fields: btFields, guard: GuardTokenize,
			body: "<t><amount>4000</amount><id>056655665556</id></t>", want: "<t><amount>4000</amount><id>056655665556</id></t>"},
		xmlCase("inbound: digits beside elements joined as itertext joins them", "<t><amount>4000</amount><id>056655665556</id></t>", "", CodeCardNumberDetected, ""),
		xmlCase("card around a child element", "<t><n>4000<b>0566</b>55665556</n></t>", "", CodeCardNumberDetected, ""),
		xmlCase("pretty-printed numbers stay apart", "<t>\n  <amount>4000</amount>\n  <id>056655665556</id>\n</t>", "<t>\n  <amount>4000</amount>\n  <id>056655665556</id>\n</t>", "", ""),
		xmlCase("field text joins nothing", "<transaction><a>4000</a><credit-card><number>0566</number></credit-card><b>55665556</b></transaction>",
			"<transaction><a>4000</a><credit-card><number>9999</number></credit-card><b>55665556</b></transaction>", "", ""),
		xmlCase("text pieces around a comment without a card", "<t>1000<!-- a -->2000</t>", "<t>1000<!-- a -->2000</t>", "", ""),

		// Tokenize mode splices guard hits in place; the rest stays.
		{name: "tokenize text", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t a="1">x &amp; 4000 0566 5566 5556<!--c--><n>1</n></t>`, want: `<t a="1">x &amp; 9999999999999999<!--c--><n>1</n></t>`},
		{name: "tokenize reference text re-escaped", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t>&lt;&#52;000056655665556</t>`, want: `<t>&lt;9999999999999999</t>`},
		{name: "tokenize attribute", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t  b = '4000056655665556' c="x"/>`, want: `<t  b = '9999999999999999' c="x"/>`},
		{name: "tokenize comment", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t><!-- 4000056655665556 --></t>`, want: `<t><!-- 9999999999999999 --></t>`},
		{name: "tokenize CDATA", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t><![CDATA[<4000056655665556>]]></t>`, want: `<t>&lt;9999999999999999&gt;</t>`},
		{name: "split card refused in tokenize mode", ct: ctXML, guard: GuardTokenize, fields: btFields,
			body: `<t>40000566<!---->55665556</t>`, code: CodeCardNumberDetected},

		// Ignore entries.
		{name: "ignored element", ct: ctXML, fields: btFields, ignore: []string{"/t/ntid"},
			body: `<t><ntid>4000056655665556</ntid></t>`, want: `<t><ntid>4000056655665556</ntid></t>`},
		{name: "ignored attribute", ct: ctXML, fields: btFields, ignore: []string{"/t/@ntid"},
			body: `<t ntid="4000056655665556"/>`, want: `<t ntid="4000056655665556"/>`},
		{name: "ignore is exact", ct: ctXML, fields: btFields, ignore: []string{"/t/ntid"},
			body: `<t><NTID>4000056655665556</NTID></t>`, code: CodeCardNumberDetected},
		{name: "guard off", ct: ctXML, fields: btFields, guard: GuardOff,
			body: `<t><n>4000056655665556</n></t>`, want: `<t><n>4000056655665556</n></t>`},
	})
}

// TestXMLReadings: a body of another type that an app would sniff as XML
// is read as XML too (leniently), and an XML body under the JSON and
// form readings.
func TestXMLReadings(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{name: "text/plain with a reference", ct: "text/plain", body: `<order><pan>&#52;000056655665556</pan></order>`, all: true, fields: []Field{}, code: CodeCardNumberDetected},
		{name: "no type, BOM and space", ct: "none", body: "\ufeff \n<order pan=\"&#52;000056655665556\"/>", all: true, fields: []Field{}, code: CodeCardNumberDetected},
		{name: "octet-stream, CDATA split", ct: "application/octet-stream", body: `<o>4000056655<![CDATA[665556]]></o>`, all: true, fields: []Field{}, code: CodeCardNumberDetected},
		{name: "html entities", ct: "text/html", body: `<p>&#52;000&nbsp;0566 5566 5556<br></p>`, all: true, fields: []Field{}, code: CodeCardNumberDetected},
		{name: "entity declarations", ct: "text/plain", body: `<!DOCTYPE o [<!ENTITY a "4000">]><o>&a;056655665556</o>`, all: true, fields: []Field{}, code: CodeInvalidXML},
		{name: "html doctype passes", ct: "text/html", body: `<!DOCTYPE html><p>order 12&amp;3</p>`, all: true, fields: []Field{},
			want: `<!DOCTYPE html><p>order 12&amp;3</p>`},
		{name: "broken markup passes", ct: "text/plain", body: `<a <b>1</a>`, all: true, fields: []Field{}, want: `<a <b>1</a>`},
		{name: "multipart file read as xml", ct: "multipart/form-data; boundary=b", all: true, fields: []Field{}, code: CodeCardNumberDetected,
			body: "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"o.xml\"\r\nContent-Type: application/xml\r\n\r\n<o>&#52;000056655665556</o>\r\n--b--\r\n"},
		{name: "sniffed, latin-1 declaration", ct: "text/plain", all: true, fields: []Field{}, code: CodeCardNumberDetected,
			body: `<?xml version="1.0" encoding="ISO-8859-1"?><o>&#52;000056655665556</o>`},
		{name: "sniffed, utf-16", ct: "application/octet-stream", all: true, fields: []Field{}, code: CodeCardNumberDetected,
			body: utf16le("\ufeff<o>&#52;000056655665556</o>")},
		{name: "xml body read as a form", ct: ctXML, body: `<t>%34000056655665556</t>`, all: true, fields: btFields, code: CodeCardNumberDetected},
		{name: "xml body read as json", ct: ctXML, body: `<t>"\u0034000056655665556"</t>`, all: true, fields: btFields, code: CodeCardNumberDetected},
	})
}

func TestXMLSelectors(t *testing.T) {
	for _, s := range []string{"transaction.number", "/", "/a/", "//a", "/a/@b", "/a b", "/1a"} {
		if err := ValidateXMLSelector(s); err == nil {
			t.Errorf("ValidateXMLSelector(%q) = nil, want an error", s)
		}
	}
	for _, s := range []string{"/transaction/credit-card/number", "/a", "/a.b/c_d"} {
		if err := ValidateXMLSelector(s); err != nil {
			t.Errorf("ValidateXMLSelector(%q) = %v", s, err)
		}
	}
	if err := ValidateXMLIgnore("/a/@b"); err != nil {
		t.Errorf("ValidateXMLIgnore(/a/@b) = %v", err)
	}
	if err := ValidateXMLIgnore("/@b"); err == nil {
		t.Error("ValidateXMLIgnore(/@b) = nil: a root has no attribute path")
	}
	if _, err := New(Config{Fields: []Field{{XML: "/a", JSON: "a"}}}); err == nil {
		t.Error("New accepted a field with xml and json")
	}
	for ct, want := range map[string]Media{"application/xml": MediaXML, "text/xml; charset=utf-8": MediaXML, "application/soap+xml": MediaXML, "application/json": MediaJSON, "text/xmlx": MediaOther} {
		if got, err := ParseMediaType(ct); got != want || err != nil {
			t.Errorf("ParseMediaType(%q) = %v, %v; want %v", ct, got, err, want)
		}
	}
}

// FuzzXMLInbound checks, for any body sent as XML to an inbound route with
// XML fields: no panic; no error carries a long digit run; what Rewrite
// accepts and forwards still parses as XML, and no Luhn card number is
// left in it outside the configured fields, read as an app reads it.
func FuzzXMLInbound(f *testing.F) {
	for _, s := range []string{braintree, authorizeNet, `<a><b>1</b></a>`, `<!DOCTYPE a><a/>`, `<a x="4111111111111111"/>`,
		`<transaction><credit-card><number><![CDATA[1]]>2</number></credit-card></transaction>`,
		`<t>4000 0566<!-- -->5566 5556</t>`, `<t>&#52;000056655665556</t>`, "\ufeff<t/>"} {
		f.Add([]byte(s))
	}
	rw, err := New(Config{Fields: btFields, Guard: GuardTokenize, MaxDepth: 16, ReadAll: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := rw.Rewrite(in, ctXML, nines)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if len(in) == 0 {
			return
		}
		for _, text := range xmlTexts(t, out, btFields) {
			for _, rn := range findCards(text) {
				t.Fatalf("card %s left outside the fields in %q (from %q)", rn.digits, out, in)
			}
		}
	})
}

// xmlTexts parses b as encoding/xml does for an app and returns every text
// outside fields (each element's text joined), attribute value and
// comment, and the whole document's text outside fields (itertext). It
// fails t if b does not parse.
func xmlTexts(t *testing.T, b []byte, fields []Field) []string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	var path []string
	var joined []*strings.Builder
	var texts []string
	var all strings.Builder
	inField := func() bool {
		p := "/" + strings.Join(path, "/")
		for _, f := range fields {
			if f.XML == p {
				return true
			}
		}
		return false
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return append(texts, all.String())
		}
		if err != nil {
			t.Fatalf("output %q does not parse: %v", b, err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			path = append(path, v.Name.Local)
			joined = append(joined, &strings.Builder{})
			for _, a := range v.Attr {
				texts = append(texts, a.Value)
			}
		case xml.EndElement:
			if !inField() {
				texts = append(texts, joined[len(joined)-1].String())
			}
			path, joined = path[:len(path)-1], joined[:len(joined)-1]
		case xml.CharData:
			if len(joined) > 0 {
				joined[len(joined)-1].WriteString(string(v))
				if inField() {
					all.WriteByte(0)
				} else {
					all.WriteString(string(v))
				}
			}
		case xml.Comment:
			texts = append(texts, string(v))
		}
	}
}

func TestXMLRewriteErrorsAreTyped(t *testing.T) {
	r, err := New(Config{Fields: btFields})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Rewrite([]byte(`<transaction><credit-card><number>4111111111111111</number></credit-card></transaction>`), ctXML,
		func([]Value) ([]string, error) { return nil, io.ErrUnexpectedEOF })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Rewrite error = %v, want the callback's error wrapped", err)
	}
}

// utf16le is s in UTF-16LE.
func utf16le(s string) string {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return string(b)
}

// TestXMLAnswerCardSet: on a provider's XML answer, a route's CardSet
// narrows the split check as it narrows every other hit.
func TestXMLAnswerCardSet(t *testing.T) {
	visa, err := NewCardSet([]string{"visa"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Guard: GuardTokenize, Cards: visa})
	if err != nil {
		t.Fatal(err)
	}
	mc := "<t><id>55555555<!-- -->55554444</id></t>"
	if out, err := r.Rewrite([]byte(mc), ctXML, nines); err != nil || string(out) != mc {
		t.Errorf("Rewrite(%q) = %q, %v; want it unchanged: the set leaves Mastercard out", mc, out, err)
	}
	v := "<t><id>41111111<!-- -->11111111</id></t>"
	var re *Error
	if _, err := r.Rewrite([]byte(v), ctXML, nines); !errors.As(err, &re) || re.Code != CodeCardNumberDetected {
		t.Errorf("Rewrite(%q) error = %v, want %s", v, err, CodeCardNumberDetected)
	}
}
