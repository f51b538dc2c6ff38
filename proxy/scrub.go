package proxy

import (
	"net/url"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// revealedShort is a value shorter than a card number (a CVC) revealed for
// an egress request: value, the token the app sent for it, and the last key
// of the field it was revealed at ("cvc" for card[cvc] or source.card.cvc).
type revealedShort struct{ value, token, key string }

// scrubShort replaces, in a provider's JSON, form or XML answer, every string or
// number that is exactly a short value revealed for the request and stands
// under a key named as that value's request field (case-insensitively), by
// the token the app sent: a provider that echoes the CVC hands the app its
// token back, never the code. Anywhere else a 3-digit value is an
// amount or an id, and is left alone. body has passed the response guard,
// so it is valid and not too deep.
func scrubShort(body []byte, media rewrite.Media, shorts []revealedShort) []byte {
	switch media {
	case rewrite.MediaJSON:
		return scrubShortJSON(body, shorts)
	case rewrite.MediaForm:
		return []byte(scrubShortForm(string(body), shorts))
	case rewrite.MediaXML:
		return scrubShortXML(body, shorts)
	}
	return body
}

// match returns the token for value found under key, or "".
func matchShort(shorts []revealedShort, key, value string) string {
	for _, s := range shorts {
		if s.value == value && strings.EqualFold(s.key, key) {
			return s.token
		}
	}
	return ""
}

type splice struct {
	start, end int
	with       string
}

func scrubShortJSON(body []byte, shorts []revealedShort) []byte {
	var edits []splice
	var walk func(v gjson.Result)
	walk = func(v gjson.Result) {
		v.ForEach(func(k, e gjson.Result) bool {
			switch {
			case e.IsObject() || e.IsArray():
				walk(e)
			case k.Type == gjson.String && (e.Type == gjson.String || e.Type == gjson.Number):
				tok := matchShort(shorts, k.String(), e.String())
				if tok == "" {
					break
				}
				with := `"` + tok + `"` // digits: nothing to escape
				if e.Type == gjson.Number && tok[0] != '0' {
					with = tok // a number stays a number where it can
				}
				edits = append(edits, splice{e.Index, e.Index + len(e.Raw), with})
			}
			return true
		})
	}
	walk(gjson.ParseBytes(body))
	return applySplices(body, edits)
}

// scrubShortXML replaces the text of an element that holds exactly a short
// revealed value (as one run of text) and is named as that value's request
// field: <cvv>123</cvv> after a reveal at /transaction/credit-card/cvv.
func scrubShortXML(body []byte, shorts []revealedShort) []byte {
	var edits []splice
	walkXMLLeaves(body, func(path, value string, start, end int) bool {
		if start >= 0 {
			if tok := matchShort(shorts, lastKey(path), value); tok != "" {
				edits = append(edits, splice{start, end, tok}) // digits: nothing to escape
			}
		}
		return true
	})
	return applySplices(body, edits)
}

func scrubShortForm(body string, shorts []revealedShort) string {
	var edits []splice
	off := 0
	for pair := range strings.SplitSeq(body, "&") {
		k, v, ok := strings.Cut(pair, "=")
		if ok {
			key, kerr := url.QueryUnescape(k)
			val, verr := url.QueryUnescape(v)
			if kerr == nil && verr == nil {
				if tok := matchShort(shorts, lastKey(key), val); tok != "" {
					edits = append(edits, splice{off + len(k) + 1, off + len(pair), tok})
				}
			}
		}
		off += len(pair) + 1
	}
	return string(applySplices([]byte(body), edits))
}

// applySplices replaces each edit's span of b (in order, not overlapping).
func applySplices(b []byte, edits []splice) []byte {
	if len(edits) == 0 {
		return b
	}
	slices.SortFunc(edits, func(a, b splice) int { return a.start - b.start })
	out := make([]byte, 0, len(b))
	at := 0
	for _, e := range edits {
		out = append(out, b[at:e.start]...)
		out = append(out, e.with...)
		at = e.end
	}
	return append(out, b[at:]...)
}

// lastKey is the last named segment of a JSON path, form key or XML
// element path: "cvc" for "source.card.cvc", "card[cvc]", "items.0.cvc"
// and "/transaction/credit-card/cvc".
func lastKey(path string) string {
	segs := strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == '[' || r == ']' || r == '/' })
	for i := len(segs) - 1; i >= 0; i-- {
		if strings.Trim(segs[i], "0123456789") != "" {
			return segs[i]
		}
	}
	return ""
}
