package rewrite

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// cursor is a selector partly matched on the way down: sel is the index in
// Rewriter.json (or Rewriter.ignore), seg how many segments have matched.
type cursor struct {
	sel, seg int
}

type jsonWalk struct {
	r    *Rewriter
	c    *collector
	body []byte
	path []pathElem // rendered only when a value or an error needs it
}

// pathElem is one step of the current path: an object key's raw bytes
// (quotes included) or an array index.
type pathElem struct {
	key []byte
	idx int
}

// locateJSON walks every value of body, which decodeJSON has accepted.
func (r *Rewriter) locateJSON(c *collector, body []byte) error {
	w := &jsonWalk{r: r, c: c, body: body}
	var active, ignore []cursor
	for i := range r.json {
		active = append(active, cursor{i, 0})
	}
	for i := range r.ignore {
		ignore = append(ignore, cursor{i, 0})
	}
	return w.walk(gjson.ParseBytes(body), active, ignore, false)
}

// raw returns the body bytes of v after checking that gjson's offset really
// points at them: a wrong offset would splice the wrong bytes.
func (w *jsonWalk) raw(v gjson.Result) ([]byte, error) {
	if v.Index < 0 || v.Index+len(v.Raw) > len(w.body) || string(w.body[v.Index:v.Index+len(v.Raw)]) != v.Raw {
		return nil, newError(CodeInvalidJSON, w.pathString(), "value offsets disagree with the json reader")
	}
	return w.body[v.Index : v.Index+len(v.Raw)], nil
}

func (w *jsonWalk) pathString() string {
	parts := make([]string, len(w.path))
	for i, e := range w.path {
		if e.key != nil {
			parts[i] = safeSegment(decodeString(e.key))
		} else {
			parts[i] = strconv.Itoa(e.idx)
		}
	}
	return joinPath(parts)
}

// walk visits v, whose selectors matched so far are active (for fields)
// and ignore (for guard exemptions).
func (w *jsonWalk) walk(v gjson.Result, active, ignore []cursor, ignored bool) error {
	for _, cu := range active {
		if fs := w.r.json[cu.sel]; cu.seg == len(fs.sel) {
			return w.field(v, fs)
		}
	}
	for _, cu := range ignore {
		if cu.seg == len(w.r.ignore[cu.sel]) {
			ignored = true
			ignore = nil
			break
		}
	}
	guard := w.r.guard != GuardOff && !ignored
	switch {
	case v.IsObject():
		return w.object(v, active, ignore, ignored, guard)
	case v.IsArray():
		return w.array(v, active, ignore, ignored)
	case guard && (v.Type == gjson.String || v.Type == gjson.Number):
		raw, err := w.raw(v)
		if err != nil {
			return err
		}
		if v.Type == gjson.String {
			w.guardString(raw, v.Index)
		} else if mayBeCardNumber(raw) {
			w.c.addText(w.pathString(), string(raw), KindNumber, editJSONNumber, v.Index, v.Index+len(raw))
		}
	}
	return nil
}

// guardString records for the guard a JSON string (a value or a key) whose
// raw bytes start at off, unless it cannot hold a card number.
func (w *jsonWalk) guardString(raw []byte, off int) {
	if !mayHoldCard(raw) {
		return
	}
	w.c.addText(w.pathString(), decodeString(raw), KindString, editJSONRuns, off, off+len(raw))
}

func (w *jsonWalk) object(v gjson.Result, active, ignore []cursor, ignored, guard bool) error {
	for _, cu := range active {
		if w.r.json[cu.sel].sel[cu.seg].any {
			return newError(CodeFieldType, w.pathString(), "object where the selector expects an array")
		}
	}
	var seen []bool
	if len(active) > 0 {
		seen = make([]bool, len(active))
	}
	var err error
	v.ForEach(func(k, val gjson.Result) bool {
		var kraw []byte
		if kraw, err = w.raw(k); err != nil {
			return false
		}
		w.path = append(w.path, pathElem{key: kraw})
		defer func() { w.path = w.path[:len(w.path)-1] }()
		var key string
		if len(active) > 0 || len(ignore) > 0 {
			key = decodeString(kraw)
		}
		var next, nextIgnore []cursor
		for i, cu := range active {
			if !w.r.json[cu.sel].sel[cu.seg].matchKey(key, true) {
				continue
			}
			if seen[i] {
				err = newError(CodeDuplicateKey, w.pathString(), "key appears more than once on a configured path")
				return false
			}
			seen[i] = true
			next = append(next, cursor{cu.sel, cu.seg + 1})
		}
		for _, cu := range ignore {
			if w.r.ignore[cu.sel][cu.seg].matchKey(key, false) {
				nextIgnore = append(nextIgnore, cursor{cu.sel, cu.seg + 1})
			}
		}
		if guard {
			w.guardString(kraw, k.Index)
		}
		err = w.walk(val, next, nextIgnore, ignored)
		return err == nil
	})
	return err
}

func (w *jsonWalk) array(v gjson.Result, active, ignore []cursor, ignored bool) error {
	for _, cu := range active {
		if g := w.r.json[cu.sel].sel[cu.seg]; !g.any && g.index < 0 {
			return newError(CodeFieldType, w.pathString(), "array where the selector expects an object")
		}
	}
	var err error
	i := 0
	v.ForEach(func(_, val gjson.Result) bool {
		w.path = append(w.path, pathElem{idx: i})
		defer func() { w.path = w.path[:len(w.path)-1] }()
		var next, nextIgnore []cursor
		for _, cu := range active {
			if w.r.json[cu.sel].sel[cu.seg].matchIndex(i) {
				next = append(next, cursor{cu.sel, cu.seg + 1})
			}
		}
		for _, cu := range ignore {
			if w.r.ignore[cu.sel][cu.seg].matchIndex(i) {
				nextIgnore = append(nextIgnore, cursor{cu.sel, cu.seg + 1})
			}
		}
		i++
		err = w.walk(val, next, nextIgnore, ignored)
		return err == nil
	})
	return err
}

// field handles the value at a configured field.
func (w *jsonWalk) field(v gjson.Result, fs fieldSel) error {
	path := w.pathString()
	switch v.Type {
	case gjson.Null:
		return nil
	case gjson.String:
		raw, err := w.raw(v)
		if err != nil {
			return err
		}
		text := decodeString(raw)
		if text == "" {
			return nil
		}
		w.c.addField(fs, path, text, KindString, editJSONString, v.Index, v.Index+len(raw))
		return nil
	case gjson.Number:
		raw, err := w.raw(v)
		if err != nil {
			return err
		}
		if !isDigits(string(raw)) {
			return newError(CodeInvalidValue, path, "number at a configured field must be a plain integer (no sign, fraction or exponent)")
		}
		w.c.addField(fs, path, string(raw), KindNumber, editJSONNumber, v.Index, v.Index+len(raw))
		return nil
	}
	return newError(CodeFieldType, path, "configured field holds %s, want a string or a number", typeName(v))
}

func typeName(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	}
	return "an unexpected value"
}

// matchKey reports whether an object key matches segment g. fold selects
// encoding/json's case-insensitive comparison (configured fields) over an
// exact one (ignore entries: an exemption must never widen).
func (g segment) matchKey(key string, fold bool) bool {
	if g.any {
		return false
	}
	if fold {
		return strings.EqualFold(g.key, key)
	}
	return g.key == key
}

// matchIndex reports whether array element i matches segment g.
func (g segment) matchIndex(i int) bool {
	return g.any || g.index == i
}
