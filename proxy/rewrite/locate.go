package rewrite

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// collector is what the locate stage hands on: every span a walk found,
// in document order. The guard stage (scan, verdict) reads it and lays out
// the values for the replace callback and the edits of the splice.
type collector struct {
	found []found
	cards *CardSet // if set, the guard hits it does not take are dropped

	// Set by scan.
	vals      []Value
	edits     []edit
	guardPath string // path of the first guard hit
	guardAt   int    // its byte offset
	guardHits int
	ambiguous string // path of the first ambiguous guard hit, if any
	ambigAt   int    // its byte offset
	anyAmbig  bool
}

// found is one span of the body a walk recorded: the value at a
// configured field, or text outside the fields for the guard to read.
type found struct {
	field, spec int  // the configured field (Value.Field, Value.Spec), unless guard is set
	guard       bool // text for the guard
	scanned     bool // guard text whose card numbers the walk found itself (runs)
	path        string
	// text is the decoded value or text (for a JSON number outside the
	// fields, its raw text).
	text       string
	runs       []cardRun
	kind       Kind
	ek         editKind
	start, end int
}

// addField records the value at a configured field.
func (c *collector) addField(fs fieldSel, path string, text string, kind Kind, ek editKind, start, end int) {
	c.found = append(c.found, found{field: fs.field, spec: fs.spec, path: path, text: text, kind: kind, ek: ek, start: start, end: end})
}

// addText records text outside the configured fields for the guard stage
// to search for card numbers. Text shorter than 13 bytes is not recorded:
// it has too few digits for a card number (a JSON number, whose exponent
// may stand for digits, is always recorded).
func (c *collector) addText(path string, text string, kind Kind, ek editKind, start, end int) {
	if len(text) < minCardDigits && kind != KindNumber {
		return
	}
	c.found = append(c.found, found{guard: true, path: path, text: text, kind: kind, ek: ek, start: start, end: end})
}

// addGuard records card numbers a walk found itself: the XML walk, which
// must read text across markup as it goes, and a raw text body.
func (c *collector) addGuard(path string, text string, runs []cardRun, kind Kind, ek editKind, start, end int) {
	c.found = append(c.found, found{guard: true, scanned: true, path: path, text: text, runs: runs, kind: kind, ek: ek, start: start, end: end})
}

// mayHoldCard is the walks' cheap pre-check before they record text for
// the guard: fewer than 13 ASCII digits, no escape and no non-ASCII byte
// (which could be another script's digit) means no card number.
func mayHoldCard(raw []byte) bool {
	digits := 0
	for _, c := range raw {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '\\' || c >= 0x80:
			return true
		}
	}
	return digits >= minCardDigits
}

// mayBeCardNumber is the same pre-check for a JSON number: shorter than 13
// characters and without an exponent, it is below 10^12 however it is read.
func mayBeCardNumber(raw []byte) bool {
	return len(raw) >= minCardDigits || bytes.ContainsAny(raw, "eE")
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
