// Package rewrite finds the values at configured fields of a JSON or
// form-encoded body, hands them to a callback in one batch, and splices the
// callback's replacements into exactly their byte spans, leaving every other
// byte as it was. The inbound proxy uses it to swap card numbers for tokens,
// the egress proxy to swap tokens back for card numbers (issues 3 and 4).
//
// It also holds the guard: outside the configured fields it looks for
// card-like numbers and refuses the body or hands them to the callback too.
//
// The package is pure: no I/O besides decoding a body held in memory, no
// logging, no HTTP. Everything it returns about a refused body is an
// [*Error] that never contains a value from the body.
//
// Whatever a merchant app's JSON parser would read at a configured field is
// either handed to the callback or refused: the body is validated strictly
// (see [Rewriter.Rewrite]), walked as a whole rather than looked up by path
// (gjson's Get returns the first of duplicate keys, most parsers the last),
// keys are compared after unescaping and with encoding/json's case folding,
// and duplicate keys on a configured path are refused.
package rewrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DefaultMaxDepth is the nesting limit used when [Config.MaxDepth] is zero.
const DefaultMaxDepth = 64

// Field is one configured field. Exactly one of JSON, Form and XML is set.
type Field struct {
	// JSON is a selector in the grammar of [ValidateJSONSelector], e.g.
	// "items.#.card.number".
	JSON string
	// Form is a key in the grammar of [ValidateFormSelector], e.g.
	// "card[number]".
	Form string
	// XML is an element path in the grammar of [ValidateXMLSelector],
	// e.g. "/transaction/credit-card/number".
	XML string
	// Spec is the caller's own index (for example of the tokenization
	// spec); it is copied into every [Value] found at this field.
	Spec int
}

// Config is what a [Rewriter] is built from. The zero value has no fields
// and the guard in reject mode.
type Config struct {
	Fields []Field
	// Guard is what happens to card-like numbers outside Fields.
	Guard GuardMode
	// Ignore lists JSON selectors whose values (and everything below them)
	// the guard does not look at. Keys are compared exactly, not folded:
	// an exemption never grows. They apply to form keys too, segment by
	// segment ("order.id" exempts "order[id]"). An entry starting with "/"
	// is an XML element path (see [ValidateXMLIgnore]) and applies to XML
	// bodies only.
	Ignore []string
	// MaxDepth is the deepest nesting of JSON arrays and objects accepted.
	// If zero, DefaultMaxDepth.
	MaxDepth int
	// ReadAll, with the guard on, has Rewrite read every body, whatever
	// its type, under every reading an app might apply (see readings.go):
	// the inbound proxy sets it. Without it (egress), bodies other than
	// JSON and forms pass through and each is read only as its type says.
	ReadAll bool
	// Cards, if set, narrows what the guard takes for a card number in
	// JSON and form bodies (the egress response guard's response_cards):
	// a number it does not take is left as it is. Nil: every number
	// [IsCardNumber] takes.
	Cards *CardSet
}

// Kind says how a [Value] was written, and so what its replacement may be.
type Kind int

// Kinds of values.
const (
	// KindString is a JSON string: Text is its decoded value. Any
	// replacement is accepted and written as a JSON string.
	KindString Kind = iota + 1
	// KindNumber is a JSON number: Text is its raw text, ASCII digits only
	// for a configured field. The replacement must be a JSON integer
	// (digits, no leading zero) so the body stays valid JSON; the caller
	// keeps its length if the app cares.
	KindNumber
	// KindForm is a value (or, for a guard hit, a key) of a form body or
	// query string: Text is its decoded value. The replacement is
	// form-encoded.
	KindForm
	// KindXML is the text content of an XML element (xml.go): Text is
	// its decoded value; the replacement is XML-escaped.
	KindXML
	// KindText is a guard hit in a body read as raw text (text/plain,
	// multipart, any other type): Text is its digits. The replacement
	// takes the place of the digits and their separators as is.
	KindText
)

