package httpx

import (
	"strings"
	"unicode"
)

// Client-chosen strings (a path, a method, a header) can hold a card
// number: these render them for an error message or a log line so that
// none is ever echoed.

// SafePath renders a request path: cut at 128 bytes, and with every digit
// shown as '#' if the path holds 12 or more digits in all (of any script,
// however separated).
func SafePath(p string) string {
	p = maskDigits(p)
	var b strings.Builder
	for _, c := range p {
		b.WriteRune(c)
		if b.Len() > 128 {
			b.WriteString("…")
			break
		}
	}
	return b.String()
}

// maskDigits shows every digit of s as '#' if s holds 12 or more digits in
// all (of any script, however separated): enough for no card number to
// survive, while a short id still reads.
func maskDigits(s string) string {
	digits := 0
	for _, c := range s {
		if unicode.IsDigit(c) {
			digits++
		}
	}
	if digits < 12 {
		return s
	}
	return strings.Map(func(c rune) rune {
		if unicode.IsDigit(c) {
			return '#'
		}
		return c
	}, s)
}

// SafeMethod renders a request method: as sent if it is a word of at most
// 20 ASCII letters, else "other" (a method is any token a client chooses,
// a card number included).
func SafeMethod(m string) string {
	if m == "" || len(m) > 20 {
		return "other"
	}
	for i := 0; i < len(m); i++ {
		if c := m[i] | 0x20; c < 'a' || c > 'z' {
			return "other"
		}
	}
	return m
}

// SafeHeaderName renders a header name: names are tokens a client chooses,
// so one holding digits is not echoed.
func SafeHeaderName(name string) string {
	if strings.ContainsAny(name, "0123456789") || len(name) > 64 {
		return "(a header)"
	}
	return name
}

// SafeHeader renders a header value quoted back in an error: at most 32
// bytes, printable ASCII, its digits masked as SafePath masks them (the
// whole value is counted, so a card number cut by the limit is masked too).
func SafeHeader(v string) string {
	v = maskDigits(v)
	if len(v) > 32 {
		v = v[:32]
	}
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e {
			return '?'
		}
		return c
	}, v)
}
