package rewrite

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
)

// XML bodies (Braintree's Go SDK and Authorize.net's XML API send card
// numbers in XML; apps take XML orders). An XML selector is an absolute
// element path, "/transaction/credit-card/number": element local names from
// the root, separated by "/", compared exactly (XML names are
// case-sensitive; a namespace prefix is not part of the name). The same
// syntax selects fields inbound and on egress routes; an ignore entry may
// also end in "/@name", an attribute.
//
// XML is read as strictly as JSON: no DTD (so no entities beyond XML's
// five and character references), UTF-8 only, one root element, no deeper
// than MaxDepth, and at most one element at each configured path (parsers
// disagree on which of two they read). A configured element holds text
// only (character data, CDATA included); its value is that text without
// surrounding white space, and its content between that white space is
// replaced, references and all, by the XML-escaped replacement, so nothing
// else in the body changes.
//
// The guard reads what an XML parser hands an app: text (character
// references decoded, CDATA included), attribute values, comments, element
// and attribute names. Text pieces are also read joined: an element's own
// pieces across comments, CDATA sections and child elements, and, on
// bodies read as apps might (inbound), every piece with the next, as
// ElementTree's itertext() and the DOM's textContent join descendants. A
// card number split by markup is refused, never tokenized (no one span
// holds it).

// xmlSel is one configured XML field.
type xmlSel struct {
	field, spec int
	path        string
}

// xmlFrame is one open element of the walk.
type xmlFrame struct {
	path    string   // "/a/b", local names as sent
	name    xml.Name // as written (prefix in Space), for the end tag's check
	ignored bool     // the element is exempt from the guard, with all below it
	// joined is the element's own text pieces read together, and breaks
	// where one piece ends and the next begins, for the split check.
	joined []byte
	breaks []int
	pieces int
}

// xmlWalk is one reading of an XML body.
type xmlWalk struct {
	r       *Rewriter
	c       *collector
	body    []byte
	lenient bool       // a sniffed reading: fields off, every hit refuses, a parse error ends it
	stack   []xmlFrame // by value: one allocation for the walk, not one per element
	seen    map[string]bool
	open    *openXML // the configured element being read, or nil
	// all is the document's text outside fields and exempt elements, in
	// order (a NUL stands for those), and allBreaks where each text piece
	// starts: what itertext() and textContent join (see crossCheck).
	all       []byte
	allBreaks []int
}

// openXML is the configured element being read: its field, the span of
// its content so far, and the content's text.
type openXML struct {
	sel        xmlSel
	start, end int
	text       strings.Builder
}

// locateXML is the primary reading of a body declared as XML: the
// configured elements' contents become values, card numbers elsewhere
// guard hits.
func (r *Rewriter) locateXML(c *collector, body []byte) error {
	w := &xmlWalk{r: r, c: c, body: body, seen: map[string]bool{}, stack: make([]xmlFrame, 0, 16)}
	return w.run()
}

func (w *xmlWalk) run() error {
	d, next := newXMLDecoder(w.body, w.lenient)
	roots := 0
	for {
		before := int(d.InputOffset())
		tok, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if w.lenient {
				break // what parsed so far is what the app reads
			}
			return w.invalid("not well-formed XML: %s", xmlErrText(err))
		}
		after := int(d.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			if len(w.stack) == 0 {
				if roots++; roots > 1 && !w.lenient {
					return w.invalid("more than one root element")
				}
			}
			err = w.start(t, before, after)
		case xml.EndElement:
			err = w.end(t)
		case xml.CharData:
			err = w.text(string(t), before, after)
		case xml.Comment:
			err = w.comment(string(t), before)
		case xml.Directive:
			err = w.directive(t)
		case xml.ProcInst:
			err = w.procInst(t, before)
		}
		if err != nil {
			return err
		}
	}
	if !w.lenient && (roots == 0 || len(w.stack) != 0) {
		return w.invalid("no complete root element")
	}
	return w.crossCheck()
}

// crossCheck refuses, on bodies read as apps might read them (inbound,
// and sniffed readings), a card number that shows only when text pieces
// are joined across markup, as ElementTree's itertext() and the DOM's
// textContent join an element's descendants: "<n>4111<b>1111</b>…</n>".
// Two adjacent pieces always share an ancestor whose joined text holds
// both, so the document's text read once covers every element. Provider
// answers (no ReadAll) are read as documents: only an element's own
// pieces are joined (splitCheck), so that neighbouring ids never make a
// card.
func (w *xmlWalk) crossCheck() error {
	if !w.lenient && !w.r.readAll || len(w.allBreaks) < 2 {
		return nil
	}
	for _, rn := range findCards(string(w.all)) {
		for _, b := range w.allBreaks {
			if b > rn.start && b < rn.end {
				if w.lenient {
					return readingHit("xml")
				}
				return newError(CodeCardNumberDetected, "", "card-like number split across XML elements or markup; send it as one text")
			}
		}
	}
	return nil
}

