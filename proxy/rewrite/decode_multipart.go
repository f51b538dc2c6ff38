package rewrite

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"strings"
)

// Multipart limits: a body is already bounded by the caller's size limit;
// these bound the work per body.
const (
	// MaxParts is the most parts a multipart body may have; more is
	// refused with [CodeInvalidMultipart].
	MaxParts = 1000
	// maxPartHeaderBytes bounds one part's header block.
	maxPartHeaderBytes = 16 << 10
)

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
	if boundary == "" {
		return newError(CodeInvalidMultipart, "", "multipart body without a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(b), boundary)
	for n := 0; ; n++ {
		if n >= MaxParts {
			return newError(CodeInvalidMultipart, "", "more than %d parts", MaxParts)
		}
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return newError(CodeInvalidMultipart, "", "malformed multipart body")
		}
		if err := r.partReading(p); err != nil {
			return err
		}
	}
}

// partReading guards one part's decoded name, filename and content (an
// uploaded file that starts with '<' is read as XML too).
func (r *Rewriter) partReading(p *multipart.Part) error {
	size := 0
	for k, vs := range p.Header {
		for _, v := range vs {
			size += len(k) + len(v)
		}
	}
	if size > maxPartHeaderBytes {
		return newError(CodeInvalidMultipart, "", "part header larger than %d bytes", maxPartHeaderBytes)
	}
	if cd := p.Header.Get("Content-Disposition"); cd != "" {
		if _, params, err := mime.ParseMediaType(cd); err == nil {
			for _, k := range []string{"name", "filename"} {
				if len(findCards(params[k])) > 0 {
					return readingHit("a multipart part's " + k)
				}
			}
		}
	}
	var content io.Reader = p
	switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
		// The raw reading of the whole body has seen these bytes; read
		// them again only for the escapes and number forms of JSON and
		// forms.
	case "quoted-printable":
		content = quotedprintable.NewReader(p)
	case "base64":
		content = base64.NewDecoder(base64.StdEncoding, &skipSpace{r: p})
	default:
		return newError(CodeUnsupportedMediaType, "", "multipart part with a content transfer encoding tok cannot read")
	}
	data, err := io.ReadAll(content)
	if err != nil {
		return newError(CodeInvalidMultipart, "", "multipart part content does not decode")
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

// skipSpace drops the line breaks and blanks that base64 in MIME carries.
type skipSpace struct{ r io.Reader }

func (s *skipSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
