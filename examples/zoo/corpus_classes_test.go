package zoo

import (
	"fmt"
	"strings"
)

// classes are the generated attack classes, by directory name. The
// three classes that read past the configured fields come first (declared-type, method, subpath; header,
// cookie, referer, path), then every class tok already defended.
var classes = map[string]func() []genCase{
	"declared-type": declaredType,
	"method":        otherMethods,
	"subpath":       subpaths,
	"header":        headers,
	"cookie":        cookies,
	"referer":       referers,
	"path":          pathSegments,
	"query":         queries,
	"guard":         guardBaseline,
	"json-dup":      jsonDuplicates,
	"json-escape":   jsonEscapes,
	"json-syntax":   jsonSyntax,
	"number":        numberForms,
	"unicode":       unicodeDigits,
	"encoding":      encodings,
	"charset":       charsets,
	"framing":       framing,
	"smuggling":     smuggling,
	"path-norm":     pathNormalisation,
	"php-keys":      phpKeys,
	"qs":            qsKeys,
	"multipart":     multipartTricks,
	"form":          formTricks,
}

// declaredType: a body whose declared type tok reads one way (or not at
// all) that apps decode as JSON whatever the type: Flask get_json(force=
// True), PHP json_decode(php://input), Go json.Unmarshal, Ruby JSON.parse
// (which skips /* */ comments), Express JSON.parse of the raw text.
func declaredType() []genCase {
	cts := []struct{ name, ct string }{
		{"form", ctForm},
		{"text", ctText},
		{"untyped", ""},
		{"octet-stream", "application/octet-stream"},
		{"multipart", ctMultipart},
		{"xml", "application/xml"},
	}
	bodies := []struct{ name, body string }{
		{"string", jsonCard},
		{"escaped", `{"card":{"number":"{{PAN:json}}"}}`},
		{"number", `{"card":{"number":{{PAN}}}}`},
		{"exponent", `{"card":{"number":{{PAN:exponent}}}}`},
		{"comment", `/**/{"card":{"number":"{{PAN:json}}"}}`},
		{"array", `["{{PAN:json}}"]`},
		{"bare-string", `"{{PAN:json}}"`},
		{"bare-exponent", `{{PAN:exponent}}`},
	}
	var out []genCase
	for _, path := range []string{"/checkout", "/profile", "/api/v1/cart"} {
		for _, ct := range cts {
			for _, b := range bodies {
				out = append(out, genCase{slug(path) + "-" + ct.name + "-" + b.name,
					req{target: path, ct: ct.ct, body: b.body}})
			}
		}
	}
	// JSON that only lenient parsers take, sent as JSON.
	for _, b := range []struct{ name, body string }{
		{"bom", "\ufeff" + jsonNote},
		{"nan", `{"x":NaN,"note":"{{PAN:json}}"}`},
		{"line-comment", "// c\n" + jsonNote},
		{"trailing-comma", `{"note":"{{PAN}}",}`},
		{"single-quotes", `{'note':'{{PAN}}'}`},
		{"second-document", `{"a":1}` + "\n" + jsonNote},
	} {
		for _, path := range []string{"/checkout", "/profile"} {
			out = append(out, genCase{"lenient-json-" + b.name + "-" + slug(path), req{target: path, ct: ctJSON, body: b.body}})
			out = append(out, genCase{"lenient-text-" + b.name + "-" + slug(path), req{target: path, ct: ctText, body: b.body}})
		}
	}
	return out
}

// otherMethods: the checkout route is POST /checkout; the apps serve other
// methods too (PHP and the method-less Go mux serve every method; Rack
// turns POST into PUT on _method).
func otherMethods() []genCase {
	var out []genCase
	for _, m := range []string{"PUT", "PATCH", "DELETE", "GET", "OPTIONS", "post", "Post"} {
		for _, k := range bodyKinds {
			out = append(out, genCase{methodName(m) + "-" + k.name, req{method: m, target: "/checkout", ct: k.ct, body: k.body}})
		}
	}
	for _, h := range []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"} {
		for _, m := range []string{"PUT", "POST"} {
			out = append(out, genCase{"override-" + slug(h) + "-" + strings.ToLower(m) + "-multipart",
				req{method: "PUT", target: "/checkout", hdr: []string{h + ": " + m}, ct: ctMultipart, body: mpField}})
			out = append(out, genCase{"override-" + slug(h) + "-" + strings.ToLower(m) + "-json",
				req{target: "/checkout", hdr: []string{h + ": " + m}, ct: ctJSON, body: jsonNote}})
		}
	}
	out = append(out,
		genCase{"override-form-method-put", req{target: "/checkout", ct: ctForm, body: "_method=PUT&" + formCard}},
		genCase{"override-form-method-patch-profile", req{target: "/profile", ct: ctForm, body: "_method=PATCH&" + formNote}},
		genCase{"override-query-method", req{target: "/checkout?_method=PUT", ct: ctMultipart, body: mpField}},
		genCase{"override-multipart-method", req{target: "/checkout", ct: ctMultipart,
			body: multipart(part{name: "_method", body: "PUT"}, part{name: "card[number]", body: "{{PAN}}"})}},
	)
	return out
}

// methodName keeps a method's case in a case name: "post" is "post-lower".
func methodName(m string) string {
	switch m {
	case strings.ToUpper(m):
		return strings.ToLower(m)
	case strings.ToLower(m):
		return m + "-lower"
	}
	return strings.ToLower(m) + "-mixed"
}

