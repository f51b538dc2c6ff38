package rewrite

import "fmt"

// Stable error codes carried by [Error]. Clients see them in the JSON error
// body; they never change meaning once released.
const (
	CodeInvalidJSON          = "invalid_json"           // 400: not strict RFC 8259 JSON (BOM, trailing data, comments, NaN, bad UTF-8, lone surrogate...)
	CodeTooDeep              = "too_deep"               // 400: nesting deeper than the configured maximum
	CodeDuplicateKey         = "duplicate_key"          // 400: a key on a configured path appears twice (compared as encoding/json does)
	CodeFieldType            = "field_type"             // 422: a configured field, or a container on its path, has the wrong JSON type
	CodeInvalidValue         = "invalid_value"          // 422: a number at a configured field that is not a plain integer
	CodeInvalidForm          = "invalid_form"           // 400: not strictly application/x-www-form-urlencoded
	CodeInvalidXML           = "invalid_xml"            // 400: not strict XML (a DTD, an unknown entity, bad UTF-8, several roots...)
	CodeInvalidMultipart     = "invalid_multipart"      // 400: a multipart body that does not parse with its boundary, or has too many parts
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: a body tok cannot inspect on a route that needs inspecting
	CodeUnsupportedEncoding  = "unsupported_encoding"   // 415: a Content-Encoding other than identity, gzip or deflate
	CodeInvalidEncoding      = "invalid_encoding"       // 400: a gzip or deflate body that does not decode
	CodeBodyTooLarge         = "body_too_large"         // 413: the (decoded) body exceeds the limit
	CodeCardNumberDetected   = "card_number_detected"   // 422: the guard found a card-like number outside the configured fields
	CodeInvalidReplacement   = "invalid_replacement"    // 500: the replace callback returned something that cannot be spliced
)

// Error is the only error type the package returns for a body it refuses.
// Code is one of the Code constants, Status the HTTP status it maps to, Path
// the field (a JSON path such as "items.2.card.number" or a form key) when
// one is known, and Msg a short lower-case explanation. None of the fields
// ever contains a value from the body: key segments that could hold a card
// number are masked in Path (see [Value.Path]).
//
// Errors returned by the replace callback are not converted: Rewrite wraps
// them with %w so callers can test them with errors.Is.
type Error struct {
	Code   string
	Status int
	Path   string
	Msg    string
	// Offset is the byte offset, in the body or query string read, of the
	// value the error is about (a guard hit's), or -1 when none is known.
	Offset int
}

// Error implements error.
func (e *Error) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("rewrite: %s at %q: %s", e.Code, e.Path, e.Msg)
	}
	return fmt.Sprintf("rewrite: %s: %s", e.Code, e.Msg)
}

// HTTP statuses, spelled out so the package stays free of net/http.
const (
	statusBadRequest            = 400
	statusRequestEntityTooLarge = 413
	statusUnsupportedMediaType  = 415
	statusUnprocessableEntity   = 422
	statusInternalServerError   = 500
)

// statusOf maps every code to its HTTP status: the one place that does.
func statusOf(code string) int {
	switch code {
	case CodeInvalidJSON, CodeTooDeep, CodeDuplicateKey, CodeInvalidForm, CodeInvalidMultipart, CodeInvalidEncoding, CodeInvalidXML:
		return statusBadRequest
	case CodeFieldType, CodeInvalidValue, CodeCardNumberDetected:
		return statusUnprocessableEntity
	case CodeUnsupportedMediaType, CodeUnsupportedEncoding:
		return statusUnsupportedMediaType
	case CodeBodyTooLarge:
		return statusRequestEntityTooLarge
	default:
		return statusInternalServerError
	}
}

func newError(code, path, format string, args ...any) *Error {
	return &Error{Code: code, Status: statusOf(code), Path: path, Msg: fmt.Sprintf(format, args...), Offset: -1}
}
