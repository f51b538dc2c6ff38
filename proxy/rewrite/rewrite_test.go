package rewrite

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
)

// nines replaces every value with as many 9s as it has digits (at least
// one): a stand-in tokenizer whose output is never a card number and always
// a valid JSON integer.
func nines(vals []Value) ([]string, error) {
	out := make([]string, len(vals))
	for i, v := range vals {
		n := 0
		for _, c := range v.Text {
			if c >= '0' && c <= '9' {
				n++
			}
		}
		out[i] = strings.Repeat("9", max(n, 1))
	}
	return out, nil
}

var longDigits = regexp.MustCompile(`[0-9]{12,}`)

type rewriteCase struct {
	name   string
	ct     string
	body   string
	want   string // expected output when code is ""
	code   string // expected error code
	path   string // expected error path, when set
	fields []Field
	guard  GuardMode
	ignore []string
	all    bool // Config.ReadAll
}

var checkoutFields = []Field{
	{JSON: "card.number", Spec: 0},
	{JSON: "card.cvc", Spec: 1},
	{JSON: "items.#.card.number", Spec: 0},
	{Form: "card[number]", Spec: 0},
	{Form: "card[cvc]", Spec: 1},
}

func runRewriteCases(t *testing.T, cases []rewriteCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields := tc.fields
			if fields == nil {
				fields = checkoutFields
			}
			ct := tc.ct
			if ct == "" {
				ct = ctJSON
			}
			r, err := New(Config{Fields: fields, Guard: tc.guard, Ignore: tc.ignore, ReadAll: tc.all})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if ct == "none" {
				ct = ""
			}
			out, err := r.Rewrite([]byte(tc.body), ct, nines)
			if tc.code != "" {
				var re *Error
				if !errors.As(err, &re) {
					t.Fatalf("Rewrite(%q) = %q, %v; want error %s", tc.body, out, err, tc.code)
				}
				if re.Code != tc.code {
					t.Fatalf("Rewrite(%q) error code = %s (%v), want %s", tc.body, re.Code, err, tc.code)
				}
				if tc.path != "" && re.Path != tc.path {
					t.Errorf("Rewrite(%q) error path = %q, want %q", tc.body, re.Path, tc.path)
				}
				if re.Status != statusOf(re.Code) || re.Status < 400 {
					t.Errorf("status %d for %s", re.Status, re.Code)
				}
				if longDigits.MatchString(err.Error()) {
					t.Errorf("error %q contains a long digit run", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Rewrite(%q) error: %v", tc.body, err)
			}
			if string(out) != tc.want {
				t.Errorf("Rewrite(%q)\n got %s\nwant %s", tc.body, out, tc.want)
			}
		})
	}
}

