package vault

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Format names how a token looks.
type Format uint8

// The token formats. The zero value is FormatPAN.
const (
	// FormatPAN: same length as the PAN, digits only, keeps the first and
	// last digits, random in the middle, and always fails the Luhn check so a
	// token can never be taken for a card.
	FormatPAN Format = iota
	// FormatDigits: same length, every digit random (CVVs and the like),
	// except that a value not starting with 0 gets a token not starting with 0.
	FormatDigits
	// FormatOpaque: "tok_" followed by 22 base62 characters (about 131 bits).
	FormatOpaque
)

// Token format defaults and limits.
const (
	DefaultKeepFirst = 6 // digits of a PAN a pan token keeps at the front (the BIN)
	DefaultKeepLast  = 4 // digits a pan token keeps at the end
	// MinRandomDigits is the least number of random digits in a pan token.
	// Keeping 6+4 of a 12-digit PAN would leave 2 unknown digits (10
	// candidates once Luhn is applied), so for short PANs the kept prefix,
	// then the suffix, shrink until this many digits are random.
	MinRandomDigits = 6
	// MinDigitsLength and MaxDigitsLength bound values of the digits and
	// opaque formats (a CVV has 3 or 4 digits).
	MinDigitsLength = 3
	MaxDigitsLength = 19
	opaquePrefix    = "tok_"
	opaqueLength    = 22
)

var formatNames = [...]string{FormatPAN: "pan", FormatDigits: "digits", FormatOpaque: "opaque"}

// String returns the format's config name.
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// ParseFormat returns the format named s ("" means pan).
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatPAN, nil
	}
	for i, n := range formatNames {
		if n == s {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("unknown token format %q (want pan, digits or opaque)", s)
}

// UnmarshalText sets f from its config name, as [ParseFormat] reads it.
func (f *Format) UnmarshalText(text []byte) error {
	v, err := ParseFormat(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a format; use pan, digits or opaque", text)
	}
	*f = v
	return nil
}

// MarshalText returns the config name of f.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Spec says how one field's values are tokenized. The zero value is a
// convergent pan token keeping the first 6 and last 4 digits, stored durably.
type Spec struct {
	Format    Format
	KeepFirst int  // pan only; 0 means DefaultKeepFirst; use -1 to keep none
	KeepLast  int  // pan only; 0 means DefaultKeepLast; use -1 to keep none
	Unique    bool // a fresh token every time instead of one per value
	// Volatile values go to the volatile (memory) store and never touch disk.
	Volatile bool
	// Bound values (a CVC) are tied to the card value collected with them
	// (Request.BindTo): their token is a fresh digits token unique only
	// among the live values bound to that card's token, so a short field
	// never runs out of tokens, and it reveals only together with that card
	// token. Bound specs must be Volatile digits specs.
	Bound bool
	// TTL, if positive, makes the record expire; required for volatile values.
	TTL time.Duration
	// RevealTo, MaxReveals and RevealWindow make the record's
	// [RevealPolicy]: the routes it reveals through (empty: any), how many
	// times (0: unlimited) and for how long from tokenization (0: no
	// end). A count or a window needs a Unique durable spec: a convergent
	// token is shared by every tokenization of its value, which would
	// share one count and the first one's window. Convergent values
	// converge only under the same routes (see [Spec.Domain]).
	RevealTo     []string
	MaxReveals   uint32
	RevealWindow time.Duration
}

func (s Spec) keep() (first, last int) {
	first, last = s.KeepFirst, s.KeepLast
	if first == 0 {
		first = DefaultKeepFirst
	}
	if last == 0 {
		last = DefaultKeepLast
	}
	return max(first, 0), max(last, 0)
}

// Domain is the fingerprint domain: values converge only under the same
// format and kept digits ("pan:6:4", "digits", "opaque"), and the same
// reveal routes, appended when there are any ("pan:6:4;reveal_to=[\"stripe\"]"),
// so that a card tokenized for one set of routes never converges onto a
// token bound to another set, or to none.
func (s Spec) Domain() string {
	d := s.Format.String()
	if s.Format == FormatPAN {
		f, l := s.keep()
		d = fmt.Sprintf("pan:%d:%d", f, l)
	}
	if routes := s.policy(time.Time{}).Routes; len(routes) > 0 {
		d += fmt.Sprintf(";reveal_to=%q", routes)
	}
	return d
}

// Normalize checks value against the format's rule (a PAN for pan, 3 to 19
// digits otherwise; spaces and dashes removed) and returns its digits.
func (s Spec) Normalize(value string) (string, error) {
	if s.Format == FormatPAN {
		return NormalizePAN(value)
	}
	return NormalizeDigits(value, MinDigitsLength, MaxDigitsLength)
}

// newToken returns a random token for the normalized value d.
func (s Spec) newToken(d string) string {
	switch s.Format {
	case FormatDigits:
		for {
			t := randomDigits(len(d))
			// A value without a leading zero gets a token without one, so a
			// digits token can stand where the value was a JSON number.
			if d[0] != '0' && t[0] == '0' {
				continue
			}
			if t != d {
				return t
			}
		}
	case FormatOpaque:
		return opaquePrefix + randomBase62(opaqueLength)
	}
	first, last := s.keep()
	for len(d)-first-last < MinRandomDigits && first > 0 {
		first--
	}
	for len(d)-first-last < MinRandomDigits && last > 0 {
		last--
	}
	for {
		t := d[:first] + randomDigits(len(d)-first-last) + d[len(d)-last:]
		if t != d && !Luhn(t) {
			return t
		}
	}
}

// randomDigits returns n uniformly random ASCII digits.
func randomDigits(n int) string {
	return randomFrom("0123456789", n)
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomBase62(n int) string {
	return randomFrom(base62, n)
}

// randomFrom draws n characters uniformly from alphabet (len ≤ 256) with
// rejection sampling, so no character is more likely than another.
func randomFrom(alphabet string, n int) string {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	var buf [32]byte
	for len(out) < n {
		rand.Read(buf[:]) // never fails (crypto/rand, Go ≥ 1.24)
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out)
}

// IsShortToken reports whether t is a digits token shorter than a card
// number: a short-value token (a CVC's). There are at most 10^len of them,
// so a lone one is a guess away from someone else's: they reveal only
// through [Vault.RevealBound].
func IsShortToken(t string) bool {
	if len(t) >= MinPANLength || len(t) < MinDigitsLength {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}

// ValidToken reports whether t has the shape of a token of some format: the
// cheap check done before any store lookup.
func ValidToken(t string) bool {
	if len(t) == len(opaquePrefix)+opaqueLength && t[:len(opaquePrefix)] == opaquePrefix {
		for i := len(opaquePrefix); i < len(t); i++ {
			c := t[i]
			if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return false
			}
		}
		return true
	}
	if len(t) < MinDigitsLength || len(t) > MaxDigitsLength {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return false
		}
	}
	return true
}
