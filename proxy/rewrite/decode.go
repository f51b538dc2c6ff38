package rewrite

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"io"
	"mime"
	"strings"
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
	// suffix (see xml.go).
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