// addAll appends one text piece to the document's text.
func (w *xmlWalk) addAll(text string) {
	if !w.lenient && !w.r.readAll {
		return
	}
	w.allBreaks = append(w.allBreaks, len(w.all))
	w.all = append(w.all, text...)
}

func (w *xmlWalk) invalid(format string, args ...any) error {
	return newError(CodeInvalidXML, "", format, args...)
}

func (w *xmlWalk) guardOn(ignored bool) bool { return w.r.guard != GuardOff && !ignored }

func (w *xmlWalk) start(t xml.StartElement, before, after int) error {
	if w.open != nil {
		return newError(CodeFieldType, showXMLPath(w.open.sel.path), "a configured element holds an element; it must hold text only")
	}
	if len(w.stack) >= w.r.maxDepth {
		if w.lenient {
			return readingHit("xml nested too deep to read")
		}
		return newError(CodeTooDeep, "", "XML nested deeper than %d elements", w.r.maxDepth)
	}
	f := xmlFrame{path: "/" + t.Name.Local, name: t.Name}
	if parent := w.top(); parent != nil {
		parent.breaks = append(parent.breaks, len(parent.joined))
		f.path = parent.path + f.path
		f.ignored = parent.ignored
	}
	f.ignored = f.ignored || w.ignoredPath(f.path)
	w.stack = append(w.stack, f)
	return w.startRest(t, w.top(), before, after)
}

// startRest matches the element f just opened against the fields and
// reads its name and attributes.
func (w *xmlWalk) startRest(t xml.StartElement, f *xmlFrame, before, after int) error {
	if err := w.name(t.Name, f); err != nil {
		return err
	}
	if !w.lenient {
		for _, sel := range w.r.xml {
			if sel.path != f.path {
				continue
			}
			if w.seen[sel.path] {
				return newError(CodeDuplicateKey, showXMLPath(sel.path), "element appears twice; send it once")
			}
			w.seen[sel.path] = true
			w.open = &openXML{sel: sel, start: after, end: after}
		}
	}
	var spans [][2]int // raw attribute value spans, found when first needed
	for i, a := range t.Attr {
		if err := checkXMLText(a.Value); err != nil && !w.lenient {
			return err
		}
		apath := f.path + "/@" + a.Name.Local
		if err := w.name(a.Name, f); err != nil {
			return err
		}
		if !w.guardOn(f.ignored || w.ignoredPath(apath)) {
			continue
		}
		runs := findCards(a.Value)
		if len(runs) == 0 {
			continue
		}
		if w.lenient {
			return readingHit("xml")
		}
		if spans == nil {
			spans = attrSpans(w.body[before:after])
		}
		if i >= len(spans) {
			// Never expected: the decoder read the tag. Refuse rather than
			// splice a span not found.
			return newError(CodeCardNumberDetected, showXMLPath(apath), "card-like number in an attribute tok cannot locate")
		}
		w.c.addGuard(showXMLPath(apath), a.Value, runs, KindXML, editXMLRuns, before+spans[i][0], before+spans[i][1])
	}
	return nil
}

// name refuses a card number in an element or attribute name (and its
// prefix): an app that walks names reads it, and tok cannot replace it.
func (w *xmlWalk) name(n xml.Name, f *xmlFrame) error {
	if !w.guardOn(false) || len(findCards(n.Local)) == 0 {
		return nil
	}
	if w.lenient {
		return readingHit("xml")
	}
	return newError(CodeCardNumberDetected, showXMLPath(f.path), "card-like number in an XML name")
}

func (w *xmlWalk) end(t xml.EndElement) error {
	if len(w.stack) == 0 {
		if w.lenient {
			return nil
		}
		return w.invalid("an end tag without its element")
	}
	f := w.stack[len(w.stack)-1]
	if f.name != t.Name && !w.lenient {
		return w.invalid("element <%s> closed by </%s>", safeSegment(f.name.Local), safeSegment(t.Name.Local))
	}
	if o := w.open; o != nil {
		w.addAll("\x00") // a field's text becomes a token: it joins nothing
		// White space around the value (a pretty-printed field) stays as
		// sent: apps strip it, and the value is what lies between.
		start, end := o.start, o.end
		for start < end && isXMLSpace(w.body[start]) {
			start++
		}
		for end > start && isXMLSpace(w.body[end-1]) {
			end--
		}
		if text := strings.TrimSpace(o.text.String()); text != "" {
			w.c.addField(fieldSel{field: o.sel.field, spec: o.sel.spec}, showXMLPath(o.sel.path), text, KindXML, editXML, start, end)
		}
		w.open = nil
	}
	w.stack = w.stack[:len(w.stack)-1]
	if f.pieces > 1 && w.guardOn(f.ignored) {
		if err := w.splitCheck(&f); err != nil {
			return err
		}
	}
	if p := w.top(); p != nil {
		p.breaks = append(p.breaks, len(p.joined))
	}
	return nil
}

