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
	digits := 0
	for _, c := range p {
		if unicode.IsDigit(c) {
			digits++
		}
	}
	var b strings.Builder
	for _, c := range p {
		if digits >= 12 && unicode.IsDigit(c) {
			c = '#'
		}
		b.WriteRune(c)
		if b.Len() > 128 {
			b.WriteString("…")
			break
		}
	}
	return b.String()
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
// bytes, printable ASCII.
func SafeHeader(v string) string {
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
