package rewrite

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

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
