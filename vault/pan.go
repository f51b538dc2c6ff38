package vault

import (
	"fmt"
	"strings"
)

// PAN length bounds after separators are removed (ISO/IEC 7812 allows 8 to 19;
// payment cards in use are 12 to 19).
const (
	MinPANLength = 12
	MaxPANLength = 19
)

// NormalizeDigits removes spaces and dashes from s and checks that what is
// left is between minLen and maxLen ASCII digits. The error never contains s.
func NormalizeDigits(s string, minLen, maxLen int) (string, error) {
	if len(s) > 4*maxLen { // refuse absurd input before allocating
		return "", fmt.Errorf("%w: too long", ErrInvalidValue)
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == ' ' || c == '-':
		default:
			return "", fmt.Errorf("%w: non-digit character at offset %d", ErrInvalidValue, i)
		}
	}
	d := b.String()
	if len(d) < minLen || len(d) > maxLen {
		return "", fmt.Errorf("%w: %d digits, want %d to %d", ErrInvalidValue, len(d), minLen, maxLen)
	}
	return d, nil
}

// NormalizePAN returns the digits of a card number: 12 to 19 ASCII digits
// once spaces and dashes are removed. The Luhn check is not applied: the
// prototype's own example PAN fails it and must still tokenize.
func NormalizePAN(s string) (string, error) {
	return NormalizeDigits(s, MinPANLength, MaxPANLength)
}

// Luhn reports whether the ASCII digit string d passes the Luhn (mod 10) check.
// It returns false for an empty string or any non-digit.
func Luhn(d string) bool {
	if d == "" {
		return false
	}
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		c := d[i]
		if c < '0' || c > '9' {
			return false
		}
		n := int(c - '0')
		if double {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		double = !double
	}
	return sum%10 == 0
}

// Mask shows at most the first 6 and last 4 characters of a digit string and
// replaces the rest with '*'. Strings too short to keep anything secret are
// masked whole. It is the only form in which a PAN may reach a log line.
//
// Like a pan token, it hides at least MinRandomDigits: of a 12-digit PAN it
// shows the first 2 and last 4 (6+4 would leave two hidden digits, ten
// candidates once the Luhn check is applied).
func Mask(d string) string {
	n := len(d)
	first, last := MaskShows(n)
	return d[:first] + strings.Repeat("*", n-first-last) + d[n-last:]
}

// MaskShows returns how many leading and trailing digits [Mask] shows of
// a digit string of n characters: none below MinPANLength, else the first 6
// and last 4 with the prefix, then the suffix, shortened until
// MinRandomDigits stay hidden. Whatever shows a part of a PAN (card
// metadata's issuer prefix and last four) shows no more than this.
func MaskShows(n int) (first, last int) {
	if n < MinPANLength {
		return 0, 0
	}
	first, last = DefaultKeepFirst, DefaultKeepLast
	for n-first-last < MinRandomDigits && first > 0 {
		first--
	}
	for n-first-last < MinRandomDigits && last > 0 {
		last--
	}
	return first, last
}
