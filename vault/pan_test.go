package vault

import (
	"errors"
	"strings"
	"testing"
)

// seedPAN is the prototype's example card number. It fails the Luhn check
// and must still tokenize.
const seedPAN = "555213321212161777"

// longestDigitRun returns the length of the longest run of ASCII digits in s.
// Error messages may carry small counts and offsets, never a card number, so
// tests require runs shorter than 4.
func longestDigitRun(s string) int {
	best, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return best
}

func TestNormalizePAN(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"visa", "4111111111111111", "4111111111111111"},
		{"spaces", "4111 1111 1111 1111", "4111111111111111"},
		{"dashes", "4111-1111-1111-1111", "4111111111111111"},
		{"mixed separators", " 4111- 1111 -1111-1111 ", "4111111111111111"},
		{"seed fails luhn", seedPAN, seedPAN},
		{"12 digits", "123456789012", "123456789012"},
		{"19 digits", "1234567890123456789", "1234567890123456789"},
		{"amex grouping", "3782 822463 10005", "378282246310005"},
		{"leading zeros kept", "0000000000000", "0000000000000"},
		{"one space per digit", strings.Repeat("1 ", 19), strings.Repeat("1", 19)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePAN(tt.in)
			if err != nil {
				t.Fatalf("NormalizePAN(%q) error: %v", Mask(tt.in), err)
			}
			if got != tt.want {
				t.Errorf("NormalizePAN(%q) = %q, want %q", Mask(tt.in), Mask(got), Mask(tt.want))
			}
		})
	}
	if Luhn(seedPAN) {
		t.Errorf("Luhn(seed PAN) = true; the seed PAN is expected to fail Luhn")
	}
}

func TestNormalizePANRejects(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"only separators", " - - "},
		{"11 digits", "12345678901"},
		{"20 digits", "12345678901234567890"},
		{"11 digits with separators", "1234-5678-901"},
		{"tab", "4111\t1111111111111"},
		{"newline", "4111111111111111\n"},
		{"plus", "+4111111111111111"},
		{"dot", "4111.1111.1111.1111"},
		{"slash", "4111/1111/1111/1111"},
		{"underscore", "4111_1111_1111_1111"},
		{"letter", "411111111111111a"},
		{"arabic-indic digit", "411111111111111٣"},
		{"fullwidth digit", "４111111111111111"},
		{"devanagari digit", "4111111111111११"},
		{"non-breaking space", "4111\u00a01111111111111"},
		{"en dash", "4111–1111–1111–1111"},
		{"nul", "4111111111111111\x00"},
		{"too long input", strings.Repeat(" ", 100) + "4111111111111111"},
		{"json number", "4.111111111111111e15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizePAN(tt.in)
			if err == nil {
				t.Fatalf("NormalizePAN(%q) = %q, want error", Mask(tt.in), Mask(got))
			}
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("NormalizePAN error %v does not wrap ErrInvalidValue", err)
			}
			checkErrorHidesValue(t, err, tt.in)
		})
	}
}

// checkErrorHidesValue fails if err's message could carry value: neither
// the value itself nor any run of 4 or more digits may appear in it.
func checkErrorHidesValue(t *testing.T, err error, value string) {
	t.Helper()
	msg := err.Error()
	if value != "" && strings.Contains(msg, value) {
		t.Errorf("error message contains the input value")
	}
	if n := longestDigitRun(msg); n >= 4 {
		t.Errorf("error message has a run of %d digits: %q", n, msg)
	}
}

func TestNormalizeDigits(t *testing.T) {
	tests := []struct {
		in             string
		minLen, maxLen int
		want           string
		ok             bool
	}{
		{"123", 3, 4, "123", true},
		{"1234", 3, 4, "1234", true},
		{"1 2-3", 3, 4, "123", true},
		{"12", 3, 4, "", false},
		{"12345", 3, 4, "", false},
		{"12a", 3, 4, "", false},
		{"", 0, 4, "", true},
		{"１２３", 3, 4, "", false},
		// Input longer than 4*maxLen bytes is refused before scanning.
		{strings.Repeat(" ", 14) + "123", 3, 4, "", false},
		{strings.Repeat(" ", 13) + "123", 3, 4, "123", true},
	}
	for _, tt := range tests {
		got, err := NormalizeDigits(tt.in, tt.minLen, tt.maxLen)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("NormalizeDigits(%q, %d, %d) = %q, %v, want %q, nil", tt.in, tt.minLen, tt.maxLen, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("NormalizeDigits(%q, %d, %d) = %q, want error", tt.in, tt.minLen, tt.maxLen, got)
			continue
		}
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("NormalizeDigits(%q) error %v does not wrap ErrInvalidValue", tt.in, err)
		}
		if got != "" {
			t.Errorf("NormalizeDigits(%q) returned %q with an error", tt.in, got)
		}
	}
}

