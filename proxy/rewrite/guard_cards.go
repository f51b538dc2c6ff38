package rewrite

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tokproxy/tok/vault"
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

// brands lists the issuer ranges the guard knows. Overlaps are
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

// Networks returns the names of the card networks the guard knows, sorted:
// the names a [CardSet] accepts. They come from the guard's own table of
// issuer ranges (brands), so the two never disagree.
func Networks() []string {
	var out []string
	for _, b := range brands {
		for _, n := range strings.Fields(b.networks) {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// NetworkOf returns the networks that issue cards like d (as the guard
// reads them), space-separated, or "" if d is not a card number to the
// guard. It is safe to log: it names a network, not digits.
func NetworkOf(d string) string {
	if !IsCardNumber(d) {
		return ""
	}
	var out []string
	for _, b := range brands {
		if b.covers(d) {
			for _, n := range strings.Fields(b.networks) {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return strings.Join(out, " ")
}

// Brand returns the card network that issues numbers like d, a string of
// ASCII digits, read from the guard's table by prefix and length alone: the
// Luhn check is not applied (see [IsCardNumber] for the guard's test). The
// entry with the longest matching prefix wins (6011 is Discover, not the
// RuPay 60 range), and where one range is shared the first network named
// there. ok is false, and name "", when no network of the table issues a
// card of d's prefix and length. It is safe to log: it names a network,
// not digits.
func Brand(d string) (name string, ok bool) {
	if len(d) < minCardDigits || len(d) > maxCardDigits || !isDigits(d) {
		return "", false
	}
	best := -1
	for i, b := range brands {
		if b.covers(d) && (best < 0 || len(b.lo) > len(brands[best].lo)) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	name, _, _ = strings.Cut(brands[best].networks, " ")
	return name, true
}

// covers reports whether d starts in b's range and has a length b issues.
func (b brand) covers(d string) bool {
	n := len(b.lo)
	return len(d) >= n && d[:n] >= b.lo && d[:n] <= b.hi && b.takes(len(d))
}

// CardSet narrows what the guard takes for a card number: only numbers
// that [IsCardNumber] accepts and that also match every non-empty list of
// the set — issued by one of Networks (in a range and a length of the
// guard's table for that network), starting in one of Prefixes, and of one
// of Lengths. It only ever narrows the guard: a number outside the guard's
// table is never a card to it. Build it with [NewCardSet]; a nil *CardSet
// takes what IsCardNumber takes. It is immutable and safe for concurrent
// use.
type CardSet struct {
	networks []string
	prefixes [][2]string // inclusive ranges, each bound of equal length
	lengths  []int
}

// MinPrefixDigits and MaxPrefixDigits bound a prefix of a [CardSet]: an
// issuer identification number has at most 8 digits.
const (
	MinPrefixDigits = 1
	MaxPrefixDigits = 8
)

// NewCardSet checks and builds a CardSet. networks are names from
// [Networks]; prefixes are "4" or ranges "51-55" and "2221-2720" (both
// bounds of one length, the first not above the second); lengths are 12 to
// 19. The error lists every bad item.
func NewCardSet(networks, prefixes []string, lengths []int) (*CardSet, error) {
	cs := &CardSet{}
	var errs []string
	for _, n := range networks {
		if err := CheckNetwork(n); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cs.networks = append(cs.networks, n)
	}
	for _, p := range prefixes {
		lo, hi, err := ParsePrefixRange(p)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cs.prefixes = append(cs.prefixes, [2]string{lo, hi})
	}
	for _, l := range lengths {
		if err := CheckCardLength(l); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		cs.lengths = append(cs.lengths, l)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("response cards: %s", strings.Join(errs, "; "))
	}
	return cs, nil
}

// CheckNetwork reports an error unless name is one of [Networks].
func CheckNetwork(name string) error {
	if slices.Contains(Networks(), name) {
		return nil
	}
	return fmt.Errorf("unknown network %q; use %s", name, strings.Join(Networks(), ", "))
}

// CheckCardLength reports an error unless n is a card length (12 to 19).
func CheckCardLength(n int) error {
	if n < 12 || n > maxCardDigits {
		return fmt.Errorf("length %d is out of range; card numbers have 12 to 19 digits", n)
	}
	return nil
}

// ParsePrefixRange parses "4", "51-55" or "2221-2720" into its inclusive
// bounds, each of 1 to 8 digits and of one length.
func ParsePrefixRange(s string) (lo, hi string, err error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	switch {
	case !isDigits(lo) || !isDigits(hi):
		return "", "", fmt.Errorf("prefix %q: write digits, or a range of digits such as 51-55", s)
	case len(lo) < MinPrefixDigits || len(lo) > MaxPrefixDigits:
		return "", "", fmt.Errorf("prefix %q: an issuer prefix has %d to %d digits", s, MinPrefixDigits, MaxPrefixDigits)
	case len(lo) != len(hi):
		return "", "", fmt.Errorf("prefix %q: both ends of a range have the same number of digits (2221-2720)", s)
	case lo > hi:
		return "", "", fmt.Errorf("prefix %q: the range is empty (its start is above its end)", s)
	}
	return lo, hi, nil
}

// Takes reports whether d, a string of ASCII digits, is a card number to
// a guard narrowed by cs.
func (cs *CardSet) Takes(d string) bool {
	if !IsCardNumber(d) {
		return false
	}
	if cs == nil {
		return true
	}
	if len(cs.lengths) > 0 && !slices.Contains(cs.lengths, len(d)) {
		return false
	}
	if len(cs.prefixes) > 0 && !slices.ContainsFunc(cs.prefixes, func(p [2]string) bool {
		n := len(p[0])
		return len(d) >= n && d[:n] >= p[0] && d[:n] <= p[1]
	}) {
		return false
	}
	if len(cs.networks) > 0 && !slices.ContainsFunc(brands, func(b brand) bool {
		return b.covers(d) && slices.ContainsFunc(strings.Fields(b.networks), func(n string) bool { return slices.Contains(cs.networks, n) })
	}) {
		return false
	}
	return true
}

// String describes cs for a log line: its lists, never digits of a card.
func (cs *CardSet) String() string {
	if cs == nil {
		return "every network"
	}
	var parts []string
	if len(cs.networks) > 0 {
		parts = append(parts, "networks "+strings.Join(cs.networks, ","))
	}
	if len(cs.prefixes) > 0 {
		ps := make([]string, len(cs.prefixes))
		for i, p := range cs.prefixes {
			ps[i] = p[0]
			if p[1] != p[0] {
				ps[i] += "-" + p[1]
			}
		}
		parts = append(parts, "prefixes "+strings.Join(ps, ","))
	}
	if len(cs.lengths) > 0 {
		ls := make([]string, len(cs.lengths))
		for i, l := range cs.lengths {
			ls[i] = strconv.Itoa(l)
		}
		parts = append(parts, "lengths "+strings.Join(ls, ","))
	}
	return strings.Join(parts, "; ")
}
