package vault

import (
	"strings"
	"testing"
)

// isDigits reports whether s is non-empty and all ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// testPANs holds one PAN of every allowed length, Luhn-valid or not.
var testPANs = []string{
	"123456789012",        // 12
	"1234567890123",       // 13
	"12345678901234",      // 14
	"378282246310005",     // 15, Luhn-valid
	"4111111111111111",    // 16, Luhn-valid
	"4000000000000000",    // 16, zeros in the middle
	"6011111111111111117", // 19
	seedPAN,               // 18, fails Luhn
}

func TestNewTokenPAN(t *testing.T) {
	const iterations = 2000
	tests := []struct {
		name        string
		spec        Spec
		pan         string
		first, last int // digits the token must share with the PAN
	}{
		{"default 12", Spec{}, "123456789012", 2, 4},
		{"default 13", Spec{}, "1234567890123", 3, 4},
		{"default 14", Spec{}, "12345678901234", 4, 4},
		{"default 15", Spec{}, "378282246310005", 5, 4},
		{"default 16", Spec{}, "4111111111111111", 6, 4},
		{"default 16 zeros", Spec{}, "4000000000000000", 6, 4},
		{"default 18 seed", Spec{}, seedPAN, 6, 4},
		{"default 19", Spec{}, "6011111111111111117", 6, 4},
		{"explicit defaults", Spec{KeepFirst: 6, KeepLast: 4}, "4111111111111111", 6, 4},
		{"keep none", Spec{KeepFirst: -1, KeepLast: -1}, "4111111111111111", 0, 0},
		{"keep last only", Spec{KeepFirst: -1, KeepLast: 4}, "4111111111111111", 0, 4},
		{"keep first only", Spec{KeepFirst: 4, KeepLast: -1}, "4111111111111111", 4, 0},
		{"keep 8+4 of 16 shrinks first", Spec{KeepFirst: 8, KeepLast: 4}, "4111111111111111", 6, 4},
		{"keep 8+4 of 19", Spec{KeepFirst: 8, KeepLast: 4}, "6011111111111111117", 8, 4},
		{"keep huge last", Spec{KeepFirst: 1, KeepLast: 30}, "4111111111111111", 0, 10},
		{"keep huge first", Spec{KeepFirst: 30, KeepLast: 2}, "123456789012", 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.pan)
			random := n - tt.first - tt.last
			if random < MinRandomDigits {
				t.Fatalf("bad test case: %d random digits", random)
			}
			distinct := map[string]bool{}
			// seen[i] collects the digits drawn at middle position i.
			seen := make([]map[byte]bool, n)
			for i := range seen {
				seen[i] = map[byte]bool{}
			}
			for range iterations {
				tok := tt.spec.newToken(tt.pan)
				switch {
				case len(tok) != n:
					t.Fatalf("newToken(%q) = %q: length %d, want %d", Mask(tt.pan), tok, len(tok), n)
				case !isDigits(tok):
					t.Fatalf("newToken(%q) = %q: not all digits", Mask(tt.pan), tok)
				case tok == tt.pan:
					t.Fatalf("newToken(%q) returned the PAN", Mask(tt.pan))
				case Luhn(tok):
					t.Fatalf("newToken(%q) = %q passes Luhn", Mask(tt.pan), tok)
				case tok[:tt.first] != tt.pan[:tt.first]:
					t.Fatalf("newToken(%q) = %q: first %d digits not kept", Mask(tt.pan), tok, tt.first)
				case tok[n-tt.last:] != tt.pan[n-tt.last:]:
					t.Fatalf("newToken(%q) = %q: last %d digits not kept", Mask(tt.pan), tok, tt.last)
				}
				distinct[tok] = true
				for i := tt.first; i < n-tt.last; i++ {
					seen[i][tok[i]] = true
				}
			}
			// 2000 draws from ≥ 900,000 tokens: a handful of repeats at most.
			if len(distinct) < iterations-20 {
				t.Errorf("%d distinct tokens in %d draws", len(distinct), iterations)
			}
			// Every random position must take every digit; in particular
			// the positions a short PAN gives up must really be random.
			for i := tt.first; i < n-tt.last; i++ {
				if len(seen[i]) != 10 {
					t.Errorf("position %d took %d distinct digits in %d draws, want 10", i, len(seen[i]), iterations)
				}
			}
		})
	}
}

