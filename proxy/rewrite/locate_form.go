package rewrite

import "strings"

// locateForm walks the pairs of a form body (strict) or query string.
func (r *Rewriter) locateForm(c *collector, pairs []formPair, strict bool) error {
	fields := r.form
	if !strict {
		fields = nil // configured fields are body fields
	}
	for _, p := range pairs {
		// PHP drops leading spaces of a key (" card[number]" is
		// card[number] to it): match as the most lenient parser reads.
		parts, ok := splitFormKey(strings.TrimLeft(p.key, " "))
		if !ok {
			if len(fields) > 0 {
				return newError(CodeInvalidForm, safeFormPath(p.key), "malformed brackets in a key")
			}
			parts = []string{p.key}
		}
		path := safeFormPath(p.key)
		// PHP reads the key its own way ("card.cvc" is $_POST['card_cvc']):
		// a field matches if either reading matches it, an ignore entry
		// exempts the key only if both readings match it.
		// The readings differ only where the key holds a dot or a space
		// (an unclosed bracket is refused above when fields are set).
		var php []string // nil: PHP reads the key as parts
		if strings.ContainsAny(p.key, ". ") && (len(fields) > 0 || len(r.ignore) > 0) {
			php = phpFormKey(strings.TrimLeft(p.key, " "))
		}
		fs, ok := matchForm(fields, parts)
		if !ok && php != nil {
			fs, ok = matchForm(fields, php)
		}
		if ok {
			if p.val != "" {
				c.addField(fs, path, p.val, KindForm, editForm, p.valStart, p.valEnd)
			}
			continue
		}
		if r.guard == GuardOff || r.formIgnored(parts) && (php == nil || r.formIgnored(php)) {
			continue
		}
		c.addText(path, p.key, KindForm, editFormRuns, p.keyStart, p.keyEnd)
		c.addText(path, p.val, KindForm, editFormRuns, p.valStart, p.valEnd)
	}
	return nil
}

// matchForm returns the first field whose selector is a prefix of parts.
func matchForm(fields []fieldSel, parts []string) (fieldSel, bool) {
	for _, fs := range fields {
		if len(parts) < len(fs.sel) {
			continue
		}
		ok := true
		for i, g := range fs.sel {
			if !g.matchFormPart(parts[i], true) {
				ok = false
				break
			}
		}
		if ok {
			return fs, true
		}
	}
	return fieldSel{}, false
}

// formIgnored reports whether an ignore selector is a prefix of parts
// (exact keys; "#" matches a numeric or empty segment).
func (r *Rewriter) formIgnored(parts []string) bool {
	for _, sel := range r.ignore {
		if len(parts) < len(sel) {
			continue
		}
		ok := true
		for i, g := range sel {
			if !g.matchFormPart(parts[i], false) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// matchFormPart reports whether one segment of a form key matches g. For a
// configured field (field) it matches as the most lenient framework reads:
// "#" any segment (PHP's foreach and Rails iterate items[x] as readily as
// items[0]) and keys case-insensitively (Echo's binder falls back to
// strings.EqualFold). For an ignore entry it matches narrowly: an exemption
// must never widen.
func (g segment) matchFormPart(p string, field bool) bool {
	switch {
	case field && g.any:
		return true
	case field:
		return strings.EqualFold(g.key, p)
	case g.any:
		return arrayIndex(p) >= 0 || p == "" || isDigits(p)
	}
	return g.key == p
}
