package zoo

import (
	"slices"
	"testing"
)

// findCards is the oracle of the zoo: it must see a card in every spelling
// an app's answer may hold it, and nothing in tokens or other numbers.
func TestFindCards(t *testing.T) {
	pans := testPANs
	for _, tc := range []struct {
		answer string
		want   []string
	}{
		{`{"a":"4111111111111111"}`, []string{"a: 4111…1111"}},
		{`{"a":{"b":["x 4111 1111 1111 1111 y"]}}`, []string{"a.b.0: 4111…1111"}},
		{`{"a":"4111-1111 - 1111-1111"}`, []string{"a: 4111…1111"}},
		{"{\"a\":\"4111\u200b1111\u200b1111\u200b1111\"}", []string{"a: 4111…1111"}},
		{`{"a":"４１１１１１１１１１１１１１１１"}`, []string{"a: 4111…1111"}},
		{`{"a":"٤١١١١١١١١١١١١١١١"}`, []string{"a: 4111…1111"}},
		{`{"a":"4111 1111 1111 1111 2030"}`, []string{"a: 4111…1111"}},
		{`{"a":"4111111111111111.50"}`, []string{"a: 4111…1111"}},
		{`{"4111111111111111":1}`, []string{"4111111111111111 (key): 4111…1111"}},
		{`{"a":4111111111111111}`, []string{"a: 4111…1111"}},
		{`{"a":4.111111111111111e+15}`, []string{"a: 4111…1111"}},
		{`{"a":3.78282246310005E14}`, []string{"a: 3782…0005"}},
		{`{"a":4111111111111111.7}`, []string{"a: 4111…1111"}},
		{`{"a":NaN,"b":"6011111111111117"}`, []string{"b: 6011…1117"}},
		{`not json 5555555555554444`, []string{"(raw answer): 5555…4444"}},
		{`{"a":"4111111111111111","b":"5555 5555 5555 4444"}`, []string{"a: 4111…1111", "b: 5555…4444"}},
		// Not cards: a token, letters between the groups, too many separators,
		// huge exponents, a fraction's digits.
		{`{"a":"4111119384721111"}`, nil},
		{`{"a":"4111x1111x1111x1111"}`, nil},
		{`{"a":"4111    1111 1111 1111"}`, nil},
		{`{"a":"4111.1111.1111.1111","b":"4111/1111/1111/1111","c":"4111\n1111\t1111\n1111"}`, nil},
		{"{\"a\":\"4111\u00ad1111\u20131111\u30001111\"}", []string{"a: 4111…1111"}},
		{`{"a":1e999999999,"b":4111111111111111e-400}`, nil},
		{`{"a":0.4111111111111111}`, nil},
		{`{"a":"41111111111111110"}`, nil},
		{`{"a":"9 4111111111111111"}`, []string{"a: 4111…1111"}},
		{`{"a":3782822463100050}`, nil},
	} {
		if got := findCards([]byte(tc.answer), pans); !slices.Equal(got, tc.want) {
			t.Errorf("findCards(%s) = %q, want %q", tc.answer, got, tc.want)
		}
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"{{PAN}} {{PAN:spaces}} {{PAN:dashes}}", "378282246310005 3782 822463 10005 3782-822463-10005"},
		{`{{PAN:json}}`, `\u0033\u0037\u0038\u0032\u0038\u0032\u0032\u0034\u0036\u0033\u0031\u0030\u0030\u0030\u0035`},
		{"{{PAN:exponent}}", "3.78282246310005E+14"},
		{"POST / HTTP/1.1\r\nContent-Length: {{LEN}}\r\n\r\nab{{END}}GET / HTTP/1.1\r\nContent-Length: {{LEN}}\r\n\r\nxyz",
			"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"},
		{"{{chunked:2}}abc{{/chunked}}", "2\r\nab\r\n1\r\nc\r\n0\r\n\r\n"},
		{"{{base64}}{{utf16be}}1{{/utf16be}}{{/base64}}", "ADE="},
		{"{{utf7}}a+12{{/utf7}}", "a+-+ADEAMg-"},
	} {
		got, err := expand([]byte(tc.raw), "378282246310005")
		if err != nil || string(got) != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
}