// TestNewTokenPANDistribution checks that no digit is strongly favoured at
// any random position (the Luhn rejection must not skew the draw much).
func TestNewTokenPANDistribution(t *testing.T) {
	const iterations = 5000
	pan := "4111111111111111"
	var counts [16][10]int
	for range iterations {
		tok := Spec{}.newToken(pan)
		for i := 6; i < 12; i++ {
			counts[i][tok[i]-'0']++
		}
	}
	// Expected 500 per cell; the bounds are about ±8 standard deviations.
	for i := 6; i < 12; i++ {
		for d, c := range counts[i] {
			if c < 330 || c > 670 {
				t.Errorf("position %d digit %d drawn %d times in %d, want about %d", i, d, c, iterations, iterations/10)
			}
		}
	}
}

func TestNewTokenDigits(t *testing.T) {
	spec := Spec{Format: FormatDigits}
	for _, v := range []string{"123", "000", "1234", "4111111111111111"} {
		distinct := map[string]bool{}
		// For 3 digits the draw hits the value about once per thousand, so
		// 5000 iterations exercise the retry.
		for range 5000 {
			tok := spec.newToken(v)
			if len(tok) != len(v) || !isDigits(tok) {
				t.Fatalf("newToken(%q) = %q, want %d digits", Mask(v), tok, len(v))
			}
			if tok == v {
				t.Fatalf("newToken(%q) returned the value", Mask(v))
			}
			if v[0] != '0' && tok[0] == '0' {
				t.Fatalf("newToken(%q) = %q: a leading zero the value did not have", Mask(v), tok)
			}
			distinct[tok] = true
		}
		// "123" has 899 possible tokens (100-999 but itself), "000" 999.
		possible := 999
		if v[0] != '0' {
			possible = 899
		}
		if len(v) == 3 && len(distinct) < possible*9/10 {
			t.Errorf("newToken(%q): %d distinct tokens of %d possible in 5000 draws", v, len(distinct), possible)
		}
	}
}

func TestNewTokenOpaque(t *testing.T) {
	spec := Spec{Format: FormatOpaque}
	distinct := map[string]bool{}
	var used [256]bool
	for range 2000 {
		tok := spec.newToken("4111111111111111")
		if !strings.HasPrefix(tok, "tok_") || len(tok) != 26 {
			t.Fatalf("newToken = %q, want tok_ and 22 characters", tok)
		}
		for i := 4; i < len(tok); i++ {
			c := tok[i]
			if !strings.ContainsRune(base62, rune(c)) {
				t.Fatalf("newToken = %q: %q is not base62", tok, c)
			}
			used[c] = true
		}
		if distinct[tok] {
			t.Fatalf("newToken repeated %q", tok)
		}
		distinct[tok] = true
		if !ValidToken(tok) {
			t.Fatalf("ValidToken(%q) = false", tok)
		}
	}
	for i := 0; i < len(base62); i++ {
		if !used[base62[i]] {
			t.Errorf("character %q never drawn in 44000", base62[i])
		}
	}
}

func TestRandomFromUniform(t *testing.T) {
	const n = 62 * 400
	s := randomFrom(base62, n)
	if len(s) != n {
		t.Fatalf("len(randomFrom(base62, %d)) = %d", n, len(s))
	}
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	// Expected 400 per character; about ±7 standard deviations. A modulo
	// bias (256 % 62 = 8 favoured characters) would show as ~+25%.
	for i := 0; i < len(base62); i++ {
		if c := counts[base62[i]]; c < 260 || c > 540 {
			t.Errorf("character %q drawn %d times, want about 400", base62[i], c)
		}
	}
	for _, n := range []int{0, 1, 31, 32, 33, 100} {
		if got := len(randomDigits(n)); got != n {
			t.Errorf("len(randomDigits(%d)) = %d", n, got)
		}
	}
}

