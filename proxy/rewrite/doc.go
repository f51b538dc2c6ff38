// Package rewrite finds the values at configured fields of a JSON, form or
// XML body, hands them to a callback in one batch, and splices the
// callback's replacements into exactly their byte spans, leaving every other
// byte as it was. The inbound proxy uses it to swap card numbers for tokens,
// the egress proxy to swap tokens back for card numbers.
//
// It also holds the guard: outside the configured fields it looks for
// card-like numbers and refuses the body or hands them to the callback too.
//
// The package is pure: no I/O besides decoding a body held in memory, no
// logging, no HTTP. Everything it returns about a refused body is an
// [*Error] that never contains a value from the body.
//
// Whatever a merchant app's JSON parser would read at a configured field is
// either handed to the callback or refused: the body is validated strictly
// (see [Rewriter.Rewrite]), walked as a whole rather than looked up by path
// (gjson's Get returns the first of duplicate keys, most parsers the last),
// keys are compared after unescaping and with encoding/json's case folding,
// and duplicate keys on a configured path are refused.
//
// # Reading order
//
// A body goes through four stages, each in its own files, in this order
// ([Rewriter.Rewrite] and rewritePrimary in rewrite.go call them):
//
//  1. Decode (decode*.go): the media type and charset (decode.go, which
//     also undoes a Content-Encoding), then the strict syntax of the
//     declared format: JSON (decode_json.go), form (decode_form.go), XML
//     (decode_xml.go), multipart parts (decode_multipart.go).
//  2. Locate (locate*.go): walk the decoded body, match the configured
//     selectors (their grammar is in select.go) and record, in document
//     order, each value at a field and each text outside the fields that
//     could hold a card number, with its byte span and a path safe to log
//     (locate.go holds the collector the walks fill; one walk per format
//     in locate_json.go, locate_form.go and locate_xml.go).
//  3. Guard (guard*.go): find the card numbers in the recorded text and
//     judge the body by the guard mode (guard.go); the scan itself is in
//     guard_scan.go and guard_number.go, the issuer table and [CardSet] in
//     guard_cards.go, and IBANs, which are not cards, in guard_iban.go.
//  4. Splice (splice.go): call the replace callback once, encode each
//     replacement for its format and splice them all in one pass.
//
// Then, for inbound bodies, the guard reads the spliced body again the
// other ways an app might read it (guard_readings.go). XML is the one
// format decoded, located and guarded in a single streaming walk
// (locate_xml.go): a card number split by markup shows only while the
// walk joins the text around it. The request line and headers are guarded
// apart from the body (guard_request.go). errors.go lists the error codes
// and maps them to HTTP statuses in one place.
package rewrite
