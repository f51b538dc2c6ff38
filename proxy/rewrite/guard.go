package rewrite

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tokproxy/tok/vault"
)

// GuardMode says what the guard does with a card-like number found outside
// the configured fields. The zero value is [GuardReject].
type GuardMode int

// Guard modes.
const (
	// GuardReject refuses the body with [CodeCardNumberDetected] (HTTP 422),
	// naming the path of the first hit. It is the default.
	GuardReject GuardMode = iota
	// GuardTokenize hands every hit to the replace callback, marked with
	// Field -1, so the caller tokenizes it in place.
	GuardTokenize
	// GuardOff disables the guard.
	GuardOff
)

// ParseGuardMode maps the config spelling ("reject", "tokenize", "off"; ""
// means reject) to a GuardMode.
func ParseGuardMode(s string) (GuardMode, bool) {
	switch s {
	case "", "reject":
		return GuardReject, true
	case "tokenize":
		return GuardTokenize, true
	case "off":
		return GuardOff, true
	}
	return 0, false
}

// String returns the config spelling of m.
func (m GuardMode) String() string {
	switch m {
	case GuardReject:
		return "reject"
	case GuardTokenize:
		return "tokenize"
	case GuardOff:
		return "off"
	}
	return "unknown"
}

// Card-number lengths the guard recognises.
const (
	minCardDigits = 13
	maxCardDigits = 19
	// maxSeparators is the longest run of separators allowed between two
	// digit groups of one number ("4111 - 1111" has three).
	maxSeparators = 3
)

// brand is one card network's issuer identification number range and the
// lengths its cards have: the guard refuses a number only where a network
// issues cards of that length, so that ids, trace ids and references that
// merely pass the Luhn check (one in ten of any digits) stay quiet.
type brand struct {
	lo, hi   string // inclusive prefix range, of equal length
	min, max int    // card lengths
	only     int    // if set, the one length besides min (Visa: 13, 16, 19)
	networks string // the networks issuing in the range, space-separated (see Networks)
}

// brands lists the ranges the guard knows (issue 14). Overlaps are
// harmless: a number is a card if any entry takes it. Maestro is listed by
// its issued ranges, not the "50, 56–69" block, which would make a 19-digit
// number starting with 5 or 6 a card.
var brands = []brand{
	{"4", "4", 13, 19, 16, "visa"},                             // Visa: 13, 16, 19
	{"51", "55", 16, 16, 0, "mastercard"},                      // Mastercard
	{"2221", "2720", 16, 16, 0, "mastercard"},                  // Mastercard 2-series
	{"2200", "2204", 16, 19, 0, "mir"},                         // Mir
	{"34", "34", 15, 15, 0, "amex"},                            // American Express
	{"37", "37", 15, 15, 0, "amex"},                            // American Express
	{"6011", "6011", 16, 19, 0, "discover"},                    // Discover
	{"644", "649", 16, 19, 0, "discover"},                      // Discover
	{"65", "65", 16, 19, 0, "discover rupay elo"},              // Discover, RuPay, Elo 650/6516/6550
	{"3528", "3589", 16, 19, 0, "jcb"},                         // JCB
	{"36", "36", 14, 19, 0, "diners"},                          // Diners Club International
	{"300", "305", 14, 19, 0, "diners"},                        // Diners Club Carte Blanche
	{"3095", "3095", 14, 19, 0, "diners"},                      // Diners Club
	{"38", "39", 14, 19, 0, "diners hipercard"},                // Diners Club, Hipercard 38
	{"62", "62", 16, 19, 0, "unionpay discover"},               // UnionPay (and Discover co-branded 622126–622925)
	{"81", "82", 16, 16, 0, "rupay"},                           // RuPay
	{"60", "60", 16, 16, 0, "rupay hipercard"},                 // RuPay, Hipercard 606282
	{"508", "508", 16, 16, 0, "rupay"},                         // RuPay
	{"5018", "5018", 13, 19, 0, "maestro"},                     // Maestro
	{"5020", "5020", 13, 19, 0, "maestro"},                     // Maestro
	{"5038", "5038", 13, 19, 0, "maestro"},                     // Maestro
	{"5893", "5893", 13, 19, 0, "maestro"},                     // Maestro
	{"6304", "6304", 13, 19, 0, "maestro"},                     // Maestro
	{"6759", "6759", 13, 19, 0, "maestro"},                     // Maestro (UK)
	{"6761", "6763", 13, 19, 0, "maestro"},                     // Maestro
	{"5019", "5019", 16, 16, 0, "dankort"},                     // Dankort
	{"506099", "506198", 16, 19, 0, "verve"},                   // Verve
	{"5041", "5041", 16, 16, 0, "elo"},                         // Elo
	{"5066", "5067", 16, 16, 0, "elo"},                         // Elo
	{"509", "509", 16, 16, 0, "elo"},                           // Elo
	{"6277", "6277", 16, 16, 0, "elo"},                         // Elo
	{"636", "639", 16, 19, 0, "interpayment instapayment elo"}, // InterPayment, InstaPayment, Elo 6362/6363
	{"9792", "9792", 16, 16, 0, "troy"},                        // Troy
}