func TestLuhn(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"4111111111111111", true},
		{"4012888888881881", true},
		{"5555555555554444", true},
		{"378282246310005", true},
		{"6011111111111117", true},
		{"79927398713", true},
		{"1234567812345670", true},
		{"0", true},
		{"4111111111111112", false},
		{"79927398710", false},
		{"1234567812345678", false},
		{seedPAN, false},
		{"", false},
		{"4111 1111 1111 1111", false},
		{"411111111111111a", false},
		{"٣", false},
	}
	for _, tt := range tests {
		if got := Luhn(tt.in); got != tt.want {
			t.Errorf("Luhn(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestLuhnCheckDigit checks the defining property: for any payload exactly
// one of the ten check digits makes the number valid.
func TestLuhnCheckDigit(t *testing.T) {
	for _, payload := range []string{"", "7992739871", "411111111111111", "555213321212161", "000000000000000000"} {
		valid := 0
		for c := byte('0'); c <= '9'; c++ {
			if Luhn(payload + string(c)) {
				valid++
			}
		}
		if valid != 1 {
			t.Errorf("payload %q: %d valid check digits, want 1", payload, valid)
		}
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"123", "***"},
		{"12345678901", "***********"},
		{"123456789012", "12******9012"}, // at least 6 hidden, as in a pan token
		{"1234567890123", "123******0123"},
		{"12345678901234", "1234******1234"},
		{"4111111111111111", "411111******1111"},
		{seedPAN, "555213********1777"},
		{"1234567890123456789", "123456*********6789"},
	}
	for _, tt := range tests {
		if got := Mask(tt.in); got != tt.want {
			t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestMaskNeverShowsMore checks, for every length, that Mask keeps the
// length and shows at most the first 6 and last 4 characters.
func TestMaskNeverShowsMore(t *testing.T) {
	const digits = "98765432109876543210987654321"
	for n := 0; n <= len(digits); n++ {
		in := digits[:n]
		got := Mask(in)
		if len(got) != n {
			t.Fatalf("len(Mask(%d digits)) = %d, want %d", n, len(got), n)
		}
		for i := 0; i < n; i++ {
			if got[i] == '*' {
				continue
			}
			if i >= 6 && i < n-4 {
				t.Errorf("Mask(%d digits) shows position %d: %q", n, i, got)
			}
			if got[i] != in[i] {
				t.Errorf("Mask(%d digits) changed position %d: %q", n, i, got)
			}
		}
		if n < MinPANLength && strings.Trim(got, "*") != "" {
			t.Errorf("Mask(%d digits) = %q, want fully masked", n, got)
		}
	}
}

// TestMaskShows checks that MaskShows counts exactly the digits Mask
// leaves visible, at every length.
func TestMaskShows(t *testing.T) {
	const digits = "98765432109876543210987654321"
	for n := 0; n <= len(digits); n++ {
		first, last := MaskShows(n)
		m := Mask(digits[:n])
		shown := strings.TrimLeft(m, "0123456789")
		if lead := n - len(shown); lead != first && n >= MinPANLength {
			t.Errorf("MaskShows(%d) first = %d, Mask %q shows %d", n, first, m, lead)
		}
		if tail := len(m) - len(strings.TrimRight(m, "0123456789")); tail != last {
			t.Errorf("MaskShows(%d) last = %d, Mask %q shows %d", n, last, m, tail)
		}
		if n >= MinPANLength && n-first-last < MinRandomDigits {
			t.Errorf("MaskShows(%d) = %d, %d: fewer than %d hidden", n, first, last, MinRandomDigits)
		}
	}
}