func TestRewriteJSON(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{name: "byte exact", body: "{ \"a\" :1,\n\t\"card\": {\"cvc\":\"123\" , \"number\" :  \"4111111111111111\"},\"z\":[true,null,\"\\u00e9\"]}  ",
			want: "{ \"a\" :1,\n\t\"card\": {\"cvc\":\"999\" , \"number\" :  \"9999999999999999\"},\"z\":[true,null,\"\\u00e9\"]}  "},
		{name: "number stays number", body: `{"card":{"number":4111111111111111}}`, want: `{"card":{"number":9999999999999999}}`},
		{name: "beyond float64 precision", body: `{"card":{"number":4111111111111111111}}`, want: `{"card":{"number":9999999999999999999}}`},
		{name: "every array element", body: `{"items":[{"card":{"number":"4111111111111111"}},{"x":1},{"card":{"number":"5555555555554444"}}]}`,
			want: `{"items":[{"card":{"number":"9999999999999999"}},{"x":1},{"card":{"number":"9999999999999999"}}]}`},
		{name: "index selector", fields: []Field{{JSON: "items.1.pan"}}, body: `{"items":[{"pan":"12"},{"pan":"34"}]}`, want: `{"items":[{"pan":"12"},{"pan":"99"}]}`},
		{name: "digit selector names an object key", fields: []Field{{JSON: "items.1.pan"}}, body: `{"items":{"1":{"pan":"34"}}}`, want: `{"items":{"1":{"pan":"99"}}}`},
		{name: "separators kept out of the token", body: `{"card":{"number":"4111 1111-1111 1111"}}`, want: `{"card":{"number":"9999999999999999"}}`},
		{name: "top-level array", fields: []Field{{JSON: "#.pan"}}, body: `[{"pan":"1234"},{"pan":"5678"}]`, want: `[{"pan":"9999"},{"pan":"9999"}]`},
		{name: "null field skipped", body: `{"card":{"number":null}}`, want: `{"card":{"number":null}}`},
		{name: "empty string skipped", body: `{"card":{"number":""}}`, want: `{"card":{"number":""}}`},
		{name: "absent field", body: `{"card":"none","items":null}`, want: `{"card":"none","items":null}`},
		{name: "empty body", body: ``, want: ``},

		// Keys as the app's parser reads them.
		{name: "unicode-escaped key", body: `{"\u0063ard":{"numb\u0065r":"4111111111111111"}}`, want: `{"\u0063ard":{"numb\u0065r":"9999999999999999"}}`},
		{name: "case-folded key (encoding/json)", body: `{"CARD":{"Number":"4111111111111111"}}`, want: `{"CARD":{"Number":"9999999999999999"}}`},
		{name: "unicode fold long s", fields: []Field{{JSON: "ssn"}}, body: `{"\u017fsn":"123456789"}`, want: `{"\u017fsn":"999999999"}`},
		{name: "kelvin sign folds to k", fields: []Field{{JSON: "key"}}, body: "{\"\u212aey\":\"123\"}", want: "{\"\u212aey\":\"999\"}"},
		{name: "duplicate leaf key", body: `{"card":{"number":"4111111111111111","number":"1"}}`, code: CodeDuplicateKey, path: "card.number"},
		{name: "duplicate parent key", body: `{"card":{"number":"1"},"card":{"number":"4111111111111111"}}`, code: CodeDuplicateKey, path: "card"},
		{name: "duplicate by case", body: `{"card":{"number":"1","NUMBER":"4111111111111111"}}`, code: CodeDuplicateKey},
		{name: "duplicate by escape", body: `{"card":{"number":"1","\u006eumber":"4111111111111111"}}`, code: CodeDuplicateKey},
		{name: "duplicate elsewhere is fine", body: `{"a":1,"a":2,"card":{"number":"12"}}`, want: `{"a":1,"a":2,"card":{"number":"99"}}`},
		{name: "nul in key", body: `{"card\u0000":{"number":"1"}}`, code: CodeInvalidJSON},

		// Values.
		{name: "escaped digit in value", body: `{"card":{"number":"4111\u00311111\u0031111\/1111"}}`, want: `{"card":{"number":"99999999999999999"}}`},
		{name: "negative number", body: `{"card":{"number":-4111111111111111}}`, code: CodeInvalidValue, path: "card.number"},
		{name: "fraction", body: `{"card":{"number":4111111111111111.0}}`, code: CodeInvalidValue},
		{name: "exponent", body: `{"card":{"number":4.111111111111111e15}}`, code: CodeInvalidValue},
		{name: "object at field", body: `{"card":{"number":{"n":"4111111111111111"}}}`, code: CodeFieldType, path: "card.number"},
		{name: "array at field", body: `{"card":{"number":["4111111111111111"]}}`, code: CodeFieldType},
		{name: "bool at field", body: `{"card":{"number":true}}`, code: CodeFieldType},
		{name: "object where # expected", body: `{"items":{"0":{"card":{"number":"4111111111111111"}}}}`, code: CodeFieldType, path: "items"},
		{name: "array where key expected", body: `{"card":[{"number":"4111111111111111"}]}`, code: CodeFieldType, path: "card"},
		{name: "top-level array where object expected", body: `[{"card":{"number":"1"}}]`, code: CodeFieldType, path: ""},

		// Documents only some parsers accept.
		{name: "bom", body: "\xef\xbb\xbf{}", code: CodeInvalidJSON},
		{name: "trailing garbage", body: `{"card":{"number":"1"}}x`, code: CodeInvalidJSON},
		{name: "two top-level values", body: `{"card":{"number":"1"}} {"card":{"number":"4111111111111111"}}`, code: CodeInvalidJSON},
		{name: "comment", body: `{"card":{"number":"1"/*x*/}}`, code: CodeInvalidJSON},
		{name: "line comment", body: "{\"a\":1 // x\n}", code: CodeInvalidJSON},
		{name: "nan", body: `{"a":NaN}`, code: CodeInvalidJSON},
		{name: "infinity", body: `{"a":-Infinity}`, code: CodeInvalidJSON},
		{name: "trailing comma", body: `{"a":1,}`, code: CodeInvalidJSON},
		{name: "single quotes", body: `{'a':1}`, code: CodeInvalidJSON},
		{name: "unquoted key", body: `{a:1}`, code: CodeInvalidJSON},
		{name: "leading zero", body: `{"card":{"number":04111111111111111}}`, code: CodeInvalidJSON},
		{name: "plus sign", body: `{"a":+1}`, code: CodeInvalidJSON},
		{name: "hex number", body: `{"a":0x10}`, code: CodeInvalidJSON},
		{name: "raw control char", body: "{\"a\":\"x\ty\"}", code: CodeInvalidJSON},
		{name: "invalid escape", body: `{"a":"\x41"}`, code: CodeInvalidJSON},
		{name: "invalid utf-8", body: "{\"card\":{\"number\":\"\xff4111111111111111\"}}", code: CodeInvalidJSON},
		{name: "overlong utf-8", body: "{\"a\":\"\xc0\xaf\"}", code: CodeInvalidJSON},
		{name: "utf-16 surrogate as utf-8", body: "{\"a\":\"\xed\xa0\x80\"}", code: CodeInvalidJSON},
		{name: "lone high surrogate", body: `{"card":{"number":"\ud800"}}`, code: CodeInvalidJSON},
		{name: "lone low surrogate", body: `{"a":"\udc00"}`, code: CodeInvalidJSON},
		{name: "high then non-surrogate", body: `{"a":"\ud800\u0041"}`, code: CodeInvalidJSON},
		{name: "surrogate pair ok", body: `{"a":"\ud83d\ude00","card":{"number":"1"}}`, want: `{"a":"\ud83d\ude00","card":{"number":"9"}}`},
		{name: "whitespace only", body: " \n", code: CodeInvalidJSON},
		{name: "non-json whitespace", body: "{\"a\":1}\v", code: CodeInvalidJSON},
		{name: "unterminated", body: `{"card":{"number":"4111`, code: CodeInvalidJSON},
		{name: "too deep", body: strings.Repeat("[", 65) + strings.Repeat("]", 65), code: CodeTooDeep},
		{name: "deep but allowed", fields: []Field{}, body: strings.Repeat("[", 64) + strings.Repeat("]", 64), want: strings.Repeat("[", 64) + strings.Repeat("]", 64)},
		{name: "million brackets", body: strings.Repeat("[", 1<<20), code: CodeTooDeep},
		{name: "deep objects", body: strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100), code: CodeTooDeep},
	})
}

