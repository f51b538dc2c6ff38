package rewrite

import (
	"bytes"
	"mime"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Readings: the guard reads a body the ways apps read it (issue 14).
//
// An app does not always read a body as its Content-Type says: Flask's
// get_json(force=True), PHP's json_decode(file_get_contents('php://input')),
// Go's json.Unmarshal(body) and Ruby's JSON.parse(request.body.read) read any
// body as JSON, PHP apps parse_str the body of a PUT, others read it as
// text. So with [Config.ReadAll] set, Rewrite reads every body once as its
// declared type (the primary reading, where fields are tokenized and guard
// hits tokenized or refused) and then, after that reading's replacements,
// under every other plausible reading. A card found only by another reading
// is refused in every guard mode: there is no one span to tokenize that
// every reader would see replaced.
//
//	declared type   primary reading   other readings
//	JSON            strict JSON       form (escapes, '+' between digits, fractions before an exponent)
//	form            strict form       lenient JSON
//	none            lenient form      lenient JSON
//	multipart/*     raw text          parts (decoded), lenient JSON, form
//	anything else   raw text          lenient JSON, form, Latin-1/Windows-125x, UTF-16/32
//
// Raw text is the body's bytes searched for digit runs as a person reads
// them; it is also what an app that reads a binary upload byte by byte
// sees. The lenient JSON reading skips /* */ and // comments (Ruby's
// parser does) and decodes every string's escapes and every number's
// exponent, wherever they stand: it finds "\u0034\u0031…" and
// 4.111111111111111E+15 in a body of any type.

// readingHit is the refusal for a card found by a secondary reading.
func readingHit(reading string) *Error {
	return newError(CodeCardNumberDetected, "", "card-like number in the body read as %s", reading)
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
		if err := r.collectForm(&c, body, false); err != nil {
			return nil, err
		}
	} else {
		s := string(body)
		for _, rn := range findCards(s) {
			c.addGuard("", "", []cardRun{rn}, KindText, editRaw, rn.start, rn.end)
		}
	}
	return c.apply(body, r.guard, replace)
}

// otherReadings refuses b if a card shows under a reading other than the
// primary one for its declared type.
func (r *Rewriter) otherReadings(b []byte, media Media, contentType string) error {
	switch {
	case media == MediaJSON:
		if err := fractionReading(b); err != nil {
			return err
		}
		return formReading(b)
	case media == MediaXML:
		return textReadings(b)
	case media == MediaForm || strings.TrimSpace(contentType) == "":
		if err := r.xmlReading(b); err != nil {
			return err
		}
		return jsonReading(b)
	}
	mt, params, _ := mime.ParseMediaType(contentType)
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if err := textReadings(b); err != nil {
			return err
		}
		return r.multipartReading(b, params["boundary"])
	}
	if !readableCharset(params["charset"]) {
		return newError(CodeUnsupportedMediaType, "", "text in a charset tok cannot read")
	}
	if err := textReadings(b); err != nil {
		return err
	}
	if err := r.xmlReading(b); err != nil {
		return err
	}
	if latin, ok := latinText(b, params["charset"]); ok && len(findCards(latin)) > 0 {
		return readingHit("single-byte text")
	}
	if wide, ok := wideText(b, params["charset"]); ok {
		if runs := findCards(wide); len(runs) > 0 {
			return readingHit("utf-16/32 text")
		}
		if err := r.xmlReading([]byte(wide)); err != nil {
			return err
		}
		return jsonReading([]byte(wide))
	}
	return nil
}

// readableCharset reports whether the guard reads text in charset cs as
// the app decodes it: UTF-8, and the charsets whose only digits are the
// ASCII ones at the ASCII bytes (ISO 8859, Windows 125x), and UTF-16/32,
// which wideText decodes. Shift_JIS, EUC, GBK and Big5 hold fullwidth
// digits that Python's int() reads; UTF-7 spells "4" as "+ADQ-"; EBCDIC
// moves the digits: such text is refused rather than misread.
func readableCharset(cs string) bool {
	cs = strings.ToLower(strings.TrimSpace(cs))
	switch {
	case cs == "", cs == "utf-8", cs == "utf8", cs == "us-ascii", cs == "ascii", cs == "latin1",
		strings.HasPrefix(cs, "iso-8859-"), strings.HasPrefix(cs, "windows-125"), strings.HasPrefix(cs, "cp125"),
		strings.HasPrefix(cs, "utf-16"), strings.HasPrefix(cs, "utf-32"):
		return true
	}
	return false
}

