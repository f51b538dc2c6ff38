package rewrite

import (
	"math"
	"strconv"
	"strings"
)

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