func TestRewriteForm(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{name: "byte exact", ct: ctForm, body: "amount=100&card[number]=4111111111111111&card[cvc]=123&note=hi+there%21",
			want: "amount=100&card[number]=9999999999999999&card[cvc]=999&note=hi+there%21"},
		{name: "percent-encoded key", ct: ctForm, body: "card%5Bnumber%5D=4111111111111111", want: "card%5Bnumber%5D=9999999999999999"},
		{name: "encoded letters in key", ct: ctForm, body: "c%61rd[number]=4111111111111111", want: "c%61rd[number]=9999999999999999"},
		{name: "plus is space", ct: ctForm, body: "card[number]=4111+1111+1111+1111", want: "card[number]=9999999999999999"},
		{name: "percent-encoded digits", ct: ctForm, body: "card[number]=%34111111111111111", want: "card[number]=9999999999999999"},
		{name: "repeated key", ct: ctForm, body: "card[number]=1&card[number]=4111111111111111", want: "card[number]=9&card[number]=9999999999999999"},
		{name: "array suffix", ct: ctForm, body: "card[number][]=4111111111111111", want: "card[number][]=9999999999999999"},
		{name: "nested suffix", ct: ctForm, body: "card[number][x]=4111111111111111", want: "card[number][x]=9999999999999999"},
		{name: "dot notation", ct: ctForm, body: "card.number=4111111111111111", want: "card.number=9999999999999999"},
		{name: "key without value", ct: ctForm, body: "card[number]&a=1", want: "card[number]&a=1"},
		{name: "empty pairs", ct: ctForm, body: "&&card[number]=12&", want: "&&card[number]=99&"},
		{name: "charset utf-8", ct: ctForm + "; charset=UTF-8", body: "card[number]=12", want: "card[number]=99"},
		{name: "semicolon", ct: ctForm, body: "a=1;card[number]=4111111111111111", code: CodeInvalidForm},
		{name: "bad escape", ct: ctForm, body: "card[number]=%zz", code: CodeInvalidForm, path: "card[number]"},
		{name: "short escape", ct: ctForm, body: "card[number]=41%4", code: CodeInvalidForm},
		{name: "invalid utf-8 escape", ct: ctForm, body: "card[number]=%ff", code: CodeInvalidForm},
		{name: "raw non-ascii", ct: ctForm, body: "a=\xc3\xa9", code: CodeInvalidForm},
		{name: "raw control", ct: ctForm, body: "a=1\n", code: CodeInvalidForm},
		{name: "malformed brackets", ct: ctForm, body: "card[number=4111111111111111", code: CodeInvalidForm},
		{name: "json in a form body", ct: ctForm, body: `{"card":{"number":"4111111111111111"}}`, code: CodeInvalidForm},
	})
}

