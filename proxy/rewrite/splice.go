package rewrite

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// editKind says how an edit's replacement is encoded.
type editKind int

const (
	editJSONString editKind = iota // whole JSON string (quotes included) → quoted replacement
	editJSONNumber                 // whole JSON number → integer replacement
	editJSONRuns                   // JSON string with guard hits → re-quoted with runs replaced
	editForm                       // raw form value → form-encoded replacement
	editFormRuns                   // raw form key or value with guard hits → re-encoded with runs replaced
	editXML                        // an XML element's content → XML-escaped replacement
	editXMLRuns                    // XML text or attribute value with guard hits → re-escaped with runs replaced
	editRaw                        // digits (and separators) of a raw text body → replacement as is
)

// edit is one byte span of the body to replace, covering vals[first:first+n].
type edit struct {
	start, end int
	kind       editKind
	first, n   int
	text       string    // decoded text, for the runs kinds
	runs       []cardRun // spans within text
}

// splice calls replace once with every value the guard stage laid out and
// splices the replacements into their spans in one pass.
func (c *collector) splice(body []byte, replace ReplaceFunc) ([]byte, error) {
	if len(c.vals) == 0 {
		return body, nil
	}
	repl, err := replace(c.vals)
	if err != nil {
		return nil, fmt.Errorf("replace values: %w", err)
	}
	if len(repl) != len(c.vals) {
		return nil, newError(CodeInvalidReplacement, "", "replace returned %d values for %d", len(repl), len(c.vals))
	}
	slices.SortFunc(c.edits, func(a, b edit) int { return a.start - b.start })
	parts := make([][]byte, len(c.edits))
	grow := 0
	for i, e := range c.edits {
		if i > 0 && e.start < c.edits[i-1].end {
			return nil, newError(CodeInvalidReplacement, "", "overlapping edits") // a bug, never expected
		}
		p, err := e.encode(repl[e.first:e.first+e.n], c.vals[e.first].Path)
		if err != nil {
			return nil, err
		}
		parts[i] = p
		grow += len(p) - (e.end - e.start)
	}
	out := make([]byte, len(body)+grow)
	// Splice from the end backwards: earlier spans keep their offsets.
	tail := len(out)
	prev := len(body)
	for i := len(c.edits) - 1; i >= 0; i-- {
		e := c.edits[i]
		n := copy(out[tail-(prev-e.end):tail], body[e.end:prev])
		tail -= n
		tail -= copy(out[tail-len(parts[i]):tail], parts[i])
		prev = e.start
	}
	copy(out[:tail], body[:prev])
	return out, nil
}

// encode renders the replacement bytes of one edit.
func (e edit) encode(repl []string, path string) ([]byte, error) {
	switch e.kind {
	case editJSONString:
		b, ok := appendQuoted(nil, repl[0])
		if !ok {
			return nil, newError(CodeInvalidReplacement, path, "replacement is not valid utf-8")
		}
		return b, nil
	case editJSONNumber:
		if !isJSONInteger(repl[0]) {
			return nil, newError(CodeInvalidReplacement, path, "replacement for a json number is not an integer")
		}
		return []byte(repl[0]), nil
	case editForm:
		return []byte(formEscape(repl[0])), nil
	case editXML:
		return escapeXML(repl[0]), nil
	case editRaw:
		return []byte(repl[0]), nil
	case editJSONRuns, editFormRuns, editXMLRuns:
		var sb strings.Builder
		prev := 0
		for i, rn := range e.runs {
			sb.WriteString(e.text[prev:rn.start])
			sb.WriteString(repl[i])
			prev = rn.end
		}
		sb.WriteString(e.text[prev:])
		switch e.kind {
		case editFormRuns:
			return []byte(formEscape(sb.String())), nil
		case editXMLRuns:
			return escapeXML(sb.String()), nil
		}
		b, ok := appendQuoted(nil, sb.String())
		if !ok {
			return nil, newError(CodeInvalidReplacement, path, "replacement is not valid utf-8")
		}
		return b, nil
	}
	return nil, newError(CodeInvalidReplacement, path, "unknown edit")
}

// isJSONInteger reports whether s is 0|[1-9][0-9]*.
func isJSONInteger(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	return isDigits(s)
}

// appendQuoted appends s as a JSON string. It escapes only what JSON
// requires (quote, backslash, control characters), so re-encoding the
// value of a string that had no escapes reproduces its bytes exactly.
// ok is false when s is not valid UTF-8.
func appendQuoted(dst []byte, s string) ([]byte, bool) {
	if !utf8.ValidString(s) {
		return dst, false
	}
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"'), true
}

// formEscape encodes a replacement for a form body: everything but the
// unreserved characters is escaped, space as '+'.
func formEscape(s string) string { return url.QueryEscape(s) }

// escapeXML is s escaped for XML text or an attribute value.
func escapeXML(s string) []byte {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s)) // writes to a buffer: no error
	return b.Bytes()
}
