package rewrite

// ibanLength is the length of an IBAN, country code included, by country
// (the SWIFT IBAN registry; every SEPA country and most others).
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

// ibanSpans returns the byte spans of s that are valid IBANs: a known
// country code, two check digits and the country's number of letters and
// digits, written together or in groups separated by single spaces, not
// glued to other letters or digits, and passing the ISO 13616 mod-97
// check. A mistyped IBAN is not one; its digits are read as any others.
//
// The check digits make an IBAN a poor hiding place by accident (one
// string in 97 of the right shape passes), but not against someone who
// builds one around a card number on purpose: see the README's known
// limits.
func ibanSpans(s string) [][2]int {
	var out [][2]int
	for i := 0; i+4 < len(s); i++ {
		if !isASCIILetter(s[i]) || !isASCIILetter(s[i+1]) || !isASCIIDigit(s[i+2]) || !isASCIIDigit(s[i+3]) {
			continue
		}
		if i > 0 && isASCIIAlnum(s[i-1]) {
			continue
		}
		want := ibanLength[string([]byte{upper(s[i]), upper(s[i+1])})]
		if want == 0 {
			continue
		}
		end, ok := ibanEnd(s, i, want)
		if ok {
			out = append(out, [2]int{i, end})
			i = end - 1
		}
	}
	return out
}

// ibanEnd reads want letters and digits from s[i:], allowing one space
// between them, and checks the boundary and the checksum.
func ibanEnd(s string, i, want int) (int, bool) {
	chars := make([]byte, 0, want)
	j := i
	for j < len(s) && len(chars) < want {
		c := s[j]
		switch {
		case isASCIIAlnum(c):
			chars = append(chars, upper(c))
			j++
		case c == ' ' && len(chars) > 0 && j+1 < len(s) && isASCIIAlnum(s[j+1]):
			j++
		default:
			return 0, false
		}
	}
	if len(chars) != want || j < len(s) && isASCIIAlnum(s[j]) {
		return 0, false
	}
	// ISO 13616: move the first four characters to the end, read letters
	// as 10..35, and the number mod 97 must be 1.
	rem := 0
	for _, c := range append(chars[4:], chars[:4]...) {
		if isASCIIDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	return j, rem == 1
}

func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isASCIIDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isASCIIAlnum(c byte) bool  { return isASCIILetter(c) || isASCIIDigit(c) }

func upper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
