package proxy

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/proxy/rewrite"
)

// A bound field (a CVC, `bind: card.number`) is tied to another field of
// its route, the card it was collected with: inbound, its token is unique
// only among the values bound to that card's token (so a 3-digit field
// never runs out of tokens); on egress it reveals only together with that
// card token (so a 3-digit guess reveals nothing).

// bindings returns, for each field of a route, the index of the field it
// is bound to, or -1. A field binds to the field of the same route with
// the same kind of selector (json or form) equal to its Bind; that field
// may not be bound itself.
func bindings(fields []RouteField) ([]int, error) {
	to := make([]int, len(fields))
	for i, f := range fields {
		to[i] = -1
		if f.Bind == "" {
			continue
		}
		j := slices.IndexFunc(fields, func(g RouteField) bool {
			return f.JSON != "" && g.JSON == f.Bind || f.Form != "" && g.Form == f.Bind || f.XML != "" && g.XML == f.Bind
		})
		switch {
		case j < 0:
			return nil, fmt.Errorf("field %s: bind %q names no field of the route", f.selector(), f.Bind)
		case j == i || fields[j].Bind != "":
			return nil, fmt.Errorf("field %s: bind %q must name an unbound field other than itself", f.selector(), f.Bind)
		}
		to[i] = j
	}
	return to, nil
}

// selector is the field's selector as config writes it.
func (f RouteField) selector() string {
	if f.Form != "" {
		return "form:" + f.Form
	}
	if f.XML != "" {
		return "xml:" + f.XML
	}
	return "json:" + f.JSON
}

// pairBound returns, for each value of vals at a bound field, the index in
// vals of the value it is bound to (-1 for the others). The card is the one
// value of the bound-to field in the request, or, where there are several
// (items.#.card.number), the one at the same array positions. A bound value
// with no card, or more than one, refuses the request: a CVC is never
// stored or revealed without the card it belongs to.
func pairBound(vals []rewrite.Value, bindTo []int) ([]int, error) {
	pair := make([]int, len(vals))
	for i, v := range vals {
		pair[i] = -1
		if v.IsGuardHit() || v.Spec >= len(bindTo) || bindTo[v.Spec] < 0 {
			continue
		}
		target := bindTo[v.Spec]
		var all, same []int
		pos := positions(v.Path)
		for j, c := range vals {
			if c.IsGuardHit() || c.Spec != target {
				continue
			}
			all = append(all, j)
			if slices.Equal(positions(c.Path), pos) {
				same = append(same, j)
			}
		}
		switch {
		case len(all) == 1:
			pair[i] = all[0]
		case len(same) == 1:
			pair[i] = same[0]
		case len(all) == 0:
			return nil, httpx.NewError(http.StatusUnprocessableEntity, CodeUnboundValue,
				"field "+v.Path+" is bound to a card field this request does not carry; send them together", nil)

		default:
			return nil, httpx.NewError(http.StatusUnprocessableEntity, CodeUnboundValue,
				"field "+v.Path+" is bound to a card field this request carries more than once, and none at its position", nil)

		}
	}
	return pair, nil
}

// positions returns the numeric segments of a value's path, in order: its
// array positions ("items.2.card.cvc" and "items[2][cvc]" give [2]).
func positions(path string) []string {
	var out []string
	for seg := range strings.FieldsFuncSeq(path, func(r rune) bool { return r == '.' || r == '[' || r == ']' }) {
		if strings.Trim(seg, "0123456789") == "" {
			out = append(out, seg)
		}
	}
	return out
}
