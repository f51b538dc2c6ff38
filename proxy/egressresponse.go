package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// The response guard of egress routes: what a provider answers reaches the
// app without a card number in it.

// revealedSet holds what was revealed for one egress request, with the
// token the app sent for each value, so that the provider's answer never
// hands it back. Card numbers (12 digits or more, as digits) are searched
// for whatever the answer's type. A shorter value (a CVC) would be found in
// every amount and id, so it is scrubbed only where it stands as the whole
// value of a key named as its request field (see scrubShort). Reveals run
// before the request is sent and the search after the answer, in the
// handler's goroutine: no lock.
type revealedSet struct {
	cards  [][2]string // digits, token
	shorts []revealedShort
}

func (s *revealedSet) add(value, token, field string) {
	if d := digitsOf(value); len(d) >= 12 {
		s.cards = append(s.cards, [2]string{d, token})
		return
	}
	if key := lastKey(field); key != "" && value != "" {
		s.shorts = append(s.shorts, revealedShort{value: value, token: token, key: key})
	}
}

// revealedFrom returns what was revealed for the request of ctx.
func revealedFrom(ctx context.Context) *revealedSet { return &sendFrom(ctx).revealed }

// guardResponse keeps card numbers in a provider's response from reaching
// the app. Card numbers in a JSON, form or XML body are tokenized. If the
// request revealed card numbers, the response is also searched for them
// whatever its type, headers included: each one found as written is
// replaced by the token the app sent for it, and one found only with other
// characters between its digits refuses the response with 502. A response
// it cannot read safely (too large, an unknown encoding) is refused with
// 502.
func (e *egress) guardResponse(resp *http.Response, rt *egressRoute) error {
	if rt.response == nil || resp.Body == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	rs := revealedFrom(resp.Request.Context())
	revealed := rs.cards
	for name, vals := range resp.Header {
		for i, v := range vals {
			nv, err := scrubRevealed(v, revealed)
			if err != nil {
				return fmt.Errorf("%w: header %s: %w", errResponseUninspectable, httpx.SafeHeaderName(name), err)
			}
			if nv != v {
				e.warnRewritten(rt, "header "+httpx.SafeHeaderName(name), "the provider echoed a card number revealed to it: replaced by the app's token")
			}
			vals[i] = nv
		}
	}
	ct := resp.Header.Get("Content-Type")
	media, err := rewrite.ParseMediaType(ct)
	if err != nil { // JSON or a form in a charset the guard cannot read
		return fmt.Errorf("%w: %w", errResponseUninspectable, err)
	}
	if media == rewrite.MediaOther && len(revealed) == 0 {
		// Not JSON, a form or XML: the guard reads none on requests. A short
		// revealed value (a CVC) cannot be told from other digits here.
		return nil
	}
	if resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified || resp.Request.Method == http.MethodHead {
		return nil // no body (and no Content-Length to set)
	}
	limit := e.s.opts.MaxBody
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("read provider response: %w", err)
	}
	if int64(len(raw)) > limit {
		return errResponseTooLarge
	}
	body, err := rewrite.DecodeBody(raw, resp.Header.Get("Content-Encoding"), limit)
	if err != nil {
		return fmt.Errorf("%w: %w", errResponseUninspectable, err)
	}
	out := body
	// A byte-order mark before a JSON answer (Authorization.net sends one)
	// is not strict JSON, but every client library skips it: the guard
	// reads what follows and the app gets the mark back as it came
	// (refusing it would withhold the answer to a charge already made).
	bom := media == rewrite.MediaJSON && bytes.HasPrefix(body, utf8BOM)
	if bom {
		body = body[len(utf8BOM):]
	}
	if media != rewrite.MediaOther {
		req := resp.Request
		out, err = rt.response.Rewrite(body, ct, func(vals []rewrite.Value) ([]string, error) {
			reqs := make([]vault.Request, len(vals))
			for i, v := range vals {
				reqs[i] = vault.Request{Value: v.Text}
			}
			toks, err := e.s.tokenize(req, reqs, pathEgressResponse)
			if err != nil {
				return nil, err
			}
			where := "outside response_ignore"
			if rt.ResponseCards != nil {
				where += ", of the route's response_cards"
			}
			for _, v := range vals {
				e.warnRewritten(rt, v.Path, "a card-like number "+where+" ("+cardReason(v.Text)+"): tokenized")
			}
			return toks, nil
		})
		if err != nil {
			var re *rewrite.Error
			if errors.As(err, &re) {
				// Fail closed: a lenient parser in the app might still read a
				// card number out of a body the guard could not inspect.
				return fmt.Errorf("%w: %w", errResponseUninspectable, err)
			}
			return fmt.Errorf("tokenize provider response: %w", err)
		}
	}
	if len(revealed) > 0 {
		scrubbed, err := scrubRevealed(string(out), revealed)
		if err != nil {
			return fmt.Errorf("%w: %w", errResponseUninspectable, err)
		}
		if media == rewrite.MediaJSON && scrubbed != string(out) && !json.Valid([]byte(scrubbed)) {
			return fmt.Errorf("%w: a revealed card number sits where its token does not fit", errResponseUninspectable)
		}
		if scrubbed != string(out) {
			e.warnRewritten(rt, "(body)", "the provider echoed a card number revealed to it: replaced by the app's token")
		}
		out = []byte(scrubbed)
	}
	if len(rs.shorts) > 0 {
		scrubbed := scrubShort(out, media, rs.shorts)
		if !bytes.Equal(scrubbed, out) {
			e.warnRewritten(rt, "(body)", "the provider echoed a short value revealed to it (a CVC) at its own key: replaced by the app's token")
		}
		out = scrubbed
	}
	if bom {
		out = append(bytes.Clone(utf8BOM), out...)
	}
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
	resp.ContentLength = int64(len(out))
	resp.Body = io.NopCloser(bytes.NewReader(out))
	return nil
}

var utf8BOM = []byte("\ufeff")

// warnRewritten logs that the response guard changed a value of a
// provider's answer before the app saw it: the route, where, and why,
// never the value. A provider id that trips it belongs in the route's
// response_ignore or outside its response_cards.
func (e *egress) warnRewritten(rt *egressRoute, path, reason string) {
	e.s.log.Warn("egress response guard changed a value of the provider's answer", "route", rt.Name, "path", path, "reason", reason)
}

// cardReason says why the guard took digits for a card number, in words
// safe to log: the networks and the length, never a digit.
func cardReason(digits string) string {
	nets := rewrite.NetworkOf(digits)
	if nets == "" {
		nets = "a card network"
	}
	return fmt.Sprintf("Luhn-valid, %d digits, in a %s range", len(digits), strings.ReplaceAll(nets, " ", "/"))
}

// scrubRevealed replaces each revealed card number written out in s by its
// token, and fails if one is still there with other characters between
// its digits.
func scrubRevealed(s string, revealed [][2]string) (string, error) {
	if len(revealed) == 0 {
		return s, nil
	}
	for _, p := range revealed {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	digits := digitsOf(s)
	for _, p := range revealed {
		if strings.Contains(digits, p[0]) {
			return "", errors.New("the provider's response repeats a revealed card number in a form tok cannot replace")
		}
	}
	return s, nil
}

// digitsOf returns the ASCII digits of s, in order.
func digitsOf(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Provider responses the guard cannot inspect are refused, never passed on.
var (
	errResponseTooLarge      = errors.New("provider response too large to inspect")
	errResponseUninspectable = errors.New("provider response cannot be inspected")
)