func TestRewriteMediaType(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{name: "plus json", ct: "application/vnd.api+json", body: `{"card":{"number":"12"}}`, want: `{"card":{"number":"99"}}`},
		{name: "json charset", ct: "application/json; charset=utf-8", body: `{"card":{"number":"12"}}`, want: `{"card":{"number":"99"}}`},
		{name: "latin1", ct: "application/json; charset=iso-8859-1", body: `{}`, code: CodeUnsupportedMediaType},
		{name: "utf-16", ct: "application/json; charset=utf-16", body: `{}`, code: CodeUnsupportedMediaType},
		{name: "duplicate charset", ct: "application/json; charset=utf-8; charset=latin1", body: `{}`, code: CodeUnsupportedMediaType},
		{name: "text plain", ct: "text/plain", body: `{"card":{"number":"4111111111111111"}}`, code: CodeUnsupportedMediaType},
		{name: "no content type", ct: " ", body: `{"card":{"number":"4111111111111111"}}`, code: CodeUnsupportedMediaType},
		{name: "multipart", ct: "multipart/form-data; boundary=x", body: "--x\r\n", code: CodeUnsupportedMediaType},
		{name: "malformed", ct: "application/json;;", body: `{}`, code: CodeUnsupportedMediaType},
		{name: "no fields passes through", ct: "text/plain", fields: []Field{}, body: "4111111111111111", want: "4111111111111111"},
	})
}

