package rewrite

import (
	"bytes"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tidwall/gjson"
)

// decodeJSON accepts body only if it is strict JSON (validateJSON) that
// gjson, which the locate stage walks it with, also accepts.
func decodeJSON(body []byte, maxDepth int) error {
	if err := validateJSON(body, maxDepth); err != nil {
		return err
	}
	if !gjson.ValidBytes(body) {
		return newError(CodeInvalidJSON, "", "rejected by the json reader")
	}
	return nil
}

// validateJSON checks that b is exactly one strict RFC 8259 JSON value: no
// byte order mark, no comments, no NaN or Infinity, no trailing data, only
// the four JSON whitespace bytes, valid UTF-8, no lone surrogate escapes,
// no NUL in object keys, and no nesting deeper than maxDepth. It is an
// iterative byte scan, so it runs before gjson (which recurses without a
// limit) ever sees the body, and it refuses anything encoding/json,
// Python's json or JSON.parse would read differently from gjson.
func validateJSON(b []byte, maxDepth int) *Error {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return newError(CodeInvalidJSON, "", "byte order mark before the json value")
	}
	var stack []byte // '{' or '['
	i := skipWS(b, 0)
	if i == len(b) {
		return newError(CodeInvalidJSON, "", "empty body")
	}
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return newError(CodeInvalidJSON, "", "unexpected end of data")
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return newError(CodeTooDeep, "", "nesting deeper than %d", maxDepth)
			}
			stack = append(stack, c)
			i = skipWS(b, i+1)
			if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			if c == '{' {
				var err *Error
				if i, err = scanKey(b, i); err != nil {
					return err
				}
			}
			continue
		case c == '"':
			end, _, err := scanString(b, i)
			if err != nil {
				return err
			}
			i = end
		case c == '-' || c >= '0' && c <= '9':
			end, ok := scanNumber(b, i)
			if !ok {
				return newError(CodeInvalidJSON, "", "malformed number at offset %d", i)
			}
			i = end
		case c == 't' || c == 'f' || c == 'n':
			lit := "null"
			if c == 't' {
				lit = "true"
			} else if c == 'f' {
				lit = "false"
			}
			if !hasPrefixAt(b, i, lit) {
				return newError(CodeInvalidJSON, "", "invalid literal at offset %d", i)
			}
			i += len(lit)
		default:
			return newError(CodeInvalidJSON, "", "unexpected character at offset %d", i)
		}
		// After a complete value: close containers or move to the next value.
		for {
			i = skipWS(b, i)
			if len(stack) == 0 {
				if i != len(b) {
					return newError(CodeInvalidJSON, "", "data after the top-level value at offset %d", i)
				}
				return nil
			}
			if i >= len(b) {
				return newError(CodeInvalidJSON, "", "unexpected end of data")
			}
			top := stack[len(stack)-1]
			if top == '{' && b[i] == '}' || top == '[' && b[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			if b[i] != ',' {
				return newError(CodeInvalidJSON, "", "expected ',' or closing bracket at offset %d", i)
			}
			i = skipWS(b, i+1)
			if top == '{' {
				var err *Error
				if i, err = scanKey(b, i); err != nil {
					return err
				}
			}
			break
		}
	}
}

// scanKey checks `"key" ws ":" ws` at b[i:] and returns the offset of the value.
func scanKey(b []byte, i int) (int, *Error) {
	if i >= len(b) || b[i] != '"' {
		return 0, newError(CodeInvalidJSON, "", "expected an object key at offset %d", i)
	}
	end, esc, err := scanString(b, i)
	if err != nil {
		return 0, err
	}
	// A NUL in a key is legal JSON, but C-string parsers truncate at it.
	if esc && strings.Contains(decodeString(b[i:end]), "\x00") {
		return 0, newError(CodeInvalidJSON, "", "nul character in an object key at offset %d", i)
	}
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		return 0, newError(CodeInvalidJSON, "", "expected ':' at offset %d", i)
	}
	return skipWS(b, i+1), nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func hasPrefixAt(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// scanString checks the string starting with the quote at b[i] and returns
// the offset just past its closing quote and whether it holds escapes.
func scanString(b []byte, i int) (end int, esc bool, err *Error) {
	start := i
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, esc, nil
		case c < 0x20:
			return 0, false, newError(CodeInvalidJSON, "", "control character in a string at offset %d", i)
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return 0, false, newError(CodeInvalidJSON, "", "unterminated string at offset %d", start)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					return 0, false, newError(CodeInvalidJSON, "", "invalid \\u escape at offset %d", i)
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// Only a high surrogate followed by an escaped low one is a
					// character; parsers disagree on everything else.
					if r >= 0xDC00 || !hasPrefixAt(b, i, `\u`) {
						return 0, false, newError(CodeInvalidJSON, "", "lone surrogate escape at offset %d", i-6)
					}
					r2, ok := hex4(b, i+2)
					if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
						return 0, false, newError(CodeInvalidJSON, "", "lone surrogate escape at offset %d", i-6)
					}
					i += 6
				}
			default:
				return 0, false, newError(CodeInvalidJSON, "", "invalid escape at offset %d", i)
			}
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return 0, false, newError(CodeInvalidJSON, "", "invalid utf-8 at offset %d", i)
			}
			i += n
		}
	}
	return 0, false, newError(CodeInvalidJSON, "", "unterminated string at offset %d", start)
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	hi, ok1 := hex2(b, i)
	lo, ok2 := hex2(b, i+2)
	if !ok1 || !ok2 {
		return 0, false
	}
	return rune(hi)<<8 | rune(lo), true
}

// scanNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i:].
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// decodeString returns the value of a JSON string already checked by
// scanString; raw includes the quotes.
func decodeString(raw []byte) string {
	raw = raw[1 : len(raw)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw)
	}
	var sb strings.Builder
	sb.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			sb.WriteByte(c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			sb.WriteByte('\b')
		case 'f':
			sb.WriteByte('\f')
		case 'n':
			sb.WriteByte('\n')
		case 'r':
			sb.WriteByte('\r')
		case 't':
			sb.WriteByte('\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(raw, i+8)
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			sb.WriteRune(r)
			i += 6
			continue
		default: // '"', '\\', '/'
			sb.WriteByte(raw[i+1])
		}
		i += 2
	}
	return sb.String()
}

// lenientStringEnd returns the offset of the quote closing the string that
// opens at b[i] (len(b) if none), and whether it holds a backslash.
func lenientStringEnd(b []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j, esc
		}
	}
	return len(b), esc
}

// lenientDecode decodes JSON string escapes, keeping a bad one as written.
func lenientDecode(raw []byte) string {
	var sb strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			sb.WriteByte(c)
			continue
		}
		switch raw[i+1] {
		case 'u':
			r, ok := hex4(raw, i+2)
			if !ok {
				sb.WriteByte(c)
				continue
			}
			i += 5
			if utf16.IsSurrogate(r) && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if r2, ok := hex4(raw, i+3); ok {
					r = utf16.DecodeRune(r, r2)
					i += 6
				}
			}
			sb.WriteRune(r)
		case 'n', 't', 'r', 'b', 'f':
			sb.WriteByte(' ') // ends a number as the control character would
			i++
		default:
			sb.WriteByte(raw[i+1])
			i++
		}
	}
	return sb.String()
}
