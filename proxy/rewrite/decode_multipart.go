package rewrite

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
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

// eachPart reads b as multipart parts with boundary, as PHP, Rack,
// werkzeug, busboy and Go do, and calls fn with each. A body that does not
// parse with its boundary, has more than [MaxParts] parts or a part header
// larger than maxPartHeaderBytes is refused: the app's parser might read
// parts tok did not.
func eachPart(b []byte, boundary string, fn func(*multipart.Part) error) error {
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
		size := 0
		for k, vs := range p.Header {
			for _, v := range vs {
				size += len(k) + len(v)
			}
		}
		if size > maxPartHeaderBytes {
			return newError(CodeInvalidMultipart, "", "part header larger than %d bytes", maxPartHeaderBytes)
		}
		if err := fn(p); err != nil {
			return err
		}
	}
}

// partContent returns the content of p decoded from its
// Content-Transfer-Encoding: none (7bit, 8bit, binary), quoted-printable or
// base64. Any other is refused: tok cannot read what the app would.
func partContent(p *multipart.Part) ([]byte, error) {
	var content io.Reader = p
	switch cte := strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))); cte {
	case "", "7bit", "8bit", "binary":
	case "quoted-printable":
		content = quotedprintable.NewReader(p)
	case "base64":
		content = base64.NewDecoder(base64.StdEncoding, &skipSpace{r: p})
	default:
		return nil, newError(CodeUnsupportedMediaType, "", "multipart part with a content transfer encoding tok cannot read")
	}
	data, err := io.ReadAll(content)
	if err != nil {
		return nil, newError(CodeInvalidMultipart, "", "multipart part content does not decode")
	}
	return data, nil
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
