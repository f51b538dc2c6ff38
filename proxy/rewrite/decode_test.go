package rewrite

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"strings"
	"testing"
	"unicode"
)

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func TestDecodeBody(t *testing.T) {
	plain := []byte(`{"card":{"number":"4111111111111111"}}`)
	var zbuf bytes.Buffer
	zw := zlib.NewWriter(&zbuf)
	zw.Write(plain)
	zw.Close()
	bomb := gzipped(t, bytes.Repeat([]byte{'0'}, 10<<20))
	gz := gzipped(t, plain)

	for _, tc := range []struct {
		name, enc string
		in        []byte
		max       int64
		want      []byte
		code      string
	}{
		{"identity", "", plain, 1 << 10, plain, ""},
		{"identity named", "Identity", plain, 1 << 10, plain, ""},
		{"identity too large", "", plain, 10, nil, CodeBodyTooLarge},
		{"gzip", "gzip", gz, 1 << 10, plain, ""},
		{"x-gzip", "x-gzip", gz, 1 << 10, plain, ""},
		{"deflate", "deflate", zbuf.Bytes(), 1 << 10, plain, ""},
		{"exact limit", "gzip", gz, int64(len(plain)), plain, ""},
		{"one over", "gzip", gz, int64(len(plain)) - 1, nil, CodeBodyTooLarge},
		{"zip bomb", "gzip", bomb, 1 << 20, nil, CodeBodyTooLarge},
		{"corrupt gzip", "gzip", gz[:len(gz)-6], 1 << 10, nil, CodeInvalidEncoding},
		{"not gzip", "gzip", plain, 1 << 10, nil, CodeInvalidEncoding},
		{"gzip with trailing garbage", "gzip", append(bytes.Clone(gz), "xx"...), 1 << 10, nil, CodeInvalidEncoding},
		{"raw deflate is not deflate", "deflate", gz, 1 << 10, nil, CodeInvalidEncoding},
		{"br", "br", plain, 1 << 10, nil, CodeUnsupportedEncoding},
		{"stacked", "gzip, gzip", gz, 1 << 10, nil, CodeUnsupportedEncoding},
	} {
		got, err := DecodeBody(tc.in, tc.enc, tc.max)
		if tc.code != "" {
			var re *Error
			if !errors.As(err, &re) || re.Code != tc.code {
				t.Errorf("%s: DecodeBody error = %v, want %s", tc.name, err, tc.code)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: DecodeBody = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestParseMediaType(t *testing.T) {
	for ct, want := range map[string]Media{
		"application/json":                            MediaJSON,
		"Application/JSON; charset=utf-8":             MediaJSON,
		"application/problem+json":                    MediaJSON,
		"application/merge-patch+json; charset=UTF-8": MediaJSON,
		"application/x-www-form-urlencoded":           MediaForm,
		"text/json":                                   MediaJSON,
		"TEXT/X-JSON":                                 MediaJSON,
		"application/jsonrequest":                     MediaJSON,
		"application/jsonx":                           MediaOther,
		"multipart/form-data; boundary=a":             MediaOther,
		"":                                            MediaOther,
	} {
		got, err := ParseMediaType(ct)
		if err != nil || got != want {
			t.Errorf("ParseMediaType(%q) = %v, %v; want %v", ct, got, err, want)
		}
	}
}

// TestDigitBlocks checks the assumption digitValue rests on: every range of
// unicode.Nd is whole blocks of ten starting at a zero.
func TestDigitBlocks(t *testing.T) {
	for _, rg := range unicode.Nd.R16 {
		if rg.Stride != 1 || (int(rg.Hi)-int(rg.Lo)+1)%10 != 0 {
			t.Errorf("Nd range %#x-%#x stride %d is not whole blocks of ten", rg.Lo, rg.Hi, rg.Stride)
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if rg.Stride != 1 || (int(rg.Hi)-int(rg.Lo)+1)%10 != 0 {
			t.Errorf("Nd range %#x-%#x stride %d is not whole blocks of ten", rg.Lo, rg.Hi, rg.Stride)
		}
	}
	if v, ok := digitValue('٧'); !ok || v != 7 { // ARABIC-INDIC DIGIT SEVEN
		t.Errorf("digitValue(٧) = %d, %v", v, ok)
	}
}

func TestIsCardNumber(t *testing.T) {
	for d, want := range map[string]bool{
		"4111111111111111":     true,  // Visa
		"4222222222222":        true,  // Visa 13
		"5555555555554444":     true,  // Mastercard
		"2223003122003222":     true,  // Mastercard 2-series
		"378282246310005":      true,  // Amex
		"6011111111111117":     true,  // Discover
		"3530111333300000":     true,  // JCB
		"30569309025904":       true,  // Diners
		"6200000000000005":     true,  // UnionPay
		"6759649826438453":     true,  // Maestro
		"4111111111111112":     false, // Luhn
		"1700000000009":        false, // timestamp-like: no network
		"0000000000000000":     false,
		"411111111111":         false, // 12 digits
		"41111111111111111110": false, // 20 digits
		"4000000000000000006":  true,  // Visa 19
		"40000000000000002":    false, // Visa does not issue 17 digits
		"50000000000000004":    false, // 50: no network since Maestro is listed by its ranges
		"5000400440116243":     false, // the Danish example IBAN's digits
		"3782822463100005":     false, // Amex is 15 digits
		"6011000000000000001":  true,  // Discover 19
		"6200000000000000000":  true,  // UnionPay 19
		"36000000000000004":    true,  // Diners 17
	} {
		if got := IsCardNumber(d); got != want {
			t.Errorf("IsCardNumber(%s) = %v, want %v", d, got, want)
		}
	}
	if got := findCards(strings.Repeat("1 2 3 ", 20)); len(got) != 0 {
		t.Errorf("findCards(small numbers) = %v", got)
	}
}
