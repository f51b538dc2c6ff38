package rewrite

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
)

// XML bodies (issue 15: Braintree's Go SDK and Authorize.net's XML API send
// card numbers in XML). An XML selector is an absolute element path,
// "/transaction/credit-card/number": element local names from the root,
// separated by "/". XML is read as strictly as JSON: no DTD (so no
// entities beyond XML's five and character references), UTF-8 only, one
// root element, no deeper than MaxDepth, and at most one element at each
// configured path (parsers disagree on which of two they read). A
// configured element holds text only (character data, CDATA included);
// its whole content is replaced, references and all, so nothing else in
// the body changes.

// XMLField is one configured element path of an [XMLRewriter].
type XMLField struct {
	Path string // "/root/child/leaf"
	Spec int    // handed back in Value.Spec
}

// XMLRewriter rewrites XML bodies for one route. Build it with [NewXML]; it
// is immutable and safe for concurrent use.
type XMLRewriter struct {
	fields   []XMLField
	paths    []string // parsed, in the form of xmlWalk.path
	guard    GuardMode
	maxDepth int
}

// IsXMLMediaType reports whether contentType announces XML:
// application/xml, text/xml or a +xml type. A charset other than utf-8 (or
// us-ascii) is an [*Error] with [CodeUnsupportedMediaType].
func IsXMLMediaType(contentType string) (bool, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, nil
	}
	if mt != "application/xml" && mt != "text/xml" && !(strings.HasSuffix(mt, "+xml") && strings.Count(mt, "/") == 1) {
		return false, nil
	}
	if cs, ok := params["charset"]; ok {
		if cs = strings.ToLower(cs); cs != "utf-8" && cs != "utf8" && cs != "us-ascii" {
			return true, newError(CodeUnsupportedMediaType, "", "charset other than utf-8")
		}
	}
	return true, nil
}

// ValidateXMLSelector reports whether s is a valid XML selector.
func ValidateXMLSelector(s string) error {
	_, err := parseXMLSelector(s)
	return err
}

func parseXMLSelector(s string) (string, error) {
	if len(s) < 2 || s[0] != '/' || strings.HasSuffix(s, "/") {
		return "", fmt.Errorf("xml selector %q: write an absolute element path such as /transaction/credit-card/number", s)
	}
	for _, seg := range strings.Split(s[1:], "/") {
		if seg == "" || !isXMLName(seg) {
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

// NewXML builds an XMLRewriter. Guard GuardTokenize acts as GuardReject:
// tok does not splice guard hits into XML, so it refuses them.
func NewXML(fields []XMLField, guard GuardMode, maxDepth int) (*XMLRewriter, error) {
	r := &XMLRewriter{fields: fields, guard: guard, maxDepth: maxDepth}
	if r.maxDepth == 0 {
		r.maxDepth = DefaultMaxDepth
	}
	var errs []error
	for _, f := range fields {
		p, err := parseXMLSelector(f.Path)
		errs = append(errs, err)
		r.paths = append(r.paths, p)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// HasFields reports whether any XML field is configured.
func (r *XMLRewriter) HasFields() bool { return len(r.fields) > 0 }

// Rewrite finds the text of every configured element of body, refuses a
// card-like number anywhere else (text or attribute) unless the guard is
// off, calls replace once with the values, and returns body with exactly
// the configured elements' contents replaced (XML-escaped).
func (r *XMLRewriter) Rewrite(body []byte, replace ReplaceFunc) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	var c collector
	if err := r.collect(&c, body); err != nil {
		return nil, err
	}
	mode := r.guard
	if mode == GuardTokenize {
		mode = GuardReject
	}
	if c.guardHits > 0 && mode == GuardReject {
		return nil, newError(CodeCardNumberDetected, c.guardPath, "card-like number outside the configured fields")
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
	var out bytes.Buffer
	out.Grow(len(body))
	at := 0
	for _, e := range c.edits { // in document order, not overlapping; fields only
		out.Write(body[at:e.start])
		xml.EscapeText(&out, []byte(repl[e.first]))
		at = e.end
	}
	out.Write(body[at:])
	return out.Bytes(), nil
}

// collect walks body and records the configured elements' contents as
// values with their byte spans, and guard hits.
func (r *XMLRewriter) collect(c *collector, body []byte) error {
	invalid := func(format string, args ...any) error {
		return newError(CodeInvalidXML, "", format, args...)
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true // no Entity map, no AutoClose: only XML's own references
	var path []string
	seen := map[string]bool{}
	roots := 0
	// open is the configured element being read: its field, where its
	// content starts, and what it has held so far.
	var open *openXML
	for {
		before := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return invalid("not well-formed XML: %s", xmlErrText(err))
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if open != nil {
				return newError(CodeFieldType, r.paths[open.field], "a configured element holds an element; it must hold text only")
			}
			if len(path) == 0 {
				if roots++; roots > 1 {
					return invalid("more than one root element")
				}
			}
			if len(path) >= r.maxDepth {
				return newError(CodeTooDeep, "", "XML nested deeper than %d elements", r.maxDepth)
			}
			path = append(path, t.Name.Local)
			p := "/" + strings.Join(path, "/")
			for i, fp := range r.paths {
				if fp != p {
					continue
				}
				if seen[p] {
					return newError(CodeDuplicateKey, p, "element appears twice; send it once")
				}
				seen[p] = true
				off := int(d.InputOffset())
				open = &openXML{field: i, start: off, end: off}
			}
			for _, a := range t.Attr {
				if err := checkXMLText(a.Value); err != nil {
					return err
				}
				r.guardText(c, p+"/@"+a.Name.Local, a.Value)
			}
		case xml.EndElement:
			if open != nil {
				if open.text != "" {
					f := r.fields[open.field]
					c.addField(fieldSel{field: open.field, spec: f.Spec}, r.paths[open.field], open.text, KindXML, editXML, open.start, open.end)
				}
				open = nil
			}
			path = path[:len(path)-1]
		case xml.CharData:
			text := string(t)
			if err := checkXMLText(text); err != nil {
				return err
			}
			if len(path) == 0 {
				if strings.TrimSpace(text) != "" {
					return invalid("text outside the root element")
				}
				continue
			}
			if open != nil {
				// Text and CDATA sections in a row are one span.
				open.text += text
				open.end = int(d.InputOffset())
				continue
			}
			r.guardText(c, "/"+strings.Join(path, "/"), text)
		case xml.Comment:
			if open != nil {
				return newError(CodeFieldType, r.paths[open.field], "a configured element holds a comment; it must hold text only")
			}
			r.guardText(c, "/"+strings.Join(path, "/"), string(t))
		case xml.Directive:
			return invalid("a DTD or other <!...> declaration; tok reads no DTDs")
		case xml.ProcInst:
			if t.Target != "xml" || before != 0 {
				return invalid("a processing instruction other than the XML declaration at the start")
			}
		}
	}
	if roots == 0 || len(path) != 0 {
		return invalid("no complete root element")
	}
	return nil
}

// openXML is the configured element being read: its field, the span of
// its content so far, and the content's text.
type openXML struct {
	field      int
	start, end int
	text       string
}

// guardText records card-like numbers in text as guard hits at path.
func (r *XMLRewriter) guardText(c *collector, path, text string) {
	if r.guard == GuardOff {
		return
	}
	if runs := findCards(text); len(runs) > 0 {
		c.addGuard(path, text, runs, KindXML, editXML, 0, 0)
	}
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
		return fmt.Sprintf("line %d: %s", se.Line, se.Msg)
	}
	return "unreadable"
}