// Value is one value handed to the replace callback.
type Value struct {
	// Field is the index in Config.Fields, or -1 for a guard hit.
	Field int
	// Spec is Config.Fields[Field].Spec, or -1 for a guard hit.
	Spec int
	// Path locates the value: a JSON path such as "items.2.card.number" or
	// a form key such as "card[number]". A key that could itself hold a
	// card number (12 or more digits, or longer than 64 bytes) shows as
	// "*", so Path is safe to log and to return to a client.
	Path string
	// Text is the value: the decoded string or the raw number at a
	// configured field (possibly not a card number at all: the caller
	// validates it), or the ASCII digits of a card number the guard found
	// (separators removed; the replacement takes the place of the digits
	// and their separators).
	Text string
	Kind Kind
	// Offset is where the bytes the value replaces start in the body (or
	// query string) read.
	Offset int
}

// IsGuardHit reports whether v was found by the guard rather than at a
// configured field.
func (v Value) IsGuardHit() bool { return v.Field < 0 }

// ReplaceFunc receives every value found in a body, in document order, and
// returns one replacement for each, in the same order. It is called at most
// once per body and never with an empty slice. An error it returns is
// passed back from Rewrite wrapped with %w.
type ReplaceFunc func(vals []Value) ([]string, error)

type fieldSel struct {
	field int
	spec  int
	sel   selector
}

// Rewriter rewrites bodies for one route. Build it with [New]; it is
// immutable and safe for concurrent use.
type Rewriter struct {
	json      []fieldSel
	form      []fieldSel
	xml       []xmlSel
	ignore    []selector
	xmlIgnore []string
	guard     GuardMode
	maxDepth  int
	readAll   bool
	cards     *CardSet
}