// splitCheck refuses a card number that shows only when f's text pieces
// are read together: one piece alone holds part of it.
func (w *xmlWalk) splitCheck(f *xmlFrame) error {
	for _, rn := range findCards(string(f.joined)) {
		if w.c.cards != nil && !rn.ambiguous && !w.c.cards.Takes(rn.digits) {
			continue // a number the route's response_cards leaves out
		}
		for _, b := range f.breaks {
			if b > rn.start && b < rn.end {
				if w.lenient {
					return readingHit("xml")
				}
				return newError(CodeCardNumberDetected, showXMLPath(f.path), "card-like number split by XML markup; send it as one text")
			}
		}
	}
	return nil
}

func (w *xmlWalk) text(text string, before, after int) error {
	if err := checkXMLText(text); err != nil && !w.lenient {
		return err
	}
	f := w.top()
	if f == nil {
		outside := text
		if before == 0 {
			outside = strings.TrimPrefix(outside, "\ufeff") // a byte-order mark
		}
		if !w.lenient && strings.TrimSpace(outside) != "" {
			return w.invalid("text outside the root element")
		}
		if w.guardOn(false) && len(findCards(text)) > 0 {
			return readingHit("xml")
		}
		return nil
	}
	if o := w.open; o != nil {
		// Text and CDATA sections in a row are one span.
		o.text.WriteString(text)
		o.end = after
		return nil
	}
	if !w.guardOn(f.ignored) {
		w.addAll("\x00") // an exempt value joins nothing
		return nil
	}
	w.addAll(text)
	if f.pieces > 0 {
		f.breaks = append(f.breaks, len(f.joined))
	}
	f.pieces++
	f.joined = append(f.joined, text...)
	runs := findCards(text)
	if len(runs) == 0 {
		return nil
	}
	if w.lenient {
		return readingHit("xml")
	}
	w.c.addGuard(showXMLPath(f.path), text, runs, KindXML, editXMLRuns, before, after)
	return nil
}

func (w *xmlWalk) comment(text string, before int) error {
	if w.open != nil && !w.lenient {
		return newError(CodeFieldType, showXMLPath(w.open.sel.path), "a configured element holds a comment; it must hold text only")
	}
	f := w.top()
	ignored := f != nil && f.ignored
	if f != nil {
		// A parser that drops comments joins the text around them.
		f.pieces++
	}
	if !w.guardOn(ignored) {
		return nil
	}
	runs := findCards(text)
	if len(runs) == 0 {
		return nil
	}
	if w.lenient {
		return readingHit("xml")
	}
	path := "/"
	if f != nil {
		path = showXMLPath(f.path)
	}
	// A comment's text is its raw bytes after "<!--": its digits are
	// replaced as they stand.
	for _, rn := range runs {
		w.c.addGuard(path, "", []cardRun{rn}, KindText, editRaw, before+4+rn.start, before+4+rn.end)
	}
	return nil
}

func (w *xmlWalk) directive(t xml.Directive) error {
	if !w.lenient {
		return w.invalid("a DTD or other <!...> declaration; tok reads no DTDs")
	}
	// Expat (Python) and libxml2 (PHP) expand entities a DTD declares:
	// text tok would not see.
	if bytes.Contains(t, []byte("ENTITY")) {
		return newError(CodeInvalidXML, "", "a body read as XML declares entities; tok does not expand them")
	}
	if w.guardOn(false) && len(findCards(string(t))) > 0 {
		return readingHit("xml")
	}
	return nil
}

func (w *xmlWalk) procInst(t xml.ProcInst, before int) error {
	if w.lenient {
		if w.guardOn(false) && len(findCards(string(t.Inst))) > 0 {
			return readingHit("xml")
		}
		return nil
	}
	if t.Target != "xml" || before != 0 {
		return w.invalid("a processing instruction other than the XML declaration at the start")
	}
	return nil
}

func (w *xmlWalk) top() *xmlFrame {
	if len(w.stack) == 0 {
		return nil
	}
	return &w.stack[len(w.stack)-1]
}

// ignoredPath reports whether path (an element or "/@attr" path) is an
// XML ignore entry.
func (w *xmlWalk) ignoredPath(path string) bool {
	for _, p := range w.r.xmlIgnore {
		if p == path {
			return true
		}
	}
	return false
}