// textReadings are the lenient JSON and form readings of a text body
// whose raw reading is done.
func textReadings(b []byte) error {
	if err := jsonReading(b); err != nil {
		return err
	}
	return formReading(b)
}

// jsonReading scans b as a lenient JSON reader would tokenize it,
// whatever its structure: comments are skipped, every string holding an
// escape is decoded and searched, and every number written with a point or
// an exponent is read as a number (plain digit runs are the raw reading's).
func jsonReading(b []byte) error {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c == '/' && i+1 < len(b) && b[i+1] == '*':
			end := strings.Index(string(b[i+2:]), "*/")
			if end < 0 {
				return nil
			}
			i += 2 + end + 2
		case c == '/' && i+1 < len(b) && b[i+1] == '/':
			for i < len(b) && b[i] != '\n' {
				i++
			}
		case c == '"':
			end, esc := lenientStringEnd(b, i)
			if esc {
				if len(findCards(lenientDecode(b[i+1:end]))) > 0 {
					return readingHit("json")
				}
			}
			i = end + 1
		case isASCIILetter(c) || c == '_':
			for i < len(b) && (isASCIIAlnum(b[i]) || b[i] == '_') {
				i++
			}
		case c == '-' || c == '+' || c == '.' || isASCIIDigit(c):
			j := i
			for j < len(b) && (isASCIIDigit(b[j]) || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
				j++
			}
			if bytes.ContainsAny(b[i:j], ".eE") {
				if numericStringCard(strings.TrimLeft(string(b[i:j]), "+-")) != "" {
					return readingHit("json")
				}
			}
			i = max(j, i+1)
		default:
			i++
		}
	}
	return nil
}

// lenientStringEnd returns the offset of the quote closing the string that
// opens at b[i] (len(b) if none), and whether it holds a backslash.
func lenientStringEnd(b []byte, i int) (int, bool) {
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j, esc
		}
	}
	return len(b), esc
}

// lenientDecode decodes JSON string escapes, keeping a bad one as written.
func lenientDecode(raw []byte) string {
	var sb strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			sb.WriteByte(c)
			continue
		}
		switch raw[i+1] {
		case 'u':
			r, ok := hex4(raw, i+2)
			if !ok {
				sb.WriteByte(c)
				continue
			}
			i += 5
			if utf16.IsSurrogate(r) && i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
				if r2, ok := hex4(raw, i+3); ok {
					r = utf16.DecodeRune(r, r2)
					i += 6
				}
			}
			sb.WriteRune(r)
		case 'n', 't', 'r', 'b', 'f':
			sb.WriteByte(' ') // ends a number as the control character would
			i++
		default:
			sb.WriteByte(raw[i+1])
			i++
		}
	}
	return sb.String()
}

// fractionReading refuses a JSON number whose fraction digits, written
// before an exponent, are a card ("0.378282246310005e16"): the JSON reading
// reads the number's value, but parse_str (PHP, on a body read as a form)
// turns the point into "_" and hands the app the digits as a run of their
// own. Fractions without an exponent are left alone, as the JSON reading
// leaves them ("0.4111111111111111"): high-precision values are common.
func fractionReading(b []byte) error {
	// Found from each point, which JSON has few of outside strings; in a
	// string the digits are searched as text anyway.
	for i := bytes.IndexByte(b, '.'); i >= 0; {
		k := i + 1
		for k < len(b) && isASCIIDigit(b[k]) {
			k++
		}
		if i > 0 && isASCIIDigit(b[i-1]) && k-i-1 >= minCardDigits && k < len(b) && (b[k] == 'e' || b[k] == 'E') &&
			IsCardNumber(string(b[i+1:k])) {
			return readingHit("a form (a number's fraction)")
		}
		next := bytes.IndexByte(b[k:], '.')
		if next < 0 {
			break
		}
		i = k + next
	}
	return nil
}

