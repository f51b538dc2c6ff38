package httpx

// Error codes of the refusals this package makes itself, listed with every
// other in the README's error-code table.
const (
	CodeBadBody          = "bad_body"           // 400: the request body could not be read
	CodeEmptyBody        = "empty_body"         // 400: a body was required
	CodeForbidden        = "forbidden"          // 403: a client without the permission; admin endpoints from off the host
	CodeMethodNotAllowed = "method_not_allowed" // 405: with Allow
	CodeUnknownField     = "unknown_field"      // 400: a field the endpoint does not take
	CodeWrongType        = "wrong_type"         // 400: a field of the wrong JSON type
)
