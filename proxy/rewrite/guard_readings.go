package rewrite

import (
	"bytes"
	"mime"
	"mime/multipart"
	"strings"
)

// Readings: the guard reads a body the ways apps read it.
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

// xmlReading reads a body of another type that an app would sniff as XML
// (it starts with '<' after a byte-order mark and white space), leniently
// (HTML's entities and unclosed tags are read as an HTML-tolerant parser
// reads them) and only for the guard: a card number in it refuses the
// body, and a part that does not parse ends the reading (the raw reading
// has seen its bytes).
func (r *Rewriter) xmlReading(body []byte) error {
	if !sniffXML(body) {
		return nil
	}
	w := &xmlWalk{r: r, c: &collector{}, body: body, lenient: true, seen: map[string]bool{}}
	return w.run()
}

// multipartReading reads b as multipart/form-data parts with boundary, as
// PHP, Rack, werkzeug, busboy and Go do, and refuses a card in what they
// decode beyond the raw bytes (the primary reading): a part's name and
// filename (RFC 2231 filename*=UTF-8”%34%31… included), and its content
// under a base64 or quoted-printable Content-Transfer-Encoding, read as
// text, JSON and form. Binary file parts (images, PDFs) are read as raw
// bytes like any other content: a card written in them as ASCII or UTF-16
// digits is found; one inside compressed data (a zip, a PDF stream) is not,
// as no framework decompresses an upload (see the README).
//
// A body that does not parse as multipart with its boundary is refused:
// the app's parser might read parts tok did not.
func (r *Rewriter) multipartReading(b []byte, boundary string) error {
	return eachPart(b, boundary, r.partReading)
}

// partReading guards one part's decoded name, filename and content (an
// uploaded file that starts with '<' is read as XML too).
func (r *Rewriter) partReading(p *multipart.Part) error {
	if cd := p.Header.Get("Content-Disposition"); cd != "" {
		if _, params, err := mime.ParseMediaType(cd); err == nil {
			for _, k := range []string{"name", "filename"} {
				if len(findCards(params[k])) > 0 {
					return readingHit("a multipart part's " + k)
				}
			}
		}
	}
	// A part in 7bit, 8bit or binary: the raw reading of the whole body
	// has seen these bytes; they are read again only for the escapes and
	// number forms of JSON and forms.
	data, err := partContent(p)
	if err != nil {
		return err
	}
	if len(findCards(string(data))) > 0 {
		return readingHit("a multipart part")
	}
	if err := textReadings(data); err != nil {
		return err
	}
	if err := r.xmlReading(data); err != nil {
		return err
	}
	_, params, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
	if !readableCharset(params["charset"]) {
		return newError(CodeUnsupportedMediaType, "", "multipart part in a charset tok cannot read")
	}
	if wide, ok := wideText(data, params["charset"]); ok && len(findCards(wide)) > 0 {
		return readingHit("a utf-16/32 multipart part")
	}
	return nil
}
