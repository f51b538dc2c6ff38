package rewrite

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// formPair is one key=value pair of a form body or query string: the raw
// spans and the decoded texts.
type formPair struct {
	keyStart, keyEnd int
	valStart, valEnd int
	key, val         string
}

// parseForm splits b into pairs. strict applies the body rules of
// [Rewriter.Rewrite]; otherwise (query strings) ';' also separates pairs
// and a bad escape is read literally, so the guard sees at least what any
// server would.
func parseForm(b []byte, strict bool) ([]formPair, *Error) {
	if strict {
		if i := skipWS(b, 0); i < len(b) && (b[i] == '{' || b[i] == '[') {
			return nil, newError(CodeInvalidForm, "", "form body looks like json")
		}
	}
	var pairs []formPair
	for start := 0; start <= len(b); {
		end := start
		for end < len(b) && b[end] != '&' && (strict || b[end] != ';') {
			c := b[end]
			if strict && (c < 0x20 || c == 0x7f || c >= 0x80 || c == ';') {
				return nil, newError(CodeInvalidForm, "", "byte 0x%02x at offset %d must be percent-encoded", c, end)
			}
			end++
		}
		if end > start {
			p := formPair{keyStart: start, keyEnd: end, valStart: end, valEnd: end}
			for i := start; i < end; i++ {
				if b[i] == '=' {
					p.keyEnd, p.valStart = i, i+1
					break
				}
			}
			var ok bool
			if p.key, ok = formUnescape(b[p.keyStart:p.keyEnd], strict); !ok {
				return nil, newError(CodeInvalidForm, "", "invalid percent escape or utf-8 in a key at offset %d", p.keyStart)
			}
			if p.val, ok = formUnescape(b[p.valStart:p.valEnd], strict); !ok {
				return nil, newError(CodeInvalidForm, safeFormPath(p.key), "invalid percent escape or utf-8 in a value")
			}
			pairs = append(pairs, p)
		}
		start = end + 1
	}
	return pairs, nil
}

// formUnescape decodes '+' and %XX. strict refuses a bad escape and
// invalid UTF-8; otherwise a bad escape stays as written.
func formUnescape(s []byte, strict bool) (string, bool) {
	if !containsByte(s, '%') && !containsByte(s, '+') {
		if strict && !utf8.Valid(s) {
			return "", false
		}
		return string(s), true
	}
	var sb strings.Builder
	sb.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			sb.WriteByte(' ')
		case '%':
			h, ok := hex2(s, i+1)
			if !ok {
				if strict {
					return "", false
				}
				sb.WriteByte(c)
				continue
			}
			sb.WriteByte(h)
			i += 2
		default:
			sb.WriteByte(c)
		}
	}
	out := sb.String()
	if strict && !utf8.ValidString(out) {
		return "", false
	}
	return out, true
}

func hex2(s []byte, i int) (byte, bool) {
	if len(s)-i < 2 {
		return 0, false
	}
	var v byte
	for _, c := range s[i : i+2] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= c - '0'
		case c >= 'a' && c <= 'f':
			v |= c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v |= c - 'A' + 10
		default:
			return 0, false
		}
	}
	return v, true
}

// formEscape encodes a replacement for a form body: everything but the
// unreserved characters is escaped, space as '+'.
func formEscape(s string) string { return url.QueryEscape(s) }

// safeFormPath renders a decoded form key for an error or a Value.Path.
func safeFormPath(key string) string { return safeText(key, MaxSelectorLen) }

// collectForm walks a form body (strict) or query string.
func (r *Rewriter) collectForm(c *collector, b []byte, strict bool) error {
	pairs, err := parseForm(b, strict)
	if err != nil {
		return err
	}
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
		if runs := findCards(p.key); len(runs) > 0 {
			c.addGuard(path, p.key, runs, KindForm, editFormRuns, p.keyStart, p.keyEnd)
		}
		if runs := findCards(p.val); len(runs) > 0 {
			c.addGuard(path, p.val, runs, KindForm, editFormRuns, p.valStart, p.valEnd)
		}
	}
	return nil
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
