package rewrite

import (
	"encoding/base64"
	"strings"
	"testing"
)

// multipartBody builds a multipart/form-data body with boundary "B" from
// raw part header blocks and contents.
func multipartBody(parts ...[2]string) string {
	var sb strings.Builder
	for _, p := range parts {
		sb.WriteString("--B\r\n" + p[0] + "\r\n\r\n" + p[1] + "\r\n")
	}
	sb.WriteString("--B--\r\n")
	return sb.String()
}

const ctMultipart = "multipart/form-data; boundary=B"

// TestReadings: with ReadAll, a body is read the ways apps read it, whatever
// its declared type.
func TestReadings(t *testing.T) {
	none := []Field{}
	tok := GuardTokenize
	cd := func(name string) string { return `Content-Disposition: form-data; name="` + name + `"` }
	b64 := base64.StdEncoding.EncodeToString([]byte("card 4111 1111 1111 1111"))
	runRewriteCases(t, []rewriteCase{
		// Declared a form, read as JSON by get_json(force=True), json_decode, JSON.parse.
		{name: "form: json string of escapes", all: true, ct: ctForm, fields: none, body: `"\u0034\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031"`, code: CodeCardNumberDetected},
		{name: "form: json exponent number", all: true, ct: ctForm, fields: none, body: `4.111111111111111E+15`, code: CodeCardNumberDetected},
		{name: "form: json behind a comment (Ruby)", all: true, ct: ctForm, fields: none, body: `/**/{"n":"\u0034111111111111111"}`, code: CodeCardNumberDetected},
		{name: "form: json without a card passes", all: true, ct: ctForm, fields: none, body: `/*x*/{"n":"4111111111111112"}`, want: `/*x*/{"n":"4111111111111112"}`},
		{name: "typeless: json escapes", all: true, ct: "none", fields: none, body: `{"n":"\u0034111111111111111"}`, code: CodeCardNumberDetected},
		{name: "typeless: form tokenized", all: true, guard: tok, ct: "none", fields: none, body: `n=4111111111111111&x=%zz`, want: `n=9999999999999999&x=%zz`},
		// Declared JSON, read as a form by parse_str(php://input).
		{name: "json: percent escapes read as a form", all: true, fields: none, body: `{"n":"%34111111111111111"}`, code: CodeCardNumberDetected},
		{name: "json: plus between digits read as a form", all: true, fields: none, body: `{"n":"4111+1111+1111+1111"}`, code: CodeCardNumberDetected},
		{name: "json: ignored field stays ignored", all: true, fields: none, ignore: []string{"order.id"}, body: `{"order":{"id":"4111111111111111"}}`, want: `{"order":{"id":"4111111111111111"}}`},
		{name: "json: fraction before an exponent (PHP parse_str)", all: true, fields: none, body: `{"note":0.378282246310005e16}`, code: CodeCardNumberDetected},
		{name: "json: fraction without an exponent stays", all: true, fields: none, body: `{"p":0.378282246310005}`, want: `{"p":0.378282246310005}`},
		{name: "json: amex after a plus is a card", all: true, fields: none, body: `{"note":"+378282246310005"}`, code: CodeCardNumberDetected},
		{name: "json: phone with plus stays", all: true, fields: none, body: `{"phone":"+49 151 23456787"}`, want: `{"phone":"+49 151 23456787"}`},
		// Text and other types: raw text, JSON, form.
		{name: "text: raw card", all: true, ct: "text/plain", fields: none, body: "hello 4111 1111 1111 1111 bye", code: CodeCardNumberDetected},
		{name: "text: tokenized in place", all: true, guard: tok, ct: "text/plain", fields: none, body: "hello 4111-1111-1111-1111 bye", want: "hello 9999999999999999 bye"},
		{name: "text: json escapes", all: true, ct: "text/plain", fields: none, body: `x "\u0034111111111111111"`, code: CodeCardNumberDetected},
		{name: "text: escapes refused even when tokenizing", all: true, guard: tok, ct: "text/plain", fields: none, body: `"\u0034111111111111111"`, code: CodeCardNumberDetected},
		{name: "text: form escapes", all: true, ct: "text/plain", fields: none, body: "n=%34111111111111111", code: CodeCardNumberDetected},
		{name: "octet-stream: ascii digits in binary", all: true, ct: "application/octet-stream", fields: none, body: "\x00\xff4111111111111111\x00", code: CodeCardNumberDetected},
		{name: "octet-stream: utf-16", all: true, ct: "application/octet-stream", fields: none, body: "\xff\xfe4\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x001\x00", code: CodeCardNumberDetected},
		{name: "text: shift_jis refused", all: true, ct: "text/plain; charset=shift_jis", fields: none, body: "x", code: CodeUnsupportedMediaType},
		{name: "text: latin-1 no-break spaces", all: true, ct: "text/plain; charset=iso-8859-1", fields: none, body: "4111\xa01111\xa01111\xa01111", code: CodeCardNumberDetected},
		{name: "text: windows-1252 dashes", all: true, ct: "text/plain; charset=windows-1252", fields: none, body: "4111\x961111\x971111\x961111", code: CodeCardNumberDetected},
		{name: "text: latin-1 read", all: true, ct: "text/plain; charset=iso-8859-1", fields: none, body: "4111111111111111", code: CodeCardNumberDetected},
		{name: "multipart: part in gbk refused", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("n") + "\r\nContent-Type: text/plain; charset=gbk", "x"}), code: CodeUnsupportedMediaType},
		{name: "text: utf-7 refused", all: true, ct: "text/plain; charset=utf-7", fields: none, body: "+ADQ-111", code: CodeUnsupportedMediaType},
		{name: "text: clean passes", all: true, ct: "text/plain", fields: none, body: "order 12345, call +49 151 23456787", want: "order 12345, call +49 151 23456787"},
		{name: "without ReadAll text passes", ct: "text/plain", fields: none, body: "4111111111111111", want: "4111111111111111"},
		// Multipart: raw bytes, decoded parts.
		{name: "multipart: text part", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("note"), "4111111111111111"}), code: CodeCardNumberDetected},
		{name: "multipart: tokenized in place", all: true, guard: tok, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("note"), "4111111111111111"}),
			want: multipartBody([2]string{cd("note"), "9999999999999999"})},
		{name: "multipart: base64 part", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("note") + "\r\nContent-Transfer-Encoding: base64", b64}), code: CodeCardNumberDetected},
		{name: "multipart: quoted-printable part", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("note") + "\r\nContent-Transfer-Encoding: quoted-printable", "=34111111111111111"}), code: CodeCardNumberDetected},
		{name: "multipart: filename*", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{`Content-Disposition: form-data; name="f"; filename*=UTF-8''%34111111111111111`, "x"}), code: CodeCardNumberDetected},
		{name: "multipart: json part escapes", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("j") + "\r\nContent-Type: application/json", `{"n":"\u0034111111111111111"}`}), code: CodeCardNumberDetected},
		{name: "multipart: binary file passes", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{`Content-Disposition: form-data; name="f"; filename="a.png"` + "\r\nContent-Type: image/png", "\x89PNG\r\n\x1a\n\x00\x01\x02 12345"}),
			want: multipartBody([2]string{`Content-Disposition: form-data; name="f"; filename="a.png"` + "\r\nContent-Type: image/png", "\x89PNG\r\n\x1a\n\x00\x01\x02 12345"})},
		{name: "multipart: unknown transfer encoding", all: true, ct: ctMultipart, fields: none, body: multipartBody([2]string{cd("n") + "\r\nContent-Transfer-Encoding: x-uuencode", "x"}), code: CodeUnsupportedMediaType},
		{name: "multipart: no boundary", all: true, ct: "multipart/form-data", fields: none, body: "--B\r\n\r\nx\r\n--B--", code: CodeInvalidMultipart},
		{name: "multipart: malformed", all: true, ct: ctMultipart, fields: none, body: "--B\r\nno header end", code: CodeInvalidMultipart},
		{name: "multipart: on a route with fields", all: true, ct: ctMultipart, body: multipartBody([2]string{cd("n"), "x"}), code: CodeUnsupportedMediaType},
	})
}