// New checks cfg and builds a Rewriter. The error lists every bad selector.
func New(cfg Config) (*Rewriter, error) {
	r := &Rewriter{guard: cfg.Guard, maxDepth: cfg.MaxDepth, readAll: cfg.ReadAll && cfg.Guard != GuardOff, cards: cfg.Cards}
	var errs []error
	if r.maxDepth == 0 {
		r.maxDepth = DefaultMaxDepth
	}
	if r.maxDepth < 1 {
		errs = append(errs, fmt.Errorf("max depth %d: want at least 1", cfg.MaxDepth))
	}
	if _, ok := ParseGuardMode(cfg.Guard.String()); !ok {
		errs = append(errs, fmt.Errorf("unknown guard mode %d", int(cfg.Guard)))
	}
	for i, f := range cfg.Fields {
		set := 0
		for _, s := range []string{f.JSON, f.Form, f.XML} {
			if s != "" {
				set++
			}
		}
		switch {
		case set > 1:
			errs = append(errs, fmt.Errorf("field %d: set one of json, form and xml, not several", i))
		case f.XML != "":
			p, err := parseXMLSelector(f.XML, false)
			if err != nil {
				errs = append(errs, fmt.Errorf("field %d: %w", i, err))
				continue
			}
			r.xml = append(r.xml, xmlSel{i, f.Spec, p})
		case f.JSON != "":
			sel, err := parseJSONSelector(f.JSON)
			if err != nil {
				errs = append(errs, fmt.Errorf("field %d: %w", i, err))
				continue
			}
			r.json = append(r.json, fieldSel{i, f.Spec, sel})
		case f.Form != "":
			sel, err := parseFormSelector(f.Form)
			if err != nil {
				errs = append(errs, fmt.Errorf("field %d: %w", i, err))
				continue
			}
			r.form = append(r.form, fieldSel{i, f.Spec, sel})
		default:
			errs = append(errs, fmt.Errorf("field %d: set json, form or xml", i))
		}
	}
	for i, s := range cfg.Ignore {
		if IsXMLSelector(s) {
			p, err := parseXMLSelector(s, true)
			if err != nil {
				errs = append(errs, fmt.Errorf("ignore %d: %w", i, err))
				continue
			}
			r.xmlIgnore = append(r.xmlIgnore, p)
			continue
		}
		sel, err := parseJSONSelector(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ignore %d: %w", i, err))
			continue
		}
		r.ignore = append(r.ignore, sel)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// HasFields reports whether any field is configured. A route without
// fields need not buffer bodies it cannot inspect: Rewrite passes them
// through untouched.
func (r *Rewriter) HasFields() bool { return len(r.json) > 0 || len(r.form) > 0 || len(r.xml) > 0 }

// Rewrite finds every value at the configured fields of body and, unless
// the guard is off, every card-like number elsewhere; calls replace once
// with all of them; and returns body with exactly their byte spans replaced.
// body is not modified; when nothing is replaced it is returned as is.
//
// contentType selects the parser (see [ParseMediaType]). A type it cannot
// inspect is refused with [CodeUnsupportedMediaType] when fields are
// configured and passed through otherwise. An empty body is returned as is.
//
// JSON must be strict RFC 8259 (one value, no BOM, comments, NaN, trailing
// data, invalid UTF-8 or lone surrogate escapes) no deeper than MaxDepth.
// At a configured field a string is handed over decoded and replaced
// whole, escapes included; a number must be a plain integer
// ([CodeInvalidValue] otherwise); null and "" are skipped; a bool, object
// or array is refused with [CodeFieldType], as is an object where the
// selector says "#" or an array where it names a key. A key on a
// configured path matched twice is refused with [CodeDuplicateKey].
//
// Form bodies must be strict application/x-www-form-urlencoded: '&'
// separators only (';' is refused: parsers disagree on it), valid %XX
// escapes, no raw control or non-ASCII bytes, UTF-8 once decoded. Every
// occurrence of a repeated key is handed over. A key matches a selector
// when its bracket segments start with the selector's ("card[number][]"
// is inside "card[number]").
//
// With the guard in reject mode a hit refuses the body with
// [CodeCardNumberDetected] before replace is called.
func (r *Rewriter) Rewrite(body []byte, contentType string, replace ReplaceFunc) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	media, err := ParseMediaType(contentType)
	if err != nil || media == MediaOther {
		if r.HasFields() {
			if err == nil {
				err = newError(CodeUnsupportedMediaType, "", "content type cannot be inspected on a route with fields")
			}
			return nil, err
		}
		if !r.readAll {
			return body, nil
		}
		if err != nil {
			return nil, err
		}
		out, err := r.rewriteOther(body, contentType, replace)
		if err != nil {
			return nil, err
		}
		if err := r.otherReadings(out, media, contentType); err != nil {
			return nil, err
		}
		return out, nil
	}
	out, err := r.rewritePrimary(body, media, replace)
	if err != nil || !r.readAll {
		return out, err
	}
	if err := r.otherReadings(out, media, contentType); err != nil {
		return nil, err
	}
	return out, nil
}

// rewritePrimary reads a JSON or form body as its type says.
func (r *Rewriter) rewritePrimary(body []byte, media Media, replace ReplaceFunc) ([]byte, error) {
	c := collector{cards: r.cards}
	switch media {
	case MediaJSON:
		if len(r.json) == 0 && r.guard == GuardOff {
			return body, nil
		}
		if err := r.collectJSON(&c, body); err != nil {
			return nil, err
		}
	case MediaForm:
		if len(r.form) == 0 && r.guard == GuardOff {
			return body, nil
		}
		if err := r.collectForm(&c, body, true); err != nil {
			return nil, err
		}
	case MediaXML:
		if len(r.xml) == 0 && r.guard == GuardOff {
			return body, nil
		}
		if err := r.collectXML(&c, body); err != nil {
			return nil, err
		}
	}
	return c.apply(body, r.guard, replace)
}

// RewriteQuery applies the guard to a raw URL query string: it returns it
// unchanged, refuses it with [CodeCardNumberDetected], or (tokenize mode)
// returns it with every card-like number replaced. Configured fields do not
// apply to queries. Parsing is lenient (';' splits too, a bad escape is
// read literally) so that it sees at least what any server would.
func (r *Rewriter) RewriteQuery(rawQuery string, replace ReplaceFunc) (string, error) {
	if rawQuery == "" || r.guard == GuardOff {
		return rawQuery, nil
	}
	if hasPercentU(rawQuery) {
		// IIS, classic ASP.NET and JavaScript's unescape read %u0034 as
		// "4"; standard parsers keep it as text. The guard cannot read
		// both ways at once, and nothing current sends it.
		return "", newError(CodeInvalidForm, "", "non-standard %%uXXXX escape in the query string")
	}
	var c collector
	if err := r.collectForm(&c, []byte(rawQuery), false); err != nil {
		return "", err
	}
	out, err := c.apply([]byte(rawQuery), r.guard, replace)
	if err != nil {
		return "", err
	}
	return string(out), nil
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

// collector gathers values and edits while a body is walked.
type collector struct {
	vals      []Value
	edits     []edit
	guardPath string // path of the first guard hit
	guardAt   int    // its byte offset
	guardHits int
	ambiguous string // path of the first ambiguous guard hit, if any
	ambigAt   int    // its byte offset
	anyAmbig  bool
	cards     *CardSet // if set, the guard hits it does not take are dropped
}

func (c *collector) addField(fs fieldSel, path string, text string, kind Kind, ek editKind, start, end int) {
	c.edits = append(c.edits, edit{start: start, end: end, kind: ek, first: len(c.vals), n: 1})
	c.vals = append(c.vals, Value{Field: fs.field, Spec: fs.spec, Path: path, Text: text, Kind: kind, Offset: start})
}

func (c *collector) addGuard(path string, text string, runs []cardRun, kind Kind, ek editKind, start, end int) {
	if c.cards != nil {
		// Narrowed: a number the set does not take stays as written (its
		// span is simply not edited). Ambiguous runs are kept: they have
		// no one number to judge, and are refused.
		runs = slices.DeleteFunc(slices.Clone(runs), func(rn cardRun) bool { return !rn.ambiguous && !c.cards.Takes(rn.digits) })
		if len(runs) == 0 {
			return
		}
	}
	if c.guardHits == 0 {
		c.guardPath, c.guardAt = path, start
	}
	c.guardHits += len(runs)
	for _, rn := range runs {
		if rn.ambiguous && !c.anyAmbig {
			c.ambiguous, c.ambigAt, c.anyAmbig = path, start, true
		}
	}
	c.edits = append(c.edits, edit{start: start, end: end, kind: ek, first: len(c.vals), n: len(runs), text: text, runs: runs})
	for _, rn := range runs {
		c.vals = append(c.vals, Value{Field: -1, Spec: -1, Path: path, Text: rn.digits, Kind: kind, Offset: start})
	}
}

// apply enforces the guard mode, calls replace and splices.
func (c *collector) apply(body []byte, mode GuardMode, replace ReplaceFunc) ([]byte, error) {
	if c.guardHits > 0 && mode == GuardReject {
		e := newError(CodeCardNumberDetected, c.guardPath, "card-like number outside the configured fields")
		e.Offset = c.guardAt
		return nil, e
	}
	if c.anyAmbig {
		// No one number to tokenize: ASCII-only and Unicode-aware readers
		// would see different card numbers in the same digits.
		e := newError(CodeCardNumberDetected, c.ambiguous,
			"card-like digits that read as different numbers with and without non-ASCII digits; send ASCII digits")
		e.Offset = c.ambigAt
		return nil, e
	}
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

func joinPath(path []string) string {
	return strings.Join(path, ".")
}