// takes reports whether b issues cards of n digits.
func (b brand) takes(n int) bool {
	if b.only != 0 {
		return n == b.min || n == b.only || n == b.max
	}
	return n >= b.min && n <= b.max
}

// IsCardNumber reports whether d looks like a payment card number to the
// guard: 13 to 19 ASCII digits, Luhn-valid, starting with a known network
// prefix and of a length that network issues (Visa 4: 13, 16, 19;
// Mastercard 51–55, 2221–2720: 16; Amex 34, 37: 15; Discover 6011,
// 644–649, 65: 16–19; JCB 3528–3589: 16–19; Diners 300–305, 3095, 36,
// 38–39: 14–19; UnionPay 62: 16–19; Maestro 5018, 5020, 5038, 5893, 6304,
// 6759, 6761–6763: 13–19; Mir 2200–2204: 16–19; RuPay 60, 508, 81–82: 16;
// Troy 9792: 16; Dankort, Verve, Elo, InterPayment; see brands).
// UATP (prefix 1) is left out on purpose: 13-digit millisecond timestamps
// start with 1 and a tenth of them pass the Luhn check.
// Tokens in the pan format never pass it: they fail the Luhn check.
func IsCardNumber(d string) bool {
	if len(d) < minCardDigits || len(d) > maxCardDigits || !vault.Luhn(d) {
		return false
	}
	for _, b := range brands {
		n := len(b.lo)
		if d[:n] >= b.lo && d[:n] <= b.hi && b.takes(len(d)) {
			return true
		}
	}
	return false
}

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

// numericStringCard returns the card number that s, a string holding only
// a decimal number (a sign, digits, a point, an exponent, and blanks around
// them), denotes to a numeric conversion, or "".
func numericStringCard(s string) string {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "+")
	body := strings.TrimPrefix(t, "-")
	mant := body
	if i := strings.IndexAny(body, "eE"); i >= 0 {
		mant = body[:i]
		if exp := strings.TrimLeft(body[i+1:], "+-"); !isDigits(exp) {
			return ""
		}
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" && frac == "" || intPart != "" && !isDigits(intPart) || frac != "" && !isDigits(frac) {
		return ""
	}
	if strings.HasPrefix(strings.TrimSpace(s), "+") && body == mant && frac == "" && len(intPart) <= maxPhoneDigits {
		return "" // "+4915123456787": a phone number in E.164, see maxPhoneDigits
	}
	if len(intPart) > maxCardDigits && body == mant && intPart[0] == '0' {
		// "00387764983190375224": a 20-digit reference (SSCC, parcel
		// numbers), zero-padded; "04111111111111111" is still read.
		return ""
	}
	return numberCard(t)
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
// something other than a card to a person (issue 14): digits with a letter
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
// printed in fours, "3-7-7" order numbers), not a card (issue 14).
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

// numberCard returns the card number a JSON number denotes to some parser,
// or "". Two readings:
//
//   - exact, from the text: "4111111111111111", "4.111111111111111e15",
//     "41111111111111110e-1" and "-4111111111111111" are the same card
//     number, and "4111111111111111.3" is one to an app that truncates (and
//     to anyone reading it). Only the integer part counts: the digits after
//     the point are not searched, or high-precision fractions (0.4123…)
//     would be refused a tenth of the time.
//   - as a float64, which is how JavaScript, Python's float and Go's
//     float64 read it: "4111111111111110.9999999" and "9792000000000051"
//     (above 2^53) round to card numbers that the text does not spell.
func numberCard(raw string) string {
	if len(raw) < minCardDigits && !strings.ContainsAny(raw, "eE") {
		return "" // below 10^12 however it is read
	}
	if d := exactIntegerPart(strings.TrimPrefix(raw, "-")); IsCardNumber(d) {
		return d
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil { // out of range: no card number
		return ""
	}
	f = math.Trunc(math.Abs(f))
	if f < 1e12 || f >= 1e19 {
		return ""
	}
	if d := strconv.FormatFloat(f, 'f', 0, 64); IsCardNumber(d) {
		return d
	}
	return ""
}

// exactIntegerPart returns the decimal digits of the integer part of the
// unsigned JSON number raw, or "" if it has more than maxCardDigits. It
// never builds more digits than raw holds: exponents of any size only move
// the point.
func exactIntegerPart(raw string) string {
	mant, exp := raw, 0
	if i := strings.IndexAny(raw, "eE"); i >= 0 {
		mant = raw[:i]
		e := raw[i+1:]
		neg := false
		if e != "" && (e[0] == '+' || e[0] == '-') {
			neg = e[0] == '-'
			e = e[1:]
		}
		for _, c := range []byte(e) {
			// Saturate: past the body's length the point has left the
			// digits on either side anyway.
			exp = min(exp*10+int(c-'0'), 1<<30)
		}
		if neg {
			exp = -exp
		}
	}
	digits := mant
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		digits = mant[:i] + mant[i+1:]
		exp -= len(mant) - i - 1
	}
	digits = strings.TrimLeft(digits, "0")
	if exp < 0 { // keep the integer part
		digits = digits[:max(len(digits)+exp, 0)]
		exp = 0
	}
	if len(digits)+exp > maxCardDigits {
		return ""
	}
	return digits + strings.Repeat("0", exp)
}