// TestPrecisionSignals: what the field knows keeps the guard quiet on
// numbers that are not cards, and not on cards typed as cards.
func TestPrecisionSignals(t *testing.T) {
	for s, want := range map[string]bool{
		"+49 151 23456787":              false, // the phone number: a '+' and 13 digits
		"+4915123456787":                false,
		"DK50 0040 0440 1162 43":        false, // the IBAN
		"DK5000400440116243":            false,
		"DE89 3704 0044 0532 0130 00":   false,
		"INV4111111111111111":           false, // a letter in front
		"4111111111111111abc":           true,  // letters behind: (int) and parseInt read the number
		"+4111 1111 1111 1111":          true,  // more digits than a phone number
		"+378282246310005":              true,
		"3782 822463 10005":             true, // Amex 4-6-5
		"4111-1111-1111-1111":           true,
		"41111111 11111111":             true,
		"2030 4111 1111 1111 1111":      true,  // a card ending a run, printed as one
		"4111 1111 1111 1111 2030":      true,  // a card starting a run
		"9361 4958 7869 5438 1818 47":   false, // USPS in fours
		"302-8641455-4485685":           false, // 3-7-7
		"41 11 11 11 11 11 11 11":       false, // not grouped as a card
		"DE12 4111 1111 1111 1111 11 x": true,  // an IBAN must validate to be one
		"DE89 4111 1111 1111 1111 11":   false, // and this one does: see the README's known limits
		"1 4111 1111 1111 1111 2":       true,  // a card between short groups
		"00387764983190375224":          false, // SSCC, zero-padded past 19 digits
		"04111111111111111":             true,  // one zero in front, as (int) reads it
	} {
		if got := len(findCards(s)) > 0 || numericStringCard(s) != ""; got != want {
			t.Errorf("card in %q = %v, want %v", s, got, want)
		}
	}
}