func TestValidToken(t *testing.T) {
	for _, spec := range []Spec{{}, {Format: FormatDigits}, {Format: FormatOpaque}, {KeepFirst: -1, KeepLast: -1}} {
		for _, pan := range testPANs {
			if tok := spec.newToken(pan); !ValidToken(tok) {
				t.Errorf("ValidToken(%q) = false for a %v token", tok, spec.Format)
			}
		}
	}
	if tok := (Spec{Format: FormatDigits}).newToken("123"); !ValidToken(tok) {
		t.Errorf("ValidToken(%q) = false for a 3-digit token", tok)
	}
	valid22 := strings.Repeat("aZ9", 7) + "x"
	for _, s := range []string{
		"",
		"12",
		"12345678901234567890",
		"4111 1111 1111 1111",
		"4111-1111-1111-1111",
		"411111111111111a",
		"٣٣٣",
		"１２３",
		"tok_",
		"tok_" + valid22[:21],
		"tok_" + valid22 + "a",
		"tok_" + valid22[:21] + "-",
		"tok_" + valid22[:21] + "_",
		"tok_" + valid22[:20] + "é",
		"TOK_" + valid22,
		"tak_" + valid22,
		"tok-" + valid22,
		"../../etc/passwd",
		"tok_" + valid22[:21] + "\x00",
	} {
		if ValidToken(s) {
			t.Errorf("ValidToken(%q) = true, want false", s)
		}
	}
	if !ValidToken("tok_" + valid22) {
		t.Errorf("ValidToken(%q) = false, want true", "tok_"+valid22)
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in   string
		want Format
	}{
		{"", FormatPAN},
		{"pan", FormatPAN},
		{"digits", FormatDigits},
		{"opaque", FormatOpaque},
	}
	for _, tt := range tests {
		got, err := ParseFormat(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseFormat(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"PAN", "Pan", " pan", "pan ", "tok", "format(0)", "uuid"} {
		if got, err := ParseFormat(in); err == nil {
			t.Errorf("ParseFormat(%q) = %v, want error", in, got)
		}
	}
	for _, f := range []Format{FormatPAN, FormatDigits, FormatOpaque} {
		if got, err := ParseFormat(f.String()); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v, want %v", f.String(), got, err, f)
		}
	}
	if got := Format(9).String(); got != "format(9)" {
		t.Errorf("Format(9).String() = %q, want %q", got, "format(9)")
	}
}

// TestSpecDomain checks which specs converge: the same format and the same
// effective kept digits share a fingerprint domain, nothing else does.
func TestSpecDomain(t *testing.T) {
	same := [][2]Spec{
		{{}, {KeepFirst: 6, KeepLast: 4}},
		{{KeepFirst: -1}, {KeepFirst: -5}},
		{{Format: FormatDigits}, {Format: FormatDigits, KeepFirst: 3}},
	}
	for _, p := range same {
		if a, b := p[0].Domain(), p[1].Domain(); a != b {
			t.Errorf("domain(%+v) = %q, domain(%+v) = %q, want equal", p[0], a, p[1], b)
		}
	}
	differ := [][2]Spec{
		{{}, {Format: FormatDigits}},
		{{}, {Format: FormatOpaque}},
		{{Format: FormatDigits}, {Format: FormatOpaque}},
		{{}, {KeepFirst: 4}},
		{{}, {KeepLast: -1}},
		{{KeepFirst: 1, KeepLast: 11}, {KeepFirst: 11, KeepLast: 1}},
	}
	for _, p := range differ {
		if a, b := p[0].Domain(), p[1].Domain(); a == b {
			t.Errorf("domain(%+v) = domain(%+v) = %q, want different", p[0], p[1], a)
		}
	}
}

func TestSpecNormalize(t *testing.T) {
	if _, err := (Spec{}).Normalize("123"); err == nil {
		t.Errorf("pan spec accepted a 3-digit value")
	}
	for _, f := range []Format{FormatDigits, FormatOpaque} {
		if got, err := (Spec{Format: f}).Normalize("12 3"); err != nil || got != "123" {
			t.Errorf("%v spec Normalize(%q) = %q, %v, want %q", f, "12 3", got, err, "123")
		}
		if _, err := (Spec{Format: f}).Normalize("12"); err == nil {
			t.Errorf("%v spec accepted a 2-digit value", f)
		}
	}
}
