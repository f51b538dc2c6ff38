package zoo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// maxSeparators is how many separators may stand between two digit groups
// of one number, as the guard allows ("4111 - 1111").
const maxSeparators = 3

// isSeparator is the guard's rule (proxy/rewrite's isSeparator), copied
// rather than imported so that a change there cannot weaken this oracle
// unseen: spaces of every kind, dashes and invisible characters join digit
// groups; dots, slashes, commas, tabs and line breaks end a number, as the
// README's known limits say.
func isSeparator(r rune) bool {
	if r < 0x80 {
		return r == ' ' || r == '-'
	}
	return r == '\u00a0' || r == '\u2212' || r == '\u2800' ||
		unicode.In(r, unicode.Zs, unicode.Pd, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// findCards returns where the app's answer holds one of pans, as
// "path: 4111…1111", sorted. The answer is read as JSON (NaN and Infinity,
// which Ruby and Python write, as null) and every key, string and number
// searched: strings with digits of every script read as 0-9 and joined
// across up to maxSeparators separators, a card being whole groups of
// digits; numbers by their exact integer
// part and their float64 value's. An answer that is not
// JSON is searched as one string.
func findCards(answer []byte, pans []string) []string {
	var v any
	d := json.NewDecoder(bytes.NewReader(nonFinite.ReplaceAll(answer, []byte("${1}null"))))
	d.UseNumber()
	hits := map[string]bool{}
	if d.Decode(&v) != nil {
		for _, p := range cardsInString(string(answer), pans) {
			hits["(raw answer): "+mask(p)] = true
		}
	} else {
		walk(v, "", pans, hits)
	}
	out := make([]string, 0, len(hits))
	for h := range hits {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

var nonFinite = regexp.MustCompile(`([:\[,]\s*)-?(NaN|Infinity)`)

func walk(v any, path string, pans []string, hits map[string]bool) {
	add := func(where string, found []string) {
		for _, p := range found {
			hits[where+": "+mask(p)] = true
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := join(path, k)
			add(p+" (key)", cardsInString(k, pans))
			walk(x, p, pans, hits)
		}
	case []any:
		for i, x := range v {
			walk(x, join(path, strconv.Itoa(i)), pans, hits)
		}
	case string:
		add(path, cardsInString(v, pans))
	case json.Number:
		add(path, cardsInNumber(string(v), pans))
	}
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func mask(pan string) string { return pan[:4] + "…" + pan[len(pan)-4:] }

// A digitRun is a number read from a string: its digits, and where a
// separator stood between two of its groups.
type digitRun struct {
	digits string
	cut    map[int]bool // cut[i]: a group starts at digits[i]
}

// cardsInString returns the pans found in s.
func cardsInString(s string, pans []string) []string {
	var runs []digitRun
	cur := digitRun{cut: map[int]bool{}}
	var b strings.Builder
	seps := 0
	flush := func() {
		if b.Len() > 0 {
			cur.digits = b.String()
			runs = append(runs, cur)
		}
		b.Reset()
		cur = digitRun{cut: map[int]bool{}}
		seps = 0
	}
	for _, r := range s {
		switch {
		case unicode.IsDigit(r):
			if seps > 0 && b.Len() > 0 {
				cur.cut[b.Len()] = true
			}
			b.WriteByte(byte('0' + digitValue(r)))
			seps = 0
		case isSeparator(r):
			if seps++; seps > maxSeparators {
				flush()
			}
		default:
			flush()
		}
	}
	flush()
	return pansIn(runs, pans)
}

// digitValue is r's value as a decimal digit (r is in unicode.Nd, whose
// ranges are blocks of ten starting at zero).
func digitValue(r rune) int {
	if r <= '9' {
		return int(r - '0')
	}
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return int(r-rune(rg.Lo)) % 10
		}
	}
	return 0
}

// cardsInNumber returns the pans in a JSON number's integer part, exact
// and as a float64 rounds it: what an app that reads it as an integer
// (truncating) or a float gets. Digits after the point are no card to
// anyone.
func cardsInNumber(lit string, pans []string) []string {
	var runs []digitRun
	if f, err := strconv.ParseFloat(lit, 64); err == nil {
		runs = append(runs, digitRun{digits: strings.TrimPrefix(strconv.FormatFloat(f, 'f', 0, 64), "-")})
	}
	// The exact integer part, unless the exponent is too large to expand.
	if _, e, ok := strings.Cut(strings.ToLower(lit), "e"); !ok || len(strings.TrimLeft(e, "+-0")) <= 3 {
		if r, ok := new(big.Rat).SetString(lit); ok {
			i := new(big.Int).Quo(r.Num(), r.Denom())
			runs = append(runs, digitRun{digits: strings.TrimPrefix(i.String(), "-")})
		}
	}
	return pansIn(runs, pans)
}

// pansIn returns the pans that are whole groups of a run: a pan starts
// where the run or a group starts and ends where one ends, so "4111 1111
// 1111 1111 2030" holds a card and 41111111111111110, one number, does not.
func pansIn(runs []digitRun, pans []string) []string {
	var found []string
	for _, p := range pans {
		for _, r := range runs {
			if holds(r, p) {
				found = append(found, p)
				break
			}
		}
	}
	return found
}

func holds(r digitRun, pan string) bool {
	for from := 0; ; {
		i := strings.Index(r.digits[from:], pan)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(pan)
		if (i == 0 || r.cut[i]) && (end == len(r.digits) || r.cut[end]) {
			return true
		}
		from = i + 1
	}
}

// describe is a leak as the test reports it: "flask in header/x-card-0-get:
// headers.X-Card: 4111…1111".
func describe(app, caseName string, where []string) string {
	return fmt.Sprintf("%s in %s: %s", app, caseName, strings.Join(where, "; "))
}
