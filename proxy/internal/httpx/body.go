package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// ReadBody reads the whole request body, at most limit bytes: a longer
// one (declared or sent) is refused with 413.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, Errorf(http.StatusRequestEntityTooLarge, rewrite.CodeBodyTooLarge, "request body is over %d bytes", limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, Errorf(http.StatusRequestEntityTooLarge, rewrite.CodeBodyTooLarge, "request body is over %d bytes", limit)
	case err != nil:
		return nil, NewError(http.StatusBadRequest, CodeBadBody, "could not read the request body", err)
	}
	return b, nil
}

// DecodeJSON reads r's body, at most limit bytes, as one JSON object into
// v, strictly: the content type must be JSON, unknown fields and trailing
// data are refused.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	b, err := ReadBody(w, r, limit)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return Errorf(http.StatusBadRequest, CodeEmptyBody, "request body is empty; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Errorf(http.StatusBadRequest, rewrite.CodeInvalidJSON, "request body must hold exactly one JSON object")
	}
	return nil
}

// requireJSON refuses a body that is not declared application/json (UTF-8).
func requireJSON(r *http.Request) error {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return Errorf(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedMediaType, "send Content-Type: application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return Errorf(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedMediaType, "only UTF-8 JSON is accepted")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return Errorf(http.StatusUnsupportedMediaType, rewrite.CodeUnsupportedEncoding, "Content-Encoding is not accepted here")
	}
	return nil
}

// jsonError turns a decoding error into a client message that names the
// field and the problem but never echoes the value.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return NewError(http.StatusBadRequest, CodeWrongType, "field "+quoteField(te.Field)+" must be a "+te.Type.Kind().String(), err)
	case errors.As(err, &se):
		return NewError(http.StatusBadRequest, rewrite.CodeInvalidJSON, "request body is not valid JSON", err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// The key is the client's own bytes and could itself be a card
		// number: it is neither echoed nor logged.
		return Errorf(http.StatusBadRequest, CodeUnknownField, "request body has a field this endpoint does not accept")
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return NewError(http.StatusBadRequest, rewrite.CodeInvalidJSON, "request body is truncated JSON", err)
	default:
		return NewError(http.StatusBadRequest, rewrite.CodeInvalidJSON, "request body is not valid JSON", err)
	}
}

func quoteField(f string) string {
	if f == "" {
		return "(body)"
	}
	return `"` + f + `"`
}
