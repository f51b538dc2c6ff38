package proxy

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// maxUnrevealedLookups bounds the vault lookups one egress request may
// cost for the unrevealed-token check: past it, the rest of the body is
// not looked at (a warning check, not a guard).
const maxUnrevealedLookups = 32

// checkUnrevealed looks, in an egress request's body as the app sent it,
// for live tokens outside the fields the route reveals (Stripe's
// payment_method_data[card][number], on a route that names only
// card[number], would reach the provider as a token and be declined). Each is
// refused with 422 "unrevealed_token" if the route says so, else logged
// as a warning naming the route and the field, and forwarded. Only values
// that can be card tokens are looked up: 12 to 19 digits failing the Luhn
// check (as every pan token does), or opaque tokens. body has passed the
// route's rewriter, so it is valid and not too deep.
func (e *egress) checkUnrevealed(r *http.Request, rt *egressRoute, body []byte, media rewrite.Media, revealed map[string]bool) error {
	var found []string
	lookups := 0
	visit := func(path, value string) bool {
		if revealed[path] || !tokenLike(value) {
			return true
		}
		if lookups++; lookups > maxUnrevealedLookups {
			return false
		}
		_, err := e.s.opts.Vault.Lookup(r.Context(), value)
		if err == nil || errors.Is(err, vault.ErrAmbiguous) {
			found = append(found, httpx.SafePath(path))
		}
		return true
	}
	switch media {
	case rewrite.MediaJSON:
		walkJSONLeaves(gjson.ParseBytes(body), "", visit)
	case rewrite.MediaXML:
		walkXMLLeaves(body, func(path, value string, _, _ int) bool { return visit(path, strings.TrimSpace(value)) })
	case rewrite.MediaForm:
		for pair := range strings.SplitSeq(string(body), "&") {
			k, v, _ := strings.Cut(pair, "=")
			key, kerr := url.QueryUnescape(k)
			val, verr := url.QueryUnescape(v)
			if kerr == nil && verr == nil && !visit(key, val) {
				break
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	if rt.RefuseUnrevealed {
		return &fieldError{httpx.NewError(http.StatusUnprocessableEntity, CodeUnrevealedToken,
			"field "+found[0]+" holds a token this route does not reveal, so the provider would get the token, not the card; add the field to the route's fields", nil),
			found[0]}
	}
	e.s.log.Warn("egress request carries a token at a field the route does not reveal; the provider gets the token, not the card: add the field to the route",
		"route", rt.Name, "fields", strings.Join(found, ","))
	return nil
}

// tokenLike reports whether v could be a card token: a pan or digits
// token of card length that fails the Luhn check, or an opaque token.
func tokenLike(v string) bool {
	if !vault.ValidToken(v) {
		return false
	}
	if strings.HasPrefix(v, "tok_") {
		return true
	}
	return len(v) >= 12 && !rewrite.IsCardNumber(v)
}

// walkJSONLeaves calls visit with the path (keys and array positions joined
// by ".") and text of every string and number under v, until visit returns
// false.
func walkJSONLeaves(v gjson.Result, path string, visit func(path, value string) bool) bool {
	more := true
	i := 0
	v.ForEach(func(k, e gjson.Result) bool {
		seg := k.String()
		if !v.IsObject() {
			seg = strconv.Itoa(i)
		}
		i++
		p := seg
		if path != "" {
			p = path + "." + seg
		}
		switch {
		case e.IsObject() || e.IsArray():
			more = walkJSONLeaves(e, p, visit)
		case e.Type == gjson.String:
			more = visit(p, e.String())
		case e.Type == gjson.Number:
			more = visit(p, e.Raw) // Raw: a float64 loses digits
		}
		return more
	})
	return more
}

// walkXMLLeaves calls visit with the element path ("/a/b", local names) and
// text of every element that holds text and no element, with the span of
// that text when it is one run of character data (start < 0 otherwise),
// and with the path "/a/b/@name" and value of every attribute (start < 0),
// in document order, until visit returns false. body has passed the
// route's rewriter, so it is well-formed and not too deep.
func walkXMLLeaves(body []byte, visit func(path, value string, start, end int) bool) {
	d := xml.NewDecoder(bytes.NewReader(body))
	type frame struct {
		path       string
		text       strings.Builder
		pieces     int
		start, end int
		parent     bool // holds an element
	}
	var stack []*frame
	for {
		before := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF || err != nil {
			return
		}
		switch t := tok.(type) {
		case xml.StartElement:
			f := &frame{path: "/" + t.Name.Local}
			if n := len(stack); n > 0 {
				f.path = stack[n-1].path + f.path
				stack[n-1].parent = true
			}
			stack = append(stack, f)
			for _, a := range t.Attr {
				if !visit(f.path+"/@"+a.Name.Local, a.Value, -1, -1) {
					return
				}
			}
		case xml.CharData:
			if n := len(stack); n > 0 {
				f := stack[n-1]
				f.text.Write(t)
				f.pieces++
				f.start, f.end = before, int(d.InputOffset())
			}
		case xml.EndElement:
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if f.parent || f.pieces == 0 {
				continue
			}
			start, end := f.start, f.end
			if f.pieces > 1 {
				start, end = -1, -1
			}
			if !visit(f.path, f.text.String(), start, end) {
				return
			}
		}
	}
}
