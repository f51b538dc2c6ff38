package rewrite

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Selector limits, checked when a [Rewriter] is built.
const (
	// MaxSelectorLen is the longest selector accepted, in bytes.
	MaxSelectorLen = 256
	// MaxSelectorSegments is the most segments a selector may have.
	MaxSelectorSegments = 32
	// maxIndex bounds a numeric segment used as an array index.
	maxIndex = 1 << 20
)

// segment is one step of a selector: an object key, or "#" (any array
// element; in form keys any numeric or empty bracket segment).
type segment struct {
	key   string
	any   bool // "#"
	index int  // the array index a digit-only key also names, or -1
}

type selector []segment

// ValidateJSONSelector reports whether s is a JSON selector this package
// accepts. The grammar:
//
//	selector = segment *( "." segment )          ; at most 256 bytes, 32 segments
//	segment  = "#" / 1*( ALPHA / DIGIT / "_" / "$" / "@" / "-" / escaped )
//	escaped  = "\\" ( "." / "[" / "]" / "#" / "\\" )  ; the character itself, in a key
//
// "#" matches every element of an array. A segment of digits only matches
// both the object key spelled that way and, without leading zeros, the
// array element at that index (the way gjson reads "items.0"). Keys are
// compared with Unicode simple case folding, as Go's encoding/json matches
// struct fields, so "card.number" also catches "Card.NUMBER": a superset of
// what any parser would read there.
func ValidateJSONSelector(s string) error {
	_, err := parseJSONSelector(s)
	return err
}

// ValidateFormSelector reports whether s is a form selector this package
// accepts: a non-empty key of at most 256 bytes of valid UTF-8 without
// control characters, in the bracket notation that PHP, Rack and qs use
// (name, then any number of "[...]" groups, e.g. "card[number]"). A "#"
// group matches any numeric or empty group ("items[#][pan]" catches
// "items[0][pan]" and "items[][pan]"). See [Rewriter.Rewrite] for how body
// keys are matched.
func ValidateFormSelector(s string) error {
	_, err := parseFormSelector(s)
	return err
}

func parseJSONSelector(s string) (selector, error) {
	if s == "" {
		return nil, errors.New("empty json selector")
	}
	if len(s) > MaxSelectorLen {
		return nil, fmt.Errorf("json selector longer than %d bytes", MaxSelectorLen)
	}
	parts, err := splitJSONSelector(s)
	if err != nil {
		return nil, err
	}
	if len(parts) > MaxSelectorSegments {
		return nil, fmt.Errorf("json selector has more than %d segments", MaxSelectorSegments)
	}
	sel := make(selector, 0, len(parts))
	for i, p := range parts {
		if p.raw == "#" {
			sel = append(sel, segment{any: true, index: -1})
			continue
		}
		if p.key == "" {
			return nil, fmt.Errorf("json selector %q: empty segment %d", s, i+1)
		}
		for j := 0; j < len(p.raw); j++ {
			if c := p.raw[j]; c == '\\' {
				j++ // an escaped character: checked by splitJSONSelector
			} else if !isSelectorKeyByte(c) {
				return nil, fmt.Errorf("json selector %q: segment %d: character %q not allowed (use letters, digits, _ $ @ - or #; escape . [ ] # \\ with a backslash)", s, i+1, c)
			}
		}
		sel = append(sel, segment{key: p.key, index: arrayIndex(p.raw)})
	}
	return sel, nil
}

// jsonPart is one segment of a JSON selector: as written, and the key it
// names with its escapes undone.
type jsonPart struct{ raw, key string }

