package rewrite

import (
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Card-number lengths the guard recognises.
const (
	minCardDigits = 13
	maxCardDigits = 19
	// maxSeparators is the longest run of separators allowed between two
	// digit groups of one number ("4111 - 1111" has three).
	maxSeparators = 3
)

// cardRun is a card-like number found inside a string: the byte span it
// covers (separators included) and its ASCII digits.
type cardRun struct {
	start, end int
	digits     string
	// ambiguous marks a span where two readings of the digits (every
	// script, or ASCII only) find card numbers that overlap without one
	// holding the other; digits is then empty and the body is refused.
	ambiguous bool
}

// digitValue returns the value of r if it is a decimal digit in any script
// (ASCII, fullwidth, Arabic-Indic...), since some parsers and every human
// reader accept those too.
func digitValue(r rune) (byte, bool) {
	if r >= '0' && r <= '9' {
		return byte(r - '0'), true
	}
	if r < utf8.RuneSelf || !unicode.Is(unicode.Nd, r) {
		return 0, false
	}
	// Every range of unicode.Nd is made of whole blocks of ten, each
	// starting at its zero (checked by TestDigitBlocks).
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10), true
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10), true
		}
	}
	return 0, false
}

// isSeparator reports whether r may stand between two digit groups of one
// number: spaces and dashes of any script (and the minus sign), and
// characters that render as nothing or as a blank — format characters
// (zero-width space, soft hyphen, word joiner...), the other default
// ignorables (combining grapheme joiner, Hangul fillers...), variation
// selectors and the blank Braille pattern — which hide nothing from a person
// reading the text. Dots, slashes, commas, tabs and line breaks are not
// separators, on purpose: lists and tables of numbers would join into card
// numbers, and the guard would refuse ordinary requests.
func isSeparator(r rune) bool {
	if r < 0x80 {
		return r == ' ' || r == '-'
	}
	return r == '\u00a0' || r == '\u2212' || r == '\u2800' ||
		unicode.In(r, unicode.Zs, unicode.Pd, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

type digitGroup struct {
	start, end int
	digits     string
	lead       rune // the character just before the group, 0 at the start
}

// findCards returns every card-like number in s: runs of digits where
// groups may be separated by up to three spaces or dashes. A run longer
// than 19 digits is searched for card numbers made of whole groups (so
// "4111 1111 1111 1111 2030" is caught; a bare 20-digit number is not a
// card).
//
// Digits of other scripts are read two ways, because parsers differ: as
// digits (Unicode-aware code, and people), and as letters (code that knows
// only 0-9, which reads "40000000001000٨" as 14 digits and a letter). A
// card number found by either reading is returned; where the two overlap
// without one holding the other, the union is returned as ambiguous.
//
// A string that is nothing but a number ("04111111111111111",
// " 4.111111111111111e15") is also read as a number, as PHP's (int), JS's
// Number() and Python's float() read it; see numberCard.
func findCards(s string) []cardRun {
	runs := scanCards(s, digitValue)
	if hasOtherDigits(s) {
		for _, a := range scanCards(s, asciiDigit) {
			runs = addReading(runs, a)
		}
	}
	if len(runs) == 0 && len(s) >= minCardDigits { // a real card has 13+ significant digits
		if d := numericStringCard(s); d != "" {
			runs = append(runs, cardRun{start: 0, end: len(s), digits: d})
		}
	}
	return runs
}

// asciiDigit is digitValue for a reader that knows only 0-9.
func asciiDigit(r rune) (byte, bool) {
	if r >= '0' && r <= '9' {
		return byte(r - '0'), true
	}
	return 0, false
}

// hasOtherDigits reports whether s holds a decimal digit outside ASCII.
func hasOtherDigits(s string) bool {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			if _, ok := digitValue(r); ok {
				return true
			}
		}
	}
	return false
}

// addReading adds run a, found by a second reading of the same string, to
// runs (sorted, disjoint): dropped if a run already holds it, merged with
// every run it overlaps into one ambiguous run otherwise.
func addReading(runs []cardRun, a cardRun) []cardRun {
	out := make([]cardRun, 0, len(runs)+1)
	for _, r := range runs {
		switch {
		case r.start <= a.start && a.end <= r.end:
			return runs // the first reading's span covers it
		case r.end <= a.start || a.end <= r.start:
			out = append(out, r)
		default:
			a = cardRun{start: min(a.start, r.start), end: max(a.end, r.end), ambiguous: true}
		}
	}
	i := 0
	for i < len(out) && out[i].start < a.start {
		i++
	}
	return slices.Insert(out, i, a)
}

