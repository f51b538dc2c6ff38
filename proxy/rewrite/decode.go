package rewrite

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"mime"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Media is the kind of body a content type announces.
type Media int

// Media kinds.
const (
	// MediaOther is anything Rewrite cannot inspect (multipart, text,
	// octet-stream, a missing type...).
	MediaOther Media = iota
	// MediaJSON is application/json, any type with a +json suffix, and
	// the synonyms frameworks also parse as JSON (jsonSynonyms).
	MediaJSON
	// MediaForm is application/x-www-form-urlencoded.
	MediaForm
	// MediaXML is application/xml, text/xml and any type with a +xml
	// suffix (see locate_xml.go).
	MediaXML
)

// jsonSynonyms are other media types that frameworks parse as JSON (Rails
// registers text/x-json and application/jsonrequest; others accept text/json
// and application/x-json).
var jsonSynonyms = map[string]bool{
	"text/json": true, "text/x-json": true, "application/x-json": true, "application/jsonrequest": true,
}

// ParseMediaType classifies a Content-Type header value. A charset other
// than utf-8 (or us-ascii, its subset) on a JSON, form or XML type, or a header
// that does not parse (duplicate parameters, for instance), is an
// [*Error] with [CodeUnsupportedMediaType]: tok would read the bytes
// differently from the app. An empty header is MediaOther.
func ParseMediaType(contentType string) (Media, error) {
	if strings.TrimSpace(contentType) == "" {
		return MediaOther, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return MediaOther, newError(CodeUnsupportedMediaType, "", "malformed content type")
	}
	var media Media
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json") && strings.Count(mt, "/") == 1,
		jsonSynonyms[mt]:
		media = MediaJSON
	case mt == "application/x-www-form-urlencoded":
		media = MediaForm
	case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml") && strings.Count(mt, "/") == 1:
		media = MediaXML
	default:
		return MediaOther, nil
	}
	if cs, ok := params["charset"]; ok {
		if cs = strings.ToLower(cs); cs != "utf-8" && cs != "utf8" && cs != "us-ascii" {
			return MediaOther, newError(CodeUnsupportedMediaType, "", "charset other than utf-8")
		}
	}
	return media, nil
}

// DecodeBody undoes a Content-Encoding: "" or "identity" (b is returned as
// is), "gzip" or "x-gzip", or "deflate" (zlib, as RFC 9110 defines it). The
// result is at most maxSize bytes: a body that decodes to more is an
// [*Error] with [CodeBodyTooLarge], found after reading at most maxSize+1
// decoded bytes, so a zip bomb costs no more memory than an honest body.
// Any other encoding, or a list of several, is [CodeUnsupportedEncoding];
// a corrupt stream is [CodeInvalidEncoding].
func DecodeBody(b []byte, contentEncoding string, maxSize int64) ([]byte, error) {
	var zr io.Reader
	var err error
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
		if int64(len(b)) > maxSize {
			return nil, newError(CodeBodyTooLarge, "", "body larger than %d bytes", maxSize)
		}
		return b, nil
	case "gzip", "x-gzip":
		zr, err = gzip.NewReader(bytes.NewReader(b))
	case "deflate":
		zr, err = zlib.NewReader(bytes.NewReader(b))
	default:
		return nil, newError(CodeUnsupportedEncoding, "", "content encoding other than identity, gzip or deflate")
	}
	if err != nil {
		return nil, newError(CodeInvalidEncoding, "", "body does not decode")
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxSize+1))
	if err != nil {
		return nil, newError(CodeInvalidEncoding, "", "body does not decode")
	}
	if int64(len(out)) > maxSize {
		return nil, newError(CodeBodyTooLarge, "", "decoded body larger than %d bytes", maxSize)
	}
	return out, nil
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