func TestGuard(t *testing.T) {
	none := []Field{}
	tok := GuardTokenize
	runRewriteCases(t, []rewriteCase{
		{name: "reject string", fields: none, body: `{"order":{"note":"4111111111111111"}}`, code: CodeCardNumberDetected, path: "order.note"},
		{name: "reject spaced", fields: none, body: `{"n":"4111 1111 1111 1111"}`, code: CodeCardNumberDetected, path: "n"},
		{name: "reject dashed", fields: none, body: `{"n":"5555-5555-5555-4444"}`, code: CodeCardNumberDetected},
		{name: "reject in text", fields: none, body: `{"n":"my card is 4111 1111 1111 1111, exp 12/30"}`, code: CodeCardNumberDetected},
		{name: "reject next to more digits", fields: none, body: `{"n":"4111 1111 1111 1111 2030"}`, code: CodeCardNumberDetected},
		{name: "reject trailing digit group", fields: none, body: `{"n":"4111 1111 1111 1111 5"}`, code: CodeCardNumberDetected},
		{name: "reject number", fields: none, body: `{"items":[1,378282246310005]}`, code: CodeCardNumberDetected, path: "items.1"},
		{name: "reject exponent number", fields: none, body: `{"n":4.111111111111111e15}`, code: CodeCardNumberDetected},
		{name: "reject negative number", fields: none, body: `{"n":-4111111111111111}`, code: CodeCardNumberDetected},
		{name: "reject escaped", fields: none, body: `{"n":"\u0034111111111111111"}`, code: CodeCardNumberDetected},
		{name: "reject fullwidth digits", fields: none, body: `{"n":"４１１１１１１１１１１１１１１１"}`, code: CodeCardNumberDetected},
		{name: "reject key, path masked", fields: none, body: `{"cards":{"4111111111111111":true}}`, code: CodeCardNumberDetected, path: "cards.*"},
		{name: "reject top-level string", fields: none, body: `"6011111111111117"`, code: CodeCardNumberDetected},
		{name: "reject form value", ct: ctForm, fields: none, body: "a=1&note=card+4111-1111-1111-1111", code: CodeCardNumberDetected, path: "note"},
		{name: "reject form key", ct: ctForm, fields: none, body: "4111111111111111=1", code: CodeCardNumberDetected, path: "*"},
		{name: "amex diners jcb unionpay mc2", fields: none, body: `{"a":"30569309025904"}`, code: CodeCardNumberDetected},
		{name: "jcb", fields: none, body: `{"a":"3530111333300000"}`, code: CodeCardNumberDetected},
		{name: "unionpay", fields: none, body: `{"a":"6200000000000005"}`, code: CodeCardNumberDetected},
		{name: "mastercard 2-series", fields: none, body: `{"a":"2223003122003222"}`, code: CodeCardNumberDetected},
		{name: "luhn fails", fields: none, body: `{"a":"4111111111111112","b":4111111111111112}`, want: `{"a":"4111111111111112","b":4111111111111112}`},
		{name: "unknown prefix", fields: none, body: `{"ts":1700000000009}`, want: `{"ts":1700000000009}`},
		{name: "twenty digits", fields: none, body: `{"id":"41111111111111111111"}`, want: `{"id":"41111111111111111111"}`},
		{name: "short", fields: none, body: `{"id":"424242424242"}`, want: `{"id":"424242424242"}`},
		{name: "fraction is not a card", fields: none, body: `{"n":411111111111111.1}`, want: `{"n":411111111111111.1}`},
		// An app that truncates to an integer, and a person, read a card.
		{name: "reject card with a fraction", fields: none, body: `{"n":4111111111111111.3}`, code: CodeCardNumberDetected, path: "n"},
		{name: "reject card with a fraction, exponent", fields: none, body: `{"n":4.1111111111111113e15}`, code: CodeCardNumberDetected, path: "n"},
		{name: "tokenize card with a fraction", fields: none, guard: tok, body: `[-4111111111111111.75]`, want: `[9999999999999999]`},
		{name: "reject exponent beyond 100", fields: none, body: `{"n":4111111111111111` + strings.Repeat("0", 101) + `e-101}`, code: CodeCardNumberDetected},
		{name: "reject point moved far right", fields: none, body: `{"n":0.` + strings.Repeat("0", 184) + `4111111111111111e200}`, code: CodeCardNumberDetected},
		// Read as float64 (JavaScript, Python float, Go float64).
		{name: "reject rounds up to a card", fields: none, body: `{"n":4111111111111110.9999999}`, code: CodeCardNumberDetected},
		{name: "reject rounds up to a card, exponent", fields: none, body: `{"n":4.1111111111111109999e15}`, code: CodeCardNumberDetected},
		{name: "reject rounds to a card above 2^53", fields: none, body: `{"n":9792000000000051}`, code: CodeCardNumberDetected},
		{name: "huge exponents are no card", fields: none, body: `[1e400,-1e400,4111111111111111e-400,1e-400]`, want: `[1e400,-1e400,4111111111111111e-400,1e-400]`},
		// Strings that are numbers, as PHP's (int), Number() and float() read them.
		{name: "reject numeric string with exponent", fields: none, body: `{"n":"4.111111111111111e15"}`, code: CodeCardNumberDetected, path: "n"},
		{name: "reject numeric string with leading zero", fields: none, body: `{"n":" 04111111111111111 "}`, code: CodeCardNumberDetected},
		{name: "reject numeric form value", ct: ctForm, fields: none, body: "n=%2B4.111111111111111E%2B15", code: CodeCardNumberDetected},
		{name: "tokenize numeric string", fields: none, guard: tok, body: `{"n":"04111111111111111"}`, want: `{"n":"9999999999999999"}`},
		{name: "numeric-looking text is not a number", fields: none, body: `{"n":"4.111111111111111e15x","m":"1.2.3","o":"e15"}`, want: `{"n":"4.111111111111111e15x","m":"1.2.3","o":"e15"}`},
		{name: "digits after the point are not searched", fields: none, body: `{"p":0.4111111111111111,"q":1.4111111111111111}`, want: `{"p":0.4111111111111111,"q":1.4111111111111111}`},
		{name: "ignored path", fields: none, ignore: []string{"order.id"}, body: `{"order":{"id":"4111111111111111"}}`, want: `{"order":{"id":"4111111111111111"}}`},
		{name: "ignored subtree", fields: none, ignore: []string{"meta"}, body: `{"meta":{"x":["4111111111111111"]}}`, want: `{"meta":{"x":["4111111111111111"]}}`},
		{name: "ignore is exact", fields: none, ignore: []string{"order.id"}, body: `{"ORDER":{"id":"4111111111111111"}}`, code: CodeCardNumberDetected},
		{name: "ignore in form", ct: ctForm, fields: none, ignore: []string{"order.id"}, body: "order[id]=4111111111111111", want: "order[id]=4111111111111111"},
		{name: "configured field is not a guard hit", body: `{"card":{"number":"4111111111111111"}}`, want: `{"card":{"number":"9999999999999999"}}`},
		{name: "off", fields: none, guard: GuardOff, body: `{"n":"4111111111111111"}`, want: `{"n":"4111111111111111"}`},
		{name: "tokenize in text", fields: none, guard: tok, body: `{"n":"card: 4111 1111 1111 1111 \u00e9", "m":5555555555554444}`,
			want: `{"n":"card: 9999999999999999 é", "m":9999999999999999}`},
		{name: "tokenize two in one string", fields: none, guard: tok, body: `{"n":"4111111111111111/5555555555554444"}`,
			want: `{"n":"9999999999999999/9999999999999999"}`},
		{name: "tokenize key", fields: none, guard: tok, body: `{"4111111111111111":1}`, want: `{"9999999999999999":1}`},
		{name: "tokenize exponent number", fields: none, guard: tok, body: `[4.111111111111111e15]`, want: `[9999999999999999]`},
		{name: "tokenize form", ct: ctForm, fields: none, guard: tok, body: "a=%34111111111111111&b=x", want: "a=9999999999999999&b=x"},
		// Digits of another script end an ASCII-only parser's number: the
		// 16 ASCII digits are a card to it, the 17 digits are not one (Visa
		// issues 13, 16 and 19).
		{name: "reject ascii card before an arabic digit", fields: none, body: `{"n":"4000056655665556٨"}`, code: CodeCardNumberDetected, path: "n"},
		{name: "tokenize ascii card before an arabic digit", fields: none, guard: tok, body: `{"n":"4000056655665556٨"}`, want: `{"n":"9999999999999999٨"}`},
		{name: "tokenize ascii card before an arabic digit, form", ct: ctForm, fields: none, guard: tok, body: "n=4000056655665556%D9%A8", want: "n=9999999999999999%D9%A8"},
		// A Visa number to an ASCII-only reader; to a Unicode-aware one the
		// second group on, the arabic 8 included, would be a 17-digit
		// UnionPay number, but not one grouped as cards are (4-4-5-4), so
		// there is one number to tokenize, and what is left reads as no card
		// either way.
		{name: "tokenize two readings", fields: none, guard: tok, body: `{"n":"4000 6200 0000 2029٨ 1007"}`, want: `{"n":"9999999999999999٨ 1007"}`},
		{name: "reject two readings", fields: none, body: `{"n":"4000 6200 0000 2029٨ 1007"}`, code: CodeCardNumberDetected, path: "n"},
		{name: "reject zero-width separators", fields: none, body: `{"n":"4111\u200b1111\u00ad1111\u20601111"}`, code: CodeCardNumberDetected, path: "n"},
		{name: "tokenize zero-width separators", fields: none, guard: tok, body: `{"n":"4111\u200b1111\u200b1111\u200b1111!"}`, want: `{"n":"9999999999999999!"}`},
		{name: "reject invisible separators", fields: none, body: `{"n":"4111\ufe0f1111\u034f1111\u31641111"}`, code: CodeCardNumberDetected},
		{name: "reject blank braille and minus sign", fields: none, body: `{"n":"4111\u28001111\u22121111\u22121111"}`, code: CodeCardNumberDetected},
		{name: "lines and dots do not join", fields: none, body: `{"n":"4111\n1111\n1111\n1111","m":"4111.1111.1111.1111"}`, want: `{"n":"4111\n1111\n1111\n1111","m":"4111.1111.1111.1111"}`},
		{name: "tokenize alongside fields", guard: tok, body: `{"card":{"number":"4111111111111111"},"n":"5555555555554444"}`,
			want: `{"card":{"number":"9999999999999999"},"n":"9999999999999999"}`},
	})
}