// scanCards is findCards for one reading of digits. The digits of a valid
// IBAN (see ibanSpans) are not read: they are an account number.
func scanCards(s string, digitValue func(rune) (byte, bool)) []cardRun {
	var out []cardRun
	var groups []digitGroup
	var cur []byte
	curStart := -1
	sepCount := 0
	var lead, prev rune
	ibans := ibanSpans(s)
	flush := func() {
		if len(groups) > 0 {
			out = appendCards(out, groups)
		}
		groups = groups[:0]
	}
	for i := 0; i < len(s); {
		if len(ibans) > 0 && i == ibans[0][0] {
			if curStart >= 0 {
				groups = append(groups, digitGroup{curStart, i, string(cur), lead})
				curStart = -1
			}
			flush()
			sepCount = 0
			i, prev = ibans[0][1], 'A'
			ibans = ibans[1:]
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if v, ok := digitValue(r); ok {
			if curStart < 0 {
				curStart = i
				cur = cur[:0]
				lead = prev
			}
			cur = append(cur, '0'+v)
			sepCount = 0
			i += n
			prev = r
			continue
		}
		if curStart >= 0 {
			groups = append(groups, digitGroup{curStart, i, string(cur), lead})
			curStart = -1
		}
		if isSeparator(r) && len(groups) > 0 && sepCount < maxSeparators {
			sepCount++
		} else {
			flush()
			sepCount = 0
		}
		i += n
		prev = r
	}
	if curStart >= 0 {
		groups = append(groups, digitGroup{curStart, len(s), string(cur), lead})
	}
	flush()
	return out
}

// maxPhoneDigits is the longest phone number, country code included, that
// a "+" keeps from being read as a card. E.164 allows 15 digits, but the
// countries whose codes are card prefixes (+30s, +4x, +5x, +62, +65...)
// number in at most 13 (German mobiles: +49 151 23456787), while a 15- or
// 16-digit card after a "+" ("+378282246310005") is a card to JavaScript's
// Number(), PHP's (int) and Python's float().
const maxPhoneDigits = 13

// quiet reports whether a number of n digits starting at group g reads as
// something other than a card to a person: digits with a letter
// attached in front are part of an identifier ("DK50…", "INV4111…", hex
// trace ids; letters behind do not count, since PHP's (int) and parseInt
// read "4111…abc" as the number), and digits after a "+" are a phone number
// when there are no more than 13 ("+49 151 23456787"; see maxPhoneDigits).
// A card written "+4111 1111 1111 1111" (16 digits) is still a card.
func quiet(g digitGroup, n int) bool {
	return unicode.IsLetter(g.lead) || g.lead == '+' && n <= maxPhoneDigits
}

// appendCards checks one run of digit groups: the whole run if it has 13
// to 19 digits, otherwise (or if the whole is not a card) the leftmost,
// then longest, windows of whole groups, so that a card number written
// next to other numbers ("4111 1111 1111 1111 2030") is still found.
//
// A window of several groups must be grouped as people group cards
// (cardShape). One that does not start the run must be grouped as cards
// are printed (printedShape), and end the run if the group before it is a
// four: otherwise it is a slice of a longer number (a tracking number
// printed in fours, "3-7-7" order numbers), not a card.
func appendCards(out []cardRun, groups []digitGroup) []cardRun {
	total := 0
	for _, g := range groups {
		total += len(g.digits)
	}
	if total >= minCardDigits && total <= maxCardDigits && !quiet(groups[0], total) && cardShape(groups) {
		if d := joinDigits(groups); IsCardNumber(d) {
			return append(out, cardRun{start: groups[0].start, end: groups[len(groups)-1].end, digits: d})
		}
	}
	if len(groups) == 1 {
		return out
	}
	for i := 0; i < len(groups); {
		found := -1
		n := 0
		for j := i; j < len(groups); j++ {
			n += len(groups[j].digits)
			if n > maxCardDigits {
				break
			}
			shaped := cardShape(groups[i : j+1])
			if i > 0 {
				// Inside a run of fours (tracking numbers, IBANs printed
				// in fours) a slice is not a card unless it ends the run.
				shaped = printedShape(groups[i:j+1]) && (j == len(groups)-1 || len(groups[i-1].digits) != 4)
			}
			if n >= minCardDigits && !quiet(groups[i], n) && shaped && IsCardNumber(joinDigits(groups[i:j+1])) {
				found = j
			}
		}
		if found < 0 {
			i++
			continue
		}
		out = append(out, cardRun{start: groups[i].start, end: groups[found].end, digits: joinDigits(groups[i : found+1])})
		i = found + 1
	}
	return out
}

// printedShape reports whether groups are a card as printed: 4-4-4-4,
// 4-4-4-4-3, 4-6-5 or 4-6-4.
func printedShape(groups []digitGroup) bool {
	var shape strings.Builder
	for _, g := range groups {
		shape.WriteString(strconv.Itoa(len(g.digits)))
	}
	switch shape.String() {
	case "4444", "44443", "465", "464":
		return true
	}
	return false
}

// cardShape reports whether digit groups are grouped as card numbers are
// printed and typed: one group; fours with a shorter last group
// (4-4-4-4, 4-4-4-4-3, 4-4-4-1); Amex's and Diners' 4-6-5 and 4-6-4; or
// groups of five and more ("41111111 11111111"). Phone numbers
// (3-3-2-4-4, 2-3-8), order numbers (3-7-7) and UUID-like ids (8-4-4)
// are not.
func cardShape(groups []digitGroup) bool {
	if len(groups) == 1 {
		return true
	}
	fours, long := true, true
	for i, g := range groups {
		n := len(g.digits)
		if i < len(groups)-1 && n != 4 || n > 4 {
			fours = false
		}
		if n < 5 {
			long = false
		}
	}
	if fours || long {
		return true
	}
	return len(groups) == 3 && len(groups[0].digits) == 4 && len(groups[1].digits) == 6 && len(groups[2].digits) >= 4 && len(groups[2].digits) <= 5
}

func joinDigits(groups []digitGroup) string {
	if len(groups) == 1 {
		return groups[0].digits
	}
	var sb strings.Builder
	for _, g := range groups {
		sb.WriteString(g.digits)
	}
	return sb.String()
}
