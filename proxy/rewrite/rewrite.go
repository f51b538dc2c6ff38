package rewrite

import (
	"errors"
	"fmt"
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
	// its type, under every reading an app might apply (see guard_readings.go):
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
	// KindXML is the text content of an XML element (locate_xml.go): Text is
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
	if _, ok := ParseGuardMode(cfg.Guard.String()); !ok || cfg.Guard == GuardReport {
		errs = append(errs, fmt.Errorf("guard mode %s is not a rewriter's: decide with reject, act with off or tokenize", cfg.Guard))
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

// rewritePrimary reads a JSON, form or XML body as its type says: decode
// its strict syntax, locate the fields and the text the guard reads, then
// guard and splice (finish).
func (r *Rewriter) rewritePrimary(body []byte, media Media, replace ReplaceFunc) ([]byte, error) {
	c := collector{cards: r.cards}
	switch media {
	case MediaJSON:
		if len(r.json) == 0 && r.guard == GuardOff {
			return body, nil
		}
		if err := decodeJSON(body, r.maxDepth); err != nil {
			return nil, err
		}
		if err := r.locateJSON(&c, body); err != nil {
			return nil, err
		}
	case MediaForm:
		if len(r.form) == 0 && r.guard == GuardOff {
			return body, nil
		}
		pairs, err := parseForm(body, true)
		if err != nil {
			return nil, err
		}
		if err := r.locateForm(&c, pairs, true); err != nil {
			return nil, err
		}
	case MediaXML:
		if len(r.xml) == 0 && r.guard == GuardOff {
			return body, nil
		}
		// One streaming walk decodes XML and locates its fields: see
		// locate_xml.go.
		if err := r.locateXML(&c, body); err != nil {
			return nil, err
		}
	}
	return r.finish(&c, body, replace)
}

// finish runs the last stages on what a walk located: the guard reads the
// recorded text and judges the body, then the splice.
func (r *Rewriter) finish(c *collector, body []byte, replace ReplaceFunc) ([]byte, error) {
	c.scan()
	if err := c.verdict(r.guard); err != nil {
		return nil, err
	}
	return c.splice(body, replace)
}

// rewriteOther is the primary reading of a body whose type is neither JSON
// nor a form: a body without a Content-Type is a form to Rack (and PHP
// reads a typeless POST's php://input as the app likes), anything else is
// raw text.
func (r *Rewriter) rewriteOther(body []byte, contentType string, replace ReplaceFunc) ([]byte, error) {
	var c collector
	if strings.TrimSpace(contentType) == "" {
		if hasPercentU(string(body)) { // see RewriteQuery
			return nil, newError(CodeInvalidForm, "", "non-standard %%uXXXX escape in a body without a content type")
		}
		pairs, err := parseForm(body, false)
		if err != nil {
			return nil, err
		}
		if err := r.locateForm(&c, pairs, false); err != nil {
			return nil, err
		}
	} else {
		s := string(body)
		for _, rn := range findCards(s) {
			c.addGuard("", "", []cardRun{rn}, KindText, editRaw, rn.start, rn.end)
		}
	}
	return r.finish(&c, body, replace)
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
	pairs, perr := parseForm([]byte(rawQuery), false)
	if perr != nil {
		return "", perr
	}
	var c collector
	if err := r.locateForm(&c, pairs, false); err != nil {
		return "", err
	}
	out, err := r.finish(&c, []byte(rawQuery), replace)
	if err != nil {
		return "", err
	}
	return string(out), nil
}