func TestReplaceCallback(t *testing.T) {
	r, err := New(Config{Fields: checkoutFields})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"items":[{"card":{"number":"4111111111111111"}}],"card":{"number":5555555555554444,"cvc":"123"}}`)

	var got []Value
	calls := 0
	out, err := r.Rewrite(body, ctJSON, func(vals []Value) ([]string, error) {
		calls++
		got = vals
		return []string{"a", "1234", "b\"\\\n"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("replace called %d times, want 1", calls)
	}
	want := []Value{
		{Field: 2, Spec: 0, Path: "items.0.card.number", Text: "4111111111111111", Kind: KindString, Offset: bytes.Index(body, []byte(`"4111111111111111"`))},
		{Field: 0, Spec: 0, Path: "card.number", Text: "5555555555554444", Kind: KindNumber, Offset: bytes.Index(body, []byte(`5555555555554444`))},
		{Field: 1, Spec: 1, Path: "card.cvc", Text: "123", Kind: KindString, Offset: bytes.Index(body, []byte(`"123"`))},
	}
	if len(got) != len(want) {
		t.Fatalf("values = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if w := `{"items":[{"card":{"number":"a"}}],"card":{"number":1234,"cvc":"b\"\\\n"}}`; string(out) != w {
		t.Errorf("out = %s, want %s", out, w)
	}

	sentinel := errors.New("vault unavailable")
	_, err = r.Rewrite(body, ctJSON, func([]Value) ([]string, error) { return nil, sentinel })
	if !errors.Is(err, sentinel) {
		t.Errorf("callback error = %v, want it wrapped", err)
	}
	for name, repl := range map[string][]string{
		"too few":             {"1"},
		"leading zero number": {"1", "0123", "1"},
		"non-digit number":    {"1", "tok_x", "1"},
		"invalid utf-8":       {"\xff", "1", "1"},
	} {
		_, err = r.Rewrite(body, ctJSON, func([]Value) ([]string, error) { return repl, nil })
		var re *Error
		if !errors.As(err, &re) || re.Code != CodeInvalidReplacement {
			t.Errorf("%s: error = %v, want %s", name, err, CodeInvalidReplacement)
		}
	}

	// Nothing to replace: the callback is not called and the body is returned as is.
	plain := []byte(`{"card":{"number":null}}`)
	out, err = r.Rewrite(plain, ctJSON, func([]Value) ([]string, error) {
		t.Error("replace called with nothing to replace")
		return nil, nil
	})
	if err != nil || &out[0] != &plain[0] {
		t.Errorf("Rewrite without values = %q, %v; want the same slice", out, err)
	}
	// The guard rejects before anything is tokenized.
	_, err = r.Rewrite([]byte(`{"card":{"number":"1"},"x":"4111111111111111"}`), ctJSON, func([]Value) ([]string, error) {
		t.Error("replace called although the guard rejects")
		return nil, nil
	})
	if re := (*Error)(nil); !errors.As(err, &re) || re.Code != CodeCardNumberDetected {
		t.Errorf("error = %v, want %s", err, CodeCardNumberDetected)
	}
}

// TestEgress shows the reveal direction: tokens at the configured fields
// become card numbers; nothing else changes and the guard (still on) does
// not look at what was revealed.
func TestEgress(t *testing.T) {
	r, err := New(Config{Fields: []Field{{Form: "card[number]"}, {Form: "card[cvc]", Spec: 1}, {JSON: "source.card.number"}}})
	if err != nil {
		t.Fatal(err)
	}
	vaultOf := map[string]string{"4111119876541111": "4111111111111111", "tok_abc": "737"}
	reveal := func(vals []Value) ([]string, error) {
		out := make([]string, len(vals))
		for i, v := range vals {
			p, ok := vaultOf[v.Text]
			if !ok {
				return nil, errors.New("unknown token")
			}
			out[i] = p
		}
		return out, nil
	}
	out, err := r.Rewrite([]byte("card[number]=4111119876541111&card[cvc]=tok_abc&amount=5"), ctForm, reveal)
	if want := "card[number]=4111111111111111&card[cvc]=737&amount=5"; err != nil || string(out) != want {
		t.Errorf("form egress = %q, %v; want %q", out, err, want)
	}
	out, err = r.Rewrite([]byte(`{"source":{"card":{"number":"4111119876541111"}}}`), ctJSON, reveal)
	if want := `{"source":{"card":{"number":"4111111111111111"}}}`; err != nil || string(out) != want {
		t.Errorf("json egress = %q, %v; want %q", out, err, want)
	}
	if _, err := r.Rewrite([]byte(`{"source":{"card":{"number":"nope"}}}`), ctJSON, reveal); err == nil {
		t.Error("unknown token accepted")
	}
}

func TestRewriteQuery(t *testing.T) {
	reject, _ := New(Config{})
	tok, _ := New(Config{Guard: GuardTokenize})
	off, _ := New(Config{Guard: GuardOff})
	for _, tc := range []struct {
		r          *Rewriter
		query      string
		want, code string
	}{
		{reject, "a=1&b=2", "a=1&b=2", ""},
		{reject, "", "", ""},
		{reject, "pan=4111111111111111", "", CodeCardNumberDetected},
		{reject, "a=1;pan=4111+1111+1111+1111", "", CodeCardNumberDetected},
		{reject, "a=%zz&pan=%34111111111111111", "", CodeCardNumberDetected},
		{tok, "a=%zz&pan=4111-1111-1111-1111&b=2", "a=%zz&pan=9999999999999999&b=2", ""},
		{off, "pan=4111111111111111", "pan=4111111111111111", ""},
		// unescape("%u0034111111111111111") is a card number to IIS and JS.
		{reject, "n=%u0034111111111111111", "", CodeInvalidForm},
		{tok, "n=%U0034111111111111111", "", CodeInvalidForm},
		{reject, "n=%u12&m=%uzzzz", "n=%u12&m=%uzzzz", ""}, // no four hex digits: text
		{off, "n=%u0034111111111111111", "n=%u0034111111111111111", ""},
	} {
		got, err := tc.r.RewriteQuery(tc.query, nines)
		if tc.code != "" {
			var re *Error
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Errorf("RewriteQuery(%q) error = %v, want %s", tc.query, err, tc.code)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("RewriteQuery(%q) = %q, %v; want %q", tc.query, got, err, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Fields: []Field{{}}},
		{Fields: []Field{{JSON: "a", Form: "b"}}},
		{Fields: []Field{{JSON: "card..number"}}},
		{Fields: []Field{{JSON: "card.num ber"}}},
		{Fields: []Field{{JSON: "card.*"}}},
		{Fields: []Field{{JSON: strings.Repeat("a.", 33) + "a"}}},
		{Fields: []Field{{JSON: strings.Repeat("a", 257)}}},
		{Fields: []Field{{Form: "card[number"}}},
		{Fields: []Field{{Form: "a\x00"}}},
		{Fields: []Field{{Form: "\xff"}}},
		{Ignore: []string{"a b"}},
		{MaxDepth: -1},
		{Guard: GuardMode(7)},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a bad config", cfg)
		}
	}
	for _, s := range []string{"card.number", "items.#.card.number", "$meta.@id", "a-b_c.0", "#"} {
		if err := ValidateJSONSelector(s); err != nil {
			t.Errorf("ValidateJSONSelector(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"card[number]", "items[#][pan]", "card_number", "a.b[c]"} {
		if err := ValidateFormSelector(s); err != nil {
			t.Errorf("ValidateFormSelector(%q) = %v", s, err)
		}
	}
	if _, err := New(Config{Fields: []Field{{JSON: "a..b"}, {Form: ""}, {}}}); err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Errorf("New reports %v, want every problem", err)
	}
}

// TestConcurrent shares one Rewriter between goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	r, err := New(Config{Fields: checkoutFields, Guard: GuardTokenize})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"card":{"number":"4111111111111111"},"items":[{"card":{"number":"5555555555554444"}}],"n":"6011111111111117"}`)
	want := `{"card":{"number":"9999999999999999"},"items":[{"card":{"number":"9999999999999999"}}],"n":"9999999999999999"}`
	done := make(chan error)
	for range 4 {
		go func() {
			for range 100 {
				out, err := r.Rewrite(body, ctJSON, nines)
				if err == nil && string(out) != want {
					err = errors.New("unexpected output " + string(out))
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestFormReadings: configured form fields match as the most lenient
// framework reads a key (PHP's name mangling, case-insensitive binders,
// "#" over any key); ignore entries exempt a key only as every reader
// reads it.
func TestFormReadings(t *testing.T) {
	fields := []Field{{Form: "card_cvc", Spec: 1}, {Form: "items[#][pan]"}, {Form: "card[number]"}}
	runRewriteCases(t, []rewriteCase{
		// PHP: spaces and dots in the name before '[' become '_'.
		{name: "php dot", ct: ctForm, fields: fields, body: "card.cvc=123", want: "card.cvc=999"},
		{name: "php encoded dot", ct: ctForm, fields: fields, body: "card%2Ecvc=123", want: "card%2Ecvc=999"},
		{name: "php space", ct: ctForm, fields: fields, body: "card+cvc=123", want: "card+cvc=999"},
		{name: "exact flat name", ct: ctForm, fields: fields, body: "card_cvc=123", want: "card_cvc=999"},
		// Echo's binder falls back to case-insensitive names.
		{name: "upper case key", ct: ctForm, fields: fields, body: "CARD[NUMBER]=4111111111111111&Card_Cvc=123", want: "CARD[NUMBER]=9999999999999999&Card_Cvc=999"},
		// PHP's foreach and Rails iterate non-numeric keys as elements.
		{name: "# over a word", ct: ctForm, fields: fields, body: "items[x][pan]=4111111111111111", want: "items[x][pan]=9999999999999999"},
		{name: "# over a negative", ct: ctForm, fields: fields, body: "items[-1][pan]=4111111111111111", want: "items[-1][pan]=9999999999999999"},
		// An ignore entry does not exempt what PHP reads as another name.
		{name: "ignore exact", ct: ctForm, fields: fields, ignore: []string{"order.id"}, body: "order[id]=4111111111111111", want: "order[id]=4111111111111111"},
		{name: "ignore not widened by dots", ct: ctForm, fields: fields, ignore: []string{"order.id"}, body: "order.id.note=4111111111111111", code: CodeCardNumberDetected},
		{name: "ignore is case-exact", ct: ctForm, fields: fields, ignore: []string{"order.id"}, body: "ORDER[id]=4111111111111111", code: CodeCardNumberDetected},
	})
}