// subpaths: paths that are not /checkout to tok but run the checkout
// script (PHP's docroot falls back to the nearest index.php, and takes
// PATH_INFO) or a catch-all handler.
func subpaths() []genCase {
	var out []genCase
	paths := []string{"/checkout/index.php", "/checkout/anything", "/checkout/index.php/x", "/checkout.php",
		"/index.php/checkout", "/checkout/x/y", "/checkout.json", "/checkout/", "/checkout/index.php?x=1"}
	kinds := []string{"json-field", "form-field", "multipart-field", "multipart-file", "text-json", "untyped-form"}
	for _, p := range paths {
		for _, k := range bodyKinds {
			if !contains(kinds, k.name) {
				continue
			}
			out = append(out, genCase{slug(p) + "-" + k.name, req{target: p, ct: k.ct, body: k.body}})
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// headers: a card outside the body, in a request header.
func headers() []genCase {
	var out []genCase
	names := []string{"X-Card-Number", "X-Card", "X-Payment-Card", "User-Agent", "X-Request-Id", "Accept-Language", "X-Forwarded-For", "Forwarded", "Authorization", "X_Card_Number"}
	forms := []string{"{{PAN}}", "{{PAN:spaces}}", "{{PAN:dashes}}"}
	for _, n := range names {
		for i, f := range forms {
			v := f
			switch n {
			case "Authorization":
				v = "Bearer " + f
			case "Forwarded":
				v = `for="` + f + `"`
			}
			out = append(out, genCase{fmt.Sprintf("%s-%d-get", pathSlug(n), i), req{method: "GET", target: "/profile", hdr: []string{n + ": " + v}}})
		}
		out = append(out, genCase{pathSlug(n) + "-checkout", req{target: "/checkout", hdr: []string{n + ": {{PAN}}"}, ct: ctJSON, body: `{"card":{"number":"tok"}}`}})
	}
	out = append(out,
		genCase{"basic-auth", req{method: "GET", target: "/profile", hdr: []string{"Authorization: Basic {{base64}}{{PAN}}:x{{/base64}}"}}},
		genCase{"obs-fold", req{method: "GET", target: "/profile", hdr: []string{"X-Note: card", " {{PAN}}"}}},
		genCase{"two-headers", req{method: "GET", target: "/profile", hdr: []string{"X-Card: 1", "X-Card: {{PAN}}"}}},
		genCase{"header-name", req{method: "GET", target: "/profile", hdr: []string{"X-{{PAN}}: 1"}}},
		genCase{"percent-encoded", req{method: "GET", target: "/profile", hdr: []string{"X-Card: {{PAN:percent}}"}}},
		genCase{"json-header", req{method: "GET", target: "/profile", hdr: []string{`X-Payment: {"card":{"number":"{{PAN}}"}}`}}},
		genCase{"content-disposition", req{target: "/profile", hdr: []string{`Content-Disposition: attachment; filename="{{PAN}}.txt"`}, ct: "application/octet-stream", body: "x"}},
	)
	return out
}

// cookies: a card in a cookie, which every framework parses (and most
// percent-decode; PHP builds arrays of card[number]).
func cookies() []genCase {
	var out []genCase
	for _, c := range []struct{ name, cookie string }{
		{"plain", "card={{PAN}}"},
		{"spaces", "card={{PAN:spaces}}"},
		{"dashes", "card={{PAN:dashes}}"},
		{"quoted", `card="{{PAN}}"`},
		{"percent", "card={{PAN:percent}}"},
		{"php-array", "card[number]={{PAN}}"},
		{"second-of-three", "a=1; card={{PAN}}; b=2"},
		{"json", `cart={"card":"{{PAN}}"}`},
		{"json-percent", "cart={{urlencode}}" + `{"card":"{{PAN}}"}` + "{{/urlencode}}"},
		{"express-json-cookie", "cart=j:{{urlencode}}" + `{"card":"{{PAN}}"}` + "{{/urlencode}}"},
		{"name", "{{PAN}}=1"},
		{"version", "$Version=1; card={{PAN}}"},
	} {
		out = append(out, genCase{c.name + "-get", req{method: "GET", target: "/profile", hdr: []string{"Cookie: " + c.cookie}}})
		out = append(out, genCase{c.name + "-checkout", req{target: "/checkout", hdr: []string{"Cookie: " + c.cookie}, ct: ctJSON, body: `{"card":{"number":"tok"}}`}})
	}
	out = append(out, genCase{"two-cookie-headers", req{method: "GET", target: "/profile", hdr: []string{"Cookie: a=1", "Cookie: card={{PAN}}"}}})
	return out
}

// referers: the page the shopper came from, query and all.
func referers() []genCase {
	var out []genCase
	for _, r := range []struct{ name, v string }{
		{"query", "https://shop.example/pay?card={{PAN}}"},
		{"query-spaces", "https://shop.example/pay?card={{PAN:spaces}}"},
		{"query-percent", "https://shop.example/pay?card={{PAN:percent}}"},
		{"path", "https://shop.example/cards/{{PAN}}/edit"},
		{"fragment", "https://shop.example/pay#card={{PAN}}"},
		{"relative", "/pay?card={{PAN}}"},
	} {
		out = append(out, genCase{r.name + "-get", req{method: "GET", target: "/profile", hdr: []string{"Referer: " + r.v}}})
		out = append(out, genCase{r.name + "-checkout", req{target: "/checkout", hdr: []string{"Referer: " + r.v}, ct: ctJSON, body: `{"card":{"number":"tok"}}`}})
	}
	out = append(out, genCase{"origin", req{method: "GET", target: "/profile", hdr: []string{"Origin: https://{{PAN}}.example"}}})
	return out
}

// pathSegments: a card in the path, which routers hand the app as a
// parameter or PATH_INFO.
func pathSegments() []genCase {
	var out []genCase
	for _, p := range []string{
		"/checkout/{{PAN}}", "/checkout;{{PAN}}", "/{{PAN}}", "/orders/{{PAN}}", "/orders/{{PAN}}/pay",
		"/checkout/{{PAN:percent}}", "/checkout;card={{PAN}}", "/profile/{{PAN:dashes}}", "/search/{{PAN}}.json",
		"/checkout/index.php/{{PAN}}", "/checkout%3B{{PAN}}", "/cards/{{PAN}}%20", "/cards/{{PAN:join=%20}}",
		"/cards/{{urlencode}}{{PAN:fullwidth}}{{/urlencode}}", "/profile/{{PAN}};jsessionid=1",
	} {
		name := pathSlug(strings.NewReplacer("{{PAN", "card", "urlencode", "", "{{/", "", "}}", "", "{{", "").Replace(p))
		out = append(out, genCase{"get-" + name, req{method: "GET", target: p}})
		out = append(out, genCase{"post-" + name, req{target: p, ct: ctJSON, body: `{"card":{"number":"tok"}}`}})
	}
	return out
}

// queries: the guard's query reading, which tok already defends.
func queries() []genCase {
	var out []genCase
	for _, q := range []struct{ name, q string }{
		{"plain", "q={{PAN}}"},
		{"plus-spaces", "q={{PAN:join=+}}"},
		{"pct20", "q={{PAN:join=%20}}"},
		{"dashes", "q={{PAN:dashes}}"},
		{"percent-digits", "q={{PAN:percent}}"},
		{"semicolon", "a=1;q={{PAN}}"},
		{"key", "{{PAN}}=1"},
		{"bare", "{{PAN}}"},
		{"array", "q[]={{PAN}}"},
		{"nested", "card[number]={{PAN}}"},
		{"encoded-brackets", "card%5Bnumber%5D={{PAN}}"},
		{"php-dot", "card.number={{PAN}}"},
		{"repeated", "q=1&q={{PAN}}"},
		{"fullwidth", "q={{urlencode}}{{PAN:fullwidth}}{{/urlencode}}"},
		{"arabic", "q={{urlencode}}{{PAN:arabic}}{{/urlencode}}"},
		{"zwsp", "q={{urlencode}}{{PAN:zwsp}}{{/urlencode}}"},
		{"bad-escape-before", "x=%zz&q={{PAN}}"},
		{"json", "q={{urlencode}}" + `{"card":"{{PAN}}"}` + "{{/urlencode}}"},
		{"double-encoded", "q={{urlencode}}{{PAN:percent}}{{/urlencode}}"},
	} {
		out = append(out, genCase{q.name + "-get", req{method: "GET", target: "/search?" + q.q}})
		out = append(out, genCase{q.name + "-checkout", req{target: "/checkout?" + q.q, ct: ctJSON, body: `{"card":{"number":"tok"}}`}})
	}
	return out
}

// guardBaseline: card numbers where no field is configured, in bodies tok
// reads; the guard's own class.
func guardBaseline() []genCase {
	var out []genCase
	for _, path := range []string{"/checkout", "/profile"} {
		for _, b := range []struct{ name, ct, body string }{
			{"json-note", ctJSON, jsonNote},
			{"json-spaces", ctJSON, `{"note":"card {{PAN:spaces}} thanks"}`},
			{"json-dashes", ctJSON, `{"note":"{{PAN:dashes}}"}`},
			{"json-number", ctJSON, `{"note":{{PAN}}}`},
			{"json-key", ctJSON, `{"{{PAN}}":true}`},
			{"json-array", ctJSON, `{"x":[1,"{{PAN}}"]}`},
			{"json-deep", ctJSON, `{"a":{"b":{"c":{"d":["{{PAN}}"]}}}}`},
			{"form-note", ctForm, formNote},
			{"form-spaces", ctForm, "note={{urlencode}}{{PAN:spaces}}{{/urlencode}}"},
			{"form-key", ctForm, "{{PAN}}=1"},
			{"form-extra", ctForm, "card[number]=tok&card[backup]={{PAN}}"},
			{"json-extra", ctJSON, `{"card":{"number":"tok","backup":"{{PAN}}"}}`},
			{"json-second-card", ctJSON, `{"card":{"number":"{{PAN}}"},"card2":{"number":"{{PAN}}"}}`},
		} {
			out = append(out, genCase{slug(path) + "-" + b.name, req{target: path, ct: b.ct, body: b.body}})
		}
	}
	return out
}

// jsonDuplicates: duplicate keys, where parsers keep the last (Go,
// Python, JS, PHP, Ruby) and gjson the first.
func jsonDuplicates() []genCase {
	var out []genCase
	for _, b := range []struct{ name, body string }{
		{"leaf-last", `{"card":{"number":"4111111111111112","number":"{{PAN}}"}}`},
		{"leaf-first", `{"card":{"number":"{{PAN}}","number":"4111111111111112"}}`},
		{"parent", `{"card":{"number":"1"},"card":{"number":"{{PAN}}"}}`},
		{"case", `{"card":{"number":"1","NUMBER":"{{PAN}}"}}`},
		{"case-parent", `{"card":{"number":"1"},"Card":{"Number":"{{PAN}}"}}`},
		{"escape", `{"card":{"number":"1","n\u0075mber":"{{PAN}}"}}`},
		{"note", `{"note":"x","note":"{{PAN}}"}`},
		{"kelvin", "{\"card\":{\"number\":\"1\",\"\u212aey\":\"{{PAN}}\"}}"},
		{"long-s", "{\"card\":{\"number\":\"1\"},\"\u017fession\":\"{{PAN}}\"}"},
		{"array-object", `{"card":[{"number":"{{PAN}}"}]}`},
	} {
		for _, path := range []string{"/checkout", "/profile"} {
			out = append(out, genCase{b.name + "-" + slug(path), req{target: path, ct: ctJSON, body: b.body}})
		}
	}
	return out
}

// jsonEscapes: escapes in keys and values.
func jsonEscapes() []genCase {
	var out []genCase
	for _, b := range []struct{ name, body string }{
		{"value-digits", `{"card":{"number":"{{PAN:json}}"}}`},
		{"key", `{"\u0063ard":{"\u006e\u0075mber":"{{PAN}}"}}`},
		{"note-digits", `{"note":"{{PAN:json}}"}`},
		{"note-escaped-spaces", `{"note":"{{PAN:spaces}}"}`},
		{"solidus", `{"note":"{{PAN}}\/x"}`},
		{"unicode-key", `{"n\u00f6te":"{{PAN}}"}`},
		{"nul-key", `{"card\u0000":{"number":"{{PAN}}"}}`},
		{"surrogate-pair", `{"a":"\ud83d\ude00","note":"{{PAN}}"}`},
		{"lone-surrogate", `{"a":"\ud800","note":"{{PAN}}"}`},
		{"invalid-utf8", "{\"a\":\"\xff\",\"note\":\"{{PAN}}\"}"},
		{"overlong-digit", "{\"note\":\"\xc0\xb4{{PAN}}\"}"},
	} {
		for _, path := range []string{"/checkout", "/profile"} {
			out = append(out, genCase{b.name + "-" + slug(path), req{target: path, ct: ctJSON, body: b.body}})
		}
	}
	return out
}

// jsonSyntax: JSON tok reads strictly (depth, size, the types frameworks
// take for JSON) next to the same bodies where tok does not read them.
func jsonSyntax() []genCase {
	deep := strings.Repeat(`{"a":`, 70) + `"{{PAN}}"` + strings.Repeat("}", 70)
	pad := `{"pad":"{{repeat:1100000}}x{{/repeat}}","note":"{{PAN}}"}`
	var out []genCase
	for _, b := range []struct{ name, path, ct, body string }{
		{"deep-70-checkout", "/checkout", ctJSON, deep},
		{"deep-70-profile", "/profile", ctJSON, deep},
		{"deep-70-text", "/profile", ctText, deep},
		{"brackets-200000", "/profile", ctJSON, "{{repeat:200000}}[{{/repeat}}"},
		{"over-max-body-checkout", "/checkout", ctJSON, pad},
		{"over-max-body-profile", "/profile", ctJSON, pad},
		{"over-max-body-text", "/profile", ctText, pad},
		{"over-max-body-form", "/profile", ctForm, "pad={{repeat:1100000}}x{{/repeat}}&note={{PAN}}"},
		{"problem-json", "/profile", "application/problem+json", jsonNote},
		{"vnd-api-json", "/profile", "application/vnd.api+json", jsonNote},
		{"text-x-json", "/profile", "text/x-json", jsonNote},
		{"jsonrequest", "/profile", "application/jsonrequest", jsonNote},
		{"x-json", "/profile", "application/x-json", jsonNote},
		{"csp-report", "/profile", "application/csp-report", jsonNote},
		{"json-patch", "/profile", "application/json-patch+json", `[{"op":"add","path":"/note","value":"{{PAN}}"}]`},
		{"ndjson", "/profile", "application/x-ndjson", `{"a":1}` + "\n" + jsonNote + "\n"},
		{"text-json-type", "/profile", "text/json", jsonNote},
		{"json-uppercase-type", "/profile", "APPLICATION/JSON", jsonNote},
		{"json-type-params", "/profile", "application/json; foo=bar", jsonNote},
		{"json-type-malformed", "/profile", "application/json;;", jsonNote},
		{"javascript", "/profile", "application/javascript", jsonNote},
	} {
		out = append(out, genCase{b.name, req{target: b.path, ct: b.ct, body: b.body}})
	}
	return out
}

// numberForms: a card as a JSON number, in every spelling that reads as it.
func numberForms() []genCase {
	var out []genCase
	for _, n := range []struct{ name, lit string }{
		{"integer", "{{PAN}}"},
		{"exponent", "{{PAN:exponent}}"},
		{"exponent-lower", `{{PAN}}e0`},
		{"fraction-zero", "{{PAN}}.0"},
		{"fraction", "{{PAN}}.5"},
		{"negative", "-{{PAN}}"},
		{"trailing-zeros", "{{PAN}}000e-3"},
		{"leading-point", "0.{{PAN}}e16"},
		{"negative-exponent", "{{PAN}}0e-1"},
		{"string-exponent", `"{{PAN:exponent}}"`},
		{"string-leading-zero", `"0{{PAN}}"`},
		{"string-plus", `"+{{PAN}}"`},
		{"string-fraction", `"{{PAN}}.00"`},
		{"string-spaces", `" {{PAN}} "`},
	} {
		out = append(out, genCase{n.name + "-field", req{target: "/checkout", ct: ctJSON, body: `{"card":{"number":` + n.lit + `}}`}})
		out = append(out, genCase{n.name + "-note", req{target: "/profile", ct: ctJSON, body: `{"note":` + n.lit + `}`}})
	}
	out = append(out, genCase{"form-exponent", req{target: "/profile", ct: ctForm, body: "n={{urlencode}}{{PAN:exponent}}{{/urlencode}}"}})
	return out
}

// unicodeDigits: digits of other scripts and separators of every kind.
func unicodeDigits() []genCase {
	var out []genCase
	for _, f := range []string{"fullwidth", "arabic", "devanagari", "zwsp", "nbsp", "spaces", "dashes"} {
		ph := "{{PAN:" + f + "}}"
		out = append(out,
			genCase{f + "-json-field", req{target: "/checkout", ct: ctJSON, body: `{"card":{"number":"` + ph + `"}}`}},
			genCase{f + "-json-note", req{target: "/profile", ct: ctJSON, body: `{"note":"` + ph + `"}`}},
			genCase{f + "-form-field", req{target: "/checkout", ct: ctForm, body: "card[number]={{urlencode}}" + ph + "{{/urlencode}}"}},
			genCase{f + "-form-note", req{target: "/profile", ct: ctForm, body: "note={{urlencode}}" + ph + "{{/urlencode}}"}},
			genCase{f + "-text", req{target: "/profile", ct: ctText, body: `{"note":"` + ph + `"}`}},
		)
	}
	out = append(out,
		genCase{"ascii-card-before-arabic-digit", req{target: "/profile", ct: ctJSON, body: `{"note":"{{PAN}}٨"}`}},
		genCase{"ascii-card-before-arabic-digit-form", req{target: "/profile", ct: ctForm, body: "note={{PAN}}%D9%A8"}},
		genCase{"mixed-scripts", req{target: "/profile", ct: ctJSON, body: `{"note":"{{PAN:fullwidth}} {{PAN}}"}`}},
	)
	for _, sep := range []struct{ name, r string }{
		{"en-dash", "\u2013"}, {"thin-space", "\u2009"}, {"ideographic-space", "\u3000"}, {"soft-hyphen", "\u00ad"},
		{"word-joiner", "\u2060"}, {"bom", "\ufeff"}, {"tab", `\t`}, {"newline", `\n`}, {"three-seps", " - "},
		{"four-seps", " -- "}, {"dot", "."}, {"slash", "/"},
	} {
		out = append(out,
			genCase{"sep-" + sep.name + "-json-note", req{target: "/profile", ct: ctJSON, body: `{"note":"{{PAN:join=` + sep.r + `}}"}`}},
			genCase{"sep-" + sep.name + "-text", req{target: "/profile", ct: ctText, body: `{"note":"{{PAN:join=` + sep.r + `}}"}`}},
		)
	}
	return out
}

// encodings: Content-Encoding, which tok decodes (gzip, deflate) and
// which some frameworks decode themselves (body-parser inflates).
func encodings() []genCase {
	var out []genCase
	for _, e := range []struct{ name, ce, open, close string }{
		{"gzip", "gzip", "{{gzip}}", "{{/gzip}}"},
		{"x-gzip", "x-gzip", "{{gzip}}", "{{/gzip}}"},
		{"deflate", "deflate", "{{deflate}}", "{{/deflate}}"},
		{"raw-deflate", "deflate", "{{rawdeflate}}", "{{/rawdeflate}}"},
		{"upper", "GZIP", "{{gzip}}", "{{/gzip}}"},
		{"double", "gzip, gzip", "{{gzip}}{{gzip}}", "{{/gzip}}{{/gzip}}"},
		{"identity-gzip", "identity, gzip", "{{gzip}}", "{{/gzip}}"},
		{"br-label", "br", "{{gzip}}", "{{/gzip}}"},
	} {
		for _, b := range []struct{ name, path, ct, body string }{
			{"json-field", "/checkout", ctJSON, jsonCard},
			{"json-note", "/profile", ctJSON, jsonNote},
			{"form-field", "/checkout", ctForm, formCard},
			{"text", "/profile", ctText, jsonNote},
			{"text-checkout", "/checkout", ctText, jsonCard},
			{"octet", "/profile", "application/octet-stream", jsonNote},
		} {
			out = append(out, genCase{e.name + "-" + b.name, req{target: b.path, ct: b.ct,
				hdr: []string{"Content-Encoding: " + e.ce}, body: e.open + b.body + e.close}})
		}
	}
	out = append(out,
		genCase{"two-headers", req{target: "/profile", ct: ctText, hdr: []string{"Content-Encoding: identity", "Content-Encoding: gzip"}, body: "{{gzip}}" + jsonNote + "{{/gzip}}"}},
		genCase{"gzip-multipart", req{target: "/profile", ct: ctMultipart, hdr: []string{"Content-Encoding: gzip"}, body: "{{gzip}}" + mpNote + "{{/gzip}}"}},
		genCase{"gzip-put", req{method: "PUT", target: "/checkout", ct: ctText, hdr: []string{"Content-Encoding: gzip"}, body: "{{gzip}}" + jsonCard + "{{/gzip}}"}},
	)
	return out
}

// charsets: a body in another character set, which tok refuses on a route
// and frameworks decode (body-parser with iconv, Python's JSON detection
// of UTF-16 and UTF-32 without any charset).
func charsets() []genCase {
	var out []genCase
	for _, c := range []struct{ name, param, open, close string }{
		{"utf16le", "; charset=utf-16le", "{{utf16le}}", "{{/utf16le}}"},
		{"utf16be", "; charset=utf-16be", "{{utf16be}}", "{{/utf16be}}"},
		{"utf16le-no-charset", "", "{{utf16le}}", "{{/utf16le}}"},
		{"utf16-bom", "; charset=utf-16", "{{utf16le}}\ufeff", "{{/utf16le}}"},
		{"utf7", "; charset=utf-7", "{{utf7}}", "{{/utf7}}"},
		{"latin1", "; charset=iso-8859-1", "", ""},
		{"quoted-utf8", `; charset="utf-8"`, "", ""},
		{"two-charsets", "; charset=utf-8; charset=utf-16le", "{{utf16le}}", "{{/utf16le}}"},
	} {
		for _, b := range []struct{ name, path, ct, body string }{
			{"json-note", "/profile", ctJSON, jsonNote},
			{"json-field", "/checkout", ctJSON, jsonCard},
			{"text", "/profile", ctText, jsonNote},
			{"form-note", "/profile", ctForm, formNote},
			{"form-field", "/checkout", ctForm, formCard},
		} {
			out = append(out, genCase{c.name + "-" + b.name, req{target: b.path, ct: b.ct + c.param, body: c.open + b.body + c.close}})
		}
	}
	return out
}

const head = "POST %s HTTP/1.1\r\nHost: shop.example\r\nContent-Type: %s\r\n"

// framing: bodies framed in every way HTTP/1.1 allows, and some it does
// not.
func framing() []genCase {
	var out []genCase
	for _, b := range []struct{ name, path, ct, body string }{
		{"json-field", "/checkout", ctJSON, jsonCard},
		{"json-note", "/profile", ctJSON, jsonNote},
		{"text", "/profile", ctText, jsonNote},
		{"multipart", "/profile", ctMultipart, mpNote},
		{"form-field", "/checkout", ctForm, formCard},
	} {
		h := fmt.Sprintf(head, b.path, b.ct)
		out = append(out,
			genCase{"chunked-" + b.name, raw(h + "Transfer-Encoding: chunked\r\n\r\n{{chunked:7}}" + b.body + "{{/chunked}}")},
			genCase{"chunked-1-" + b.name, raw(h + "Transfer-Encoding: chunked\r\n\r\n{{chunked:1}}" + b.body + "{{/chunked}}")},
			genCase{"chunked-upper-" + b.name, raw(h + "Transfer-Encoding: Chunked\r\n\r\n{{chunked:9}}" + b.body + "{{/chunked}}")},
			genCase{"cl-and-te-" + b.name, raw(h + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{{chunked:9}}" + b.body + "{{/chunked}}")},
			genCase{"te-and-cl-" + b.name, raw(h + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{{chunked:9}}" + b.body + "{{/chunked}}")},
			genCase{"two-cl-" + b.name, raw(h + "Content-Length: {{LEN}}\r\nContent-Length: 4\r\n\r\n" + b.body)},
		)
	}
	h := fmt.Sprintf(head, "/profile", ctText)
	out = append(out,
		genCase{"chunk-extension", raw(h + "Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"no\r\n{{chunked:5}}te\":\"{{PAN}}\"}{{/chunked}}")},
		genCase{"trailer", raw(h + "Transfer-Encoding: chunked\r\nTrailer: X-Card\r\n\r\n2\r\n{}\r\n0\r\nX-Card: {{PAN}}\r\n\r\n")},
		genCase{"trailer-cookie", raw(h + "Transfer-Encoding: chunked\r\nTrailer: Cookie\r\n\r\n2\r\n{}\r\n0\r\nCookie: card={{PAN}}\r\n\r\n")},
		genCase{"chunked-identity", raw(h + "Transfer-Encoding: chunked, identity\r\n\r\n{{chunked:9}}" + jsonNote + "{{/chunked}}")},
		genCase{"identity-chunked", raw(h + "Transfer-Encoding: identity, chunked\r\n\r\n{{chunked:9}}" + jsonNote + "{{/chunked}}")},
		genCase{"chunk-size-leading-zeros", raw(h + "Transfer-Encoding: chunked\r\n\r\n000004\r\n{\"no\r\n{{chunked:64}}te\":\"{{PAN}}\"}{{/chunked}}")},
		genCase{"cl-plus", raw(h + "Content-Length: +{{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"cl-leading-zero", raw(h + "Content-Length: 0{{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"cl-short", raw(h + "Content-Length: 2\r\n\r\n" + jsonNote)},
		genCase{"expect-continue", raw(h + "Expect: 100-continue\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"http10-no-length", raw("POST /profile HTTP/1.0\r\nHost: shop.example\r\nContent-Type: text/plain\r\n\r\n" + jsonNote)},
		genCase{"chunked-over-max-body", raw(h + "Transfer-Encoding: chunked\r\n\r\n{{chunked:65536}}" + `{"pad":"{{repeat:1100000}}x{{/repeat}}","note":"{{PAN}}"}` + "{{/chunked}}")},
		genCase{"websocket-upgrade-checkout", raw(fmt.Sprintf(head, "/checkout", ctJSON) + "Connection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonCard)},
		genCase{"lf-only-headers", raw("POST /profile HTTP/1.1\nHost: shop.example\nContent-Type: text/plain\nContent-Length: {{LEN}}\n\r\n" + jsonNote)},
	)
	return out
}

// smuggling: requests that two parsers split differently, headers one side
// drops, upgrades.
func smuggling() []genCase {
	second := "POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote
	h := fmt.Sprintf(head, "/profile", ctJSON)
	var out []genCase
	for _, te := range []struct{ name, v string }{
		{"xchunked", "xchunked"}, {"space-before", " chunked"}, {"space-after", "chunked "}, {"tab-before", "\tchunked"},
		{"vtab-after", "chunked\x0b"}, {"chunk", "chunk"}, {"param", "chunked;q=1"}, {"quoted", "\"chunked\""},
	} {
		out = append(out, genCase{"te-" + te.name,
			raw(h + "Content-Length: {{LEN}}\r\nTransfer-Encoding:" + te.v + "\r\n\r\n" + "{{chunked:64}}" + jsonNote + "{{/chunked}}")})
	}
	out = append(out,
		genCase{"pipelined-text", raw(fmt.Sprintf(head, "/profile", ctJSON) + "Content-Length: {{LEN}}\r\n\r\n{}{{END}}" + second)},
		genCase{"pipelined-multipart", raw(fmt.Sprintf(head, "/profile", ctJSON) + "Content-Length: {{LEN}}\r\n\r\n{}{{END}}" +
			"POST /checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: " + ctMultipart + "\r\nContent-Length: {{LEN}}\r\n\r\n" + mpField)},
		genCase{"cl-te-second-request", raw(h + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + second)},
		genCase{"te-cl-second-request", raw(h + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{{chunked:1000}}" + second + "{{/chunked}}")},
		genCase{"get-with-body-second", raw("GET /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Length: {{LEN}}\r\n\r\n" + second)},
		genCase{"connection-content-type", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nConnection: Content-Type\r\nContent-Length: {{LEN}}\r\n\r\n" + formNote)},
		genCase{"connection-content-encoding", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nConnection: Content-Encoding\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"connection-x-card", raw("GET /profile HTTP/1.1\r\nHost: shop.example\r\nX-Card: {{PAN}}\r\nConnection: keep-alive\r\n\r\n")},
		genCase{"two-content-types", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"two-content-types-checkout", raw("POST /checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nContent-Type: " + ctMultipart + "\r\nContent-Length: {{LEN}}\r\n\r\n" + mpField)},
		genCase{"content-type-list", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain, application/json\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"content-type-underscore", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent_Type: application/json\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"content-type-tab", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type:\tapplication/x-www-form-urlencoded\t\r\nContent-Length: {{LEN}}\r\n\r\n" + formNote)},
		genCase{"content-type-obs-fold", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\n application/json\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"h2c-upgrade", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: text/plain\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonNote)},
		genCase{"websocket-upgrade", raw("GET /profile HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Card: {{PAN}}\r\n\r\n")},
		genCase{"absolute-form", raw("POST http://shop.example/checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: " + ctMultipart + "\r\nContent-Length: {{LEN}}\r\n\r\n" + mpField)},
		genCase{"absolute-form-other-host", raw("POST http://other.example/checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: text/plain\r\nContent-Length: {{LEN}}\r\n\r\n" + jsonCard)},
		genCase{"host-card", raw("GET /profile HTTP/1.1\r\nHost: {{PAN}}.shop.example\r\n\r\n")},
		genCase{"x-original-url", raw("POST /profile HTTP/1.1\r\nHost: shop.example\r\nX-Original-URL: /checkout\r\nX-Rewrite-URL: /checkout\r\nContent-Type: " + ctMultipart + "\r\nContent-Length: {{LEN}}\r\n\r\n" + mpField)},
	)
	return out
}

// pathNormalisation: spellings of /checkout that routers take for it.
func pathNormalisation() []genCase {
	var out []genCase
	for _, p := range []string{
		"//checkout", "/x/../checkout", "/./checkout", "/%2e%2e/checkout", "/CHECKOUT", "/Checkout/", "/checkout%2f",
		"/%63heckout", "/checkout;jsessionid=1", "/checkout%3bx", "/checkout%00", "/checkout%20", "/checkout.",
		"/checkout%5c", "/checkout/.", "/checkout..;/", "/checkout?", "/%2fcheckout", "/checkout%09", "/checkout/%2e",
	} {
		for _, k := range []struct{ name, ct, body string }{
			{"json-field", ctJSON, jsonCard},
			{"multipart-field", ctMultipart, mpField},
			{"text-json", ctText, jsonCard},
		} {
			out = append(out, genCase{pathSlug(p) + "-" + k.name, req{target: p, ct: k.ct, body: k.body}})
		}
	}
	return out
}

// pathSlug names a path (or a key) by its characters: "//checkout" is
// "sl-sl-checkout", "/checkout..;/" "sl-checkout-dot-dot-semi-sl".
func pathSlug(p string) string {
	names := map[rune]string{'/': "sl", '.': "dot", ';': "semi", '%': "pct", '?': "q", '=': "eq", '\\': "bsl",
		'[': "lb", ']': "rb", ' ': "sp", '_': "us"}
	var b strings.Builder
	for _, r := range p {
		if n, ok := names[r]; ok {
			b.WriteString("-" + n + "-")
		} else {
			b.WriteRune(r)
		}
	}
	return slug(b.String())
}

// phpKeys: form keys PHP mangles ("." and " " and an unclosed "[" become
// "_") or nests, sent where tok reads (the form) and where it may not
// (multipart, the query).
func phpKeys() []genCase {
	var out []genCase
	for _, k := range []string{
		"card.number", "card number", "card[number", "card]number", "card[number]x", " card[number]", "card[ number]",
		"card[number]]", "card[[number]]", "card_number", "card[number][]", "card[number][a][b]", "card[%6Eumber]", "card%00[number]",
	} {
		enc := strings.ReplaceAll(k, " ", "+")
		out = append(out,
			genCase{"form-" + pathSlug(k), req{target: "/checkout", ct: ctForm, body: enc + "={{PAN}}"}},
			genCase{"multipart-" + pathSlug(k), req{target: "/checkout", ct: ctMultipart, body: multipart(part{name: k, body: "{{PAN}}"})}},
			genCase{"query-" + pathSlug(k), req{method: "GET", target: "/profile?" + enc + "={{PAN}}"}},
		)
	}
	return out
}

// qsKeys: what qs (Express's extended parser) does with keys.
func qsKeys() []genCase {
	var out []genCase
	for _, k := range []struct{ name, body string }{
		{"deep", "a[b][c][d][e][f][g][h]={{PAN}}"},
		{"array-push", "card[]={{PAN}}"},
		{"array-index", "card[0]={{PAN}}"},
		{"array-over-limit", "card[21]={{PAN}}"},
		{"proto", "card[__proto__][number]={{PAN}}"},
		{"constructor", "card[constructor][prototype][number]={{PAN}}"},
		{"merge", "card[number]=1&card={{PAN}}"},
		{"dots", "card.number={{PAN}}"},
		{"encoded-bracket-inside", "card[%6Eumber]={{PAN}}"},
		{"param-limit", strings.Repeat("p=1&", 1000) + "note={{PAN}}"},
		{"empty-key-bracket", "[]={{PAN}}"},
		{"bracket-first", "[card][number]={{PAN}}"},
	} {
		out = append(out,
			genCase{"form-checkout-" + k.name, req{target: "/checkout", ct: ctForm, body: k.body}},
			genCase{"form-profile-" + k.name, req{target: "/profile", ct: ctForm, body: k.body}},
			genCase{"query-" + k.name, req{method: "GET", target: "/search?" + k.body}},
		)
	}
	return out
}

// multipartTricks: multipart bodies parsers disagree on.
func multipartTricks() []genCase {
	b := boundary
	cd := "Content-Disposition: form-data; name="
	var out []genCase
	for _, m := range []struct{ name, ct, body string }{
		{"field", ctMultipart, mpField},
		{"note", ctMultipart, mpNote},
		{"file", ctMultipart, mpFile},
		{"json-file", ctMultipart, mpJSON},
		{"filename", ctMultipart, multipart(part{name: "f", file: "{{PAN}}.txt", body: "x"})},
		{"name", ctMultipart, multipart(part{name: "{{PAN}}", body: "x"})},
		{"base64-part", ctMultipart, "--" + b + "\r\n" + cd + "\"note\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{{base64}}{{PAN}}{{/base64}}\r\n--" + b + "--\r\n"},
		{"quoted-boundary", `multipart/form-data; boundary="` + b + `"`, mpField},
		{"boundary-case", "Multipart/Form-Data; BOUNDARY=" + b, mpField},
		{"two-boundaries", "multipart/form-data; boundary=other; boundary=" + b, mpField},
		{"no-final-boundary", ctMultipart, strings.TrimSuffix(mpField, "--"+b+"--\r\n")},
		{"lf-only", ctMultipart, strings.ReplaceAll(mpField, "\r\n", "\n")},
		{"preamble", ctMultipart, "preamble --" + b + "x\r\n\r\n" + mpField},
		{"epilogue", ctMultipart, mpField + "\r\n--" + b + "\r\n" + cd + "\"note\"\r\n\r\n{{PAN}}\r\n--" + b + "--\r\n"},
		{"upper-disposition", ctMultipart, "--" + b + "\r\nCONTENT-DISPOSITION: FORM-DATA; NAME=\"note\"\r\n\r\n{{PAN}}\r\n--" + b + "--\r\n"},
		{"filename-star", ctMultipart, "--" + b + "\r\n" + cd + "\"f\"; filename*=UTF-8''card.txt\r\n\r\n{{PAN}}\r\n--" + b + "--\r\n"},
		{"unquoted-name", ctMultipart, "--" + b + "\r\nContent-Disposition: form-data; name=note\r\n\r\n{{PAN}}\r\n--" + b + "--\r\n"},
		{"utf16-part", ctMultipart, "--" + b + "\r\n" + cd + "\"note\"\r\nContent-Type: text/plain; charset=utf-16le\r\n\r\n{{utf16le}}{{PAN}}{{/utf16le}}\r\n--" + b + "--\r\n"},
		{"mixed", "multipart/mixed; boundary=" + b, mpField},
		{"related", "multipart/related; boundary=" + b, mpField},
		{"nested-mixed", ctMultipart, "--" + b + "\r\n" + cd + "\"files\"\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Disposition: file; filename=\"a.txt\"\r\n\r\n{{PAN}}\r\n--inner--\r\n\r\n--" + b + "--\r\n"},
		{"spaces-spaced-card", ctMultipart, multipart(part{name: "note", body: "{{PAN:spaces}}"})},
		{"duplicate-name", ctMultipart, multipart(part{name: "card[number]", body: "tok"}, part{name: "card[number]", body: "{{PAN}}"})},
		{"gzip-file", ctMultipart, "--" + b + "\r\n" + cd + "\"f\"; filename=\"a.gz\"\r\nContent-Type: application/gzip\r\n\r\n{{gzip}}{{PAN}}{{/gzip}}\r\n--" + b + "--\r\n"},
	} {
		out = append(out,
			genCase{m.name + "-checkout", req{target: "/checkout", ct: m.ct, body: m.body}},
			genCase{m.name + "-profile", req{target: "/profile", ct: m.ct, body: m.body}},
		)
	}
	return out
}

// formTricks: urlencoded bodies parsers read differently.
func formTricks() []genCase {
	var out []genCase
	for _, f := range []struct{ name, body string }{
		{"semicolon", "a=1;note={{PAN}}"},
		{"bad-escape", "x=%zz&note={{PAN}}"},
		{"plus-spaces", "note={{urlencode}}{{PAN:spaces}}{{/urlencode}}"},
		{"percent-digits", "note={{PAN:percent}}"},
		{"iis-escape", "note=%u0034{{PAN}}"},
		{"nul", "note=%00{{PAN}}"},
		{"raw-utf8", "note=\u00e9{{PAN}}"},
		{"raw-fullwidth", "note={{PAN:fullwidth}}"},
		{"key-only", "{{PAN}}"},
		{"newline", "a=1\nnote={{PAN}}"},
		{"json-value", "data={{urlencode}}" + jsonCard + "{{/urlencode}}"},
		{"amp-entity", "a=1&amp;note={{PAN}}"},
		{"double-encoded", "note={{urlencode}}{{PAN:percent}}{{/urlencode}}"},
		{"charset-sentinel", "utf8=%E2%9C%93&note={{PAN}}"},
	} {
		out = append(out,
			genCase{f.name + "-checkout", req{target: "/checkout", ct: ctForm, body: f.body}},
			genCase{f.name + "-profile", req{target: "/profile", ct: ctForm, body: f.body}},
		)
	}
	return out
}
