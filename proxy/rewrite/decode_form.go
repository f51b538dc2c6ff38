package rewrite

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// formPair is one key=value pair of a form body or query string: the raw
// spans and the decoded texts.
type formPair struct {
	keyStart, keyEnd int
	valStart, valEnd int
	key, val         string
}

// parseForm splits b into pairs. strict applies the body rules of
// [Rewriter.Rewrite]; otherwise (query strings) ';' also separates pairs
// and a bad escape is read literally, so the guard sees at least what any
// server would.
func parseForm(b []byte, strict bool) ([]formPair, *Error) {
	if strict {
		if t := bytes.TrimLeft(b, " \t\n\r"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return nil, newError(CodeInvalidForm, "", "form body looks like json")
		}
	}
	var pairs []formPair
	for start := 0; start <= len(b); {
		end := start
		for end < len(b) && b[end] != '&' && (strict || b[end] != ';') {
			c := b[end]
			if strict && (c < 0x20 || c == 0x7f || c >= 0x80 || c == ';') {
				return nil, newError(CodeInvalidForm, "", "byte 0x%02x at offset %d must be percent-encoded", c, end)
			}
			end++
		}
		if end > start {
			p := formPair{keyStart: start, keyEnd: end, valStart: end, valEnd: end}
			for i := start; i < end; i++ {
				if b[i] == '=' {
					p.keyEnd, p.valStart = i, i+1
					break
				}
			}
			var ok bool
			if p.key, ok = formUnescape(b[p.keyStart:p.keyEnd], strict); !ok {
				return nil, newError(CodeInvalidForm, "", "invalid percent escape or utf-8 in a key at offset %d", p.keyStart)
			}
			if p.val, ok = formUnescape(b[p.valStart:p.valEnd], strict); !ok {
				return nil, newError(CodeInvalidForm, safeFormPath(p.key), "invalid percent escape or utf-8 in a value")
			}
			pairs = append(pairs, p)
		}
		start = end + 1
	}
	return pairs, nil
}

// formUnescape decodes '+' and %XX. strict refuses a bad escape and
// invalid UTF-8; otherwise a bad escape stays as written.
func formUnescape(s []byte, strict bool) (string, bool) {
	if bytes.IndexByte(s, '%') < 0 && bytes.IndexByte(s, '+') < 0 {
		if strict && !utf8.Valid(s) {
			return "", false
		}
		return string(s), true
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			sb.WriteByte(' ')
		case '%':
			h, ok := hex2(s, i+1)
			if !ok {
				if strict {
					return "", false
				}
				sb.WriteByte(c)
				continue
			}
			sb.WriteByte(h)
			i += 2
		default:
			sb.WriteByte(c)
		}
	}
	out := sb.String()
	if strict && !utf8.ValidString(out) {
		return "", false
	}
	return out, true
}

// hex2 reads the two hex digits of a %XX escape at s[i:].
func hex2(s []byte, i int) (byte, bool) {
	if len(s)-i < 2 {
		return 0, false
	}
	var v byte
	for _, c := range s[i : i+2] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= c - '0'
		case c >= 'a' && c <= 'f':
			v |= c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v |= c - 'A' + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// hasPercentU reports whether q holds a %uXXXX escape (four hex digits).
func hasPercentU(q string) bool {
	for i := 0; i+6 <= len(q); i++ {
		if q[i] != '%' || q[i+1] != 'u' && q[i+1] != 'U' {
			continue
		}
		if _, ok := hex2([]byte(q), i+2); ok {
			if _, ok := hex2([]byte(q), i+4); ok {
				return true
			}
		}
	}
	return false
}

func digitPlusDigit(s []byte) bool {
	for i := 0; ; i++ {
		j := bytes.IndexByte(s[i:], '+')
		if j < 0 {
			return false
		}
		i += j
		if i > 0 && i+1 < len(s) && isASCIIDigit(s[i-1]) && isASCIIDigit(s[i+1]) {
			return true
		}
	}
}

// formDecodeReading decodes %XX (a bad escape is kept) and a '+' between
// digits.
func formDecodeReading(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if h, ok := hex2([]byte(s), i+1); ok {
				sb.WriteByte(h)
				i += 2
				continue
			}
			sb.WriteByte(c)
		case c == '+' && i > 0 && i+1 < len(s) && isASCIIDigit(s[i-1]) && isASCIIDigit(s[i+1]):
			sb.WriteByte(' ')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
