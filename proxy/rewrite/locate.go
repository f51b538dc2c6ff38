package rewrite

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// collector gathers values and edits while a body is walked.
type collector struct {
	vals      []Value
	edits     []edit
	guardPath string // path of the first guard hit
	guardHits int
	ambiguous string // path of the first ambiguous guard hit, if any
	anyAmbig  bool
	cards     *CardSet // if set, the guard hits it does not take are dropped
}

func (c *collector) addField(fs fieldSel, path string, text string, kind Kind, ek editKind, start, end int) {
	c.edits = append(c.edits, edit{start: start, end: end, kind: ek, first: len(c.vals), n: 1})
	c.vals = append(c.vals, Value{Field: fs.field, Spec: fs.spec, Path: path, Text: text, Kind: kind})
}

func joinPath(path []string) string {
	return strings.Join(path, ".")
}

// safeFormPath renders a decoded form key for an error or a Value.Path.
func safeFormPath(key string) string { return safeText(key, MaxSelectorLen) }

// safeSegment renders a JSON key for a path that may reach logs and
// clients. A key that could hold a card number (12 or more digits), a key
// longer than 64 bytes or one with control characters is shown as "*".
func safeSegment(key string) string { return safeText(key, 64) }

func safeText(key string, maxLen int) string {
	if key == "" {
		return `""`
	}
	if len(key) > maxLen {
		return "*"
	}
	digits := 0
	for _, r := range key {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return "*"
		}
		if unicode.IsDigit(r) {
			digits++
		}
	}
	if digits >= 12 {
		return "*"
	}
	return key
}

// showXMLPath renders an element path for errors and logs: a segment that
// could hold a card number shows as "*".
func showXMLPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s != "" {
			segs[i] = safeSegment(s)
		}
	}
	return strings.Join(segs, "/")
}
