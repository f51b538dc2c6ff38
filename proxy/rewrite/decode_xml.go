package rewrite

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// newXMLDecoder returns a decoder for body and the function that reads its
// next token. Strict: XML's own rules only (no DTD entities, no HTML
// repairs). Lenient, for a body of another type an app would sniff as
// XML: read as an HTML-tolerant parser reads it.
func newXMLDecoder(body []byte, lenient bool) (*xml.Decoder, func() (xml.Token, error)) {
	d := xml.NewDecoder(bytes.NewReader(body))
	if !lenient {
		d.Strict = true // no Entity map, no AutoClose: only XML's own references
		// RawToken: no namespace translation (selectors use local names),
		// so the walk checks that end tags match itself.
		return d, d.RawToken
	}
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	// A declared encoding (ISO-8859-1, windows-1252) stops Go's decoder
	// but not Python's or PHP's: read the bytes as Latin-1, whose
	// digits, '&', '#' and ';' are ASCII's.
	d.CharsetReader = latin1Reader
	// Token, not RawToken: the lenient reading needs its AutoClose.
	return d, d.Token
}

// sniffXML reports whether b starts with '<' after a UTF-8 byte-order mark
// and white space.
func sniffXML(b []byte) bool {
	b = bytes.TrimLeft(bytes.TrimPrefix(b, utf8BOMBytes), " \t\r\n")
	return len(b) > 0 && b[0] == '<'
}

var utf8BOMBytes = []byte("\ufeff")

// latin1Reader decodes input as ISO-8859-1, whatever label declares it.
func latin1Reader(_ string, input io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return strings.NewReader(sb.String()), nil
}

// checkXMLText refuses text the decoder let through that readers differ on.
func checkXMLText(s string) error {
	if strings.ContainsRune(s, '\uFFFD') {
		return newError(CodeInvalidXML, "", "invalid UTF-8 or a replacement character")
	}
	return nil
}

func xmlErrText(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		// The decoder quotes what it could not read: its digits are masked.
		msg := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, se.Msg)
		return fmt.Sprintf("line %d: %s", se.Line, safeText(msg, 200))
	}
	return "unreadable"
}

// attrSpans returns the raw value spans (inside the quotes) of the
// attributes of a well-formed start tag, in order.
func attrSpans(tag []byte) [][2]int {
	var spans [][2]int
	i := 1
	for i < len(tag) && !isXMLSpace(tag[i]) && tag[i] != '>' && tag[i] != '/' {
		i++ // the element name
	}
	for i < len(tag) {
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '>' || tag[i] == '/' {
			break
		}
		for i < len(tag) && tag[i] != '=' {
			i++
		}
		i++
		for i < len(tag) && isXMLSpace(tag[i]) {
			i++
		}
		if i >= len(tag) {
			break
		}
		q := tag[i]
		end := bytes.IndexByte(tag[i+1:], q)
		if end < 0 {
			break
		}
		spans = append(spans, [2]int{i + 1, i + 1 + end})
		i += end + 2
	}
	return spans
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