// splitJSONSelector splits s at each "." not escaped by a backslash
// (keys holding "." or "[" are spelled "order\.id", "a\[0\]").
// A backslash escapes one of . [ ] # \ and nothing else.
func splitJSONSelector(s string) ([]jsonPart, error) {
	var parts []jsonPart
	var raw, key strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 == len(s) || !strings.ContainsRune(`.[]#\`, rune(s[i+1])) {
				return nil, fmt.Errorf("json selector %q: a backslash escapes only . [ ] # or \\", s)
			}
			raw.WriteByte(c)
			raw.WriteByte(s[i+1])
			key.WriteByte(s[i+1])
			i++
		case c == '.':
			parts = append(parts, jsonPart{raw.String(), key.String()})
			raw.Reset()
			key.Reset()
		default:
			raw.WriteByte(c)
			key.WriteByte(c)
		}
	}
	return append(parts, jsonPart{raw.String(), key.String()}), nil
}

func isSelectorKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '$' || c == '@' || c == '-'
}

// arrayIndex returns the index a digit-only key names, or -1.
func arrayIndex(p string) int {
	if p == "" || len(p) > 1 && p[0] == '0' {
		return -1
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return -1
		}
	}
	n, err := strconv.Atoi(p)
	if err != nil || n >= maxIndex {
		return -1
	}
	return n
}

func parseFormSelector(s string) (selector, error) {
	if s == "" {
		return nil, errors.New("empty form selector")
	}
	if len(s) > MaxSelectorLen {
		return nil, fmt.Errorf("form selector longer than %d bytes", MaxSelectorLen)
	}
	if !utf8.ValidString(s) {
		return nil, errors.New("form selector is not valid utf-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return nil, errors.New("form selector contains a control character")
		}
	}
	parts, ok := splitFormKey(s)
	if !ok {
		return nil, fmt.Errorf("form selector %q: malformed brackets (want name[a][b])", s)
	}
	if len(parts) > MaxSelectorSegments {
		return nil, fmt.Errorf("form selector has more than %d segments", MaxSelectorSegments)
	}
	sel := make(selector, len(parts))
	for i, p := range parts {
		sel[i] = segment{key: p, any: p == "#", index: -1}
	}
	return sel, nil
}

// splitFormKey splits a decoded form key in bracket notation into its
// segments: "card[number]" → [card number], "items[][x]" → [items "" x].
// A segment holding dots is split further when every part is non-empty
// ("card.number" → [card number]), because qs (allowDots) reads it that
// way: matching more keys than a parser would is the safe direction.
// ok is false for malformed brackets ("a[b", "a[b]c", "[a]"), which PHP and
// Rack each repair differently.
func splitFormKey(k string) (parts []string, ok bool) {
	i := strings.IndexByte(k, '[')
	if i < 0 {
		return splitDots(nil, k), true
	}
	if i == 0 {
		return nil, false
	}
	parts = splitDots(parts, k[:i])
	rest := k[i:]
	for rest != "" {
		if rest[0] != '[' {
			return nil, false
		}
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return nil, false
		}
		inner := rest[1:j]
		if strings.IndexByte(inner, '[') >= 0 {
			return nil, false
		}
		parts = splitDots(parts, inner)
		rest = rest[j+1:]
	}
	return parts, true
}

func splitDots(parts []string, s string) []string {
	if strings.IndexByte(s, '.') < 0 {
		return append(parts, s)
	}
	sub := strings.Split(s, ".")
	for _, p := range sub {
		if p == "" {
			return append(parts, s)
		}
	}
	return append(parts, sub...)
}

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

// phpFormKey splits key as PHP's parse_str and $_POST do: in the name
// before the first '[', spaces and dots become '_' (and so does a '[' that
// is never closed, with the rest of the key kept as written); inside
// brackets nothing is mangled or split. Leading spaces are already gone.
func phpFormKey(key string) []string {
	mangle := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == ' ' || r == '.' || r == '[' {
				return '_'
			}
			return r
		}, s)
	}
	i := strings.IndexByte(key, '[')
	if i < 0 {
		return []string{mangle(key)}
	}
	parts := []string{mangle(key[:i])}
	for rest := key[i:]; rest != ""; {
		j := strings.IndexByte(rest, ']')
		if rest[0] != '[' || j < 0 {
			if len(parts) == 1 { // an unclosed first bracket: one flat name
				return []string{mangle(key[:i]) + "_" + key[i+1:]}
			}
			break // PHP ignores what follows the last closed bracket
		}
		parts = append(parts, rest[1:j])
		rest = rest[j+1:]
	}
	return parts
}

// ValidateXMLSelector reports whether s is a valid XML selector.
func ValidateXMLSelector(s string) error {
	_, err := parseXMLSelector(s, false)
	return err
}

// ValidateXMLIgnore reports whether s is a valid XML ignore entry: an
// element path, optionally ending in "/@name" (an attribute of that
// element).
func ValidateXMLIgnore(s string) error {
	_, err := parseXMLSelector(s, true)
	return err
}

// IsXMLSelector reports whether s is written as an XML selector (it starts
// with "/"), as opposed to a JSON one.
func IsXMLSelector(s string) bool { return strings.HasPrefix(s, "/") }

func parseXMLSelector(s string, attr bool) (string, error) {
	if len(s) > MaxSelectorLen {
		return "", fmt.Errorf("xml selector longer than %d bytes", MaxSelectorLen)
	}
	if len(s) < 2 || s[0] != '/' || strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("xml selector %q: write an absolute element path such as /transaction/credit-card/number", s)
	}
	segs := strings.Split(s[1:], "/")
	if len(segs) > MaxSelectorSegments {
		return "", fmt.Errorf("xml selector has more than %d segments", MaxSelectorSegments)
	}
	for i, seg := range segs {
		if attr && i == len(segs)-1 && i > 0 && strings.HasPrefix(seg, "@") {
			seg = seg[1:]
		}
		if !isXMLName(seg) {
			return "", fmt.Errorf("xml selector %q: segment %q is not an element name (letters, digits, _ - .; no prefix)", s, seg)
		}
	}
	return s, nil
}

func isXMLName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.')
		if !ok {
			return false
		}
	}
	return s != ""
}