// formReading reads b as PHP's parse_str or any form parser would, for
// pairs the decoding changes: a percent escape, or a '+' between digits
// ("4111+1111+1111+1111"). Other pairs read as their raw text does, which
// the primary reading has seen. A '+' that does not join two digits is
// kept, so "+49 151 23456787" stays a phone number.
func formReading(b []byte) error {
	if !bytes.ContainsRune(b, '%') && !digitPlusDigit(b) {
		return nil // nothing decodes differently from the raw text
	}
	for start := 0; start < len(b); {
		end := start
		for end < len(b) && b[end] != '&' && b[end] != ';' {
			end++
		}
		for _, part := range strings.SplitN(string(b[start:end]), "=", 2) {
			if !strings.Contains(part, "%") && !digitPlusDigit([]byte(part)) {
				continue
			}
			if len(findCards(formDecodeReading(part))) > 0 {
				return readingHit("a form")
			}
		}
		start = end + 1
	}
	return nil
}

func digitPlusDigit(s []byte) bool {
	for i := 0; ; i++ {
		j := bytes.IndexByte(s[i:], '+')
		if j < 0 {
			return false
		}
		i += j
		if i > 0 && i+1 < len(s) && isASCIIDigit(s[i-1]) && isASCIIDigit(s[i+1]) {
			return true
		}
	}
}

// formDecodeReading decodes %XX (a bad escape is kept) and a '+' between
// digits.
func formDecodeReading(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '%':
			if h, ok := hex2([]byte(s), i+1); ok {
				sb.WriteByte(h)
				i += 2
				continue
			}
			sb.WriteByte(c)
		case c == '+' && i > 0 && i+1 < len(s) && isASCIIDigit(s[i-1]) && isASCIIDigit(s[i+1]):
			sb.WriteByte(' ')
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// latinText returns b decoded from a single-byte charset (ISO 8859,
// Windows 125x) when it declares one and is not valid UTF-8 already: there
// 0xA0 is a no-break space, 0xAD a soft hyphen and, in Windows-1252, 0x96
// and 0x97 dashes, which join digit groups for the app that decodes it.
// Every ISO 8859 part and Windows code page keeps those four where Latin-1
// and Windows-1252 have them, or has no digit-joining character there.
func latinText(b []byte, charset string) (string, bool) {
	cs := strings.ToLower(strings.TrimSpace(charset))
	if cs == "" || cs == "utf-8" || cs == "utf8" || cs == "us-ascii" || cs == "ascii" || strings.HasPrefix(cs, "utf-") || utf8.Valid(b) {
		return "", false
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		switch {
		case c == 0x96:
			sb.WriteRune('\u2013')
		case c == 0x97:
			sb.WriteRune('\u2014')
		default:
			sb.WriteRune(rune(c))
		}
	}
	return sb.String(), true
}

// wideText returns b as UTF-8 if it is UTF-16 or UTF-32 text, detected as
// Python's json.loads detects it on bytes (a byte order mark, or the
// pattern of zero bytes in the first four), or declared by charset.
func wideText(b []byte, charset string) (string, bool) {
	cs := strings.ToLower(charset)
	switch {
	case len(b) >= 4 && (b[0] == 0 && b[1] == 0 && b[2] == 0xFE && b[3] == 0xFF || b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] != 0):
		return decodeWide(b, 4, true), true
	case len(b) >= 4 && (b[0] == 0xFF && b[1] == 0xFE && b[2] == 0 && b[3] == 0 || b[0] != 0 && b[1] == 0 && b[2] == 0 && b[3] == 0):
		return decodeWide(b, 4, false), true
	case len(b) >= 2 && (b[0] == 0xFE && b[1] == 0xFF || b[0] == 0 && b[1] != 0) || cs == "utf-16be":
		return decodeWide(b, 2, true), true
	case len(b) >= 2 && (b[0] == 0xFF && b[1] == 0xFE || b[0] != 0 && b[1] == 0) || strings.HasPrefix(cs, "utf-16"):
		return decodeWide(b, 2, false), true
	}
	return "", false
}

// decodeWide decodes UTF-16 (size 2) or UTF-32 (size 4) leniently.
func decodeWide(b []byte, size int, bigEndian bool) string {
	var units []uint16
	var sb strings.Builder
	for i := 0; i+size <= len(b); i += size {
		var v uint32
		for k := range size {
			byteAt := b[i+k]
			if bigEndian {
				v = v<<8 | uint32(byteAt)
			} else {
				v |= uint32(byteAt) << (8 * k)
			}
		}
		if size == 2 {
			units = append(units, uint16(v))
			continue
		}
		if r := rune(v); utf8.ValidRune(r) {
			sb.WriteRune(r)
		} else {
			sb.WriteRune(utf8.RuneError)
		}
	}
	if size == 2 {
		return string(utf16.Decode(units))
	}
	return sb.String()
}
