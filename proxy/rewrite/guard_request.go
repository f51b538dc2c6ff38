package rewrite

import "strings"

// GuardRequest applies the guard to the parts of a request outside its
// body and query string: the decoded path (segments and
// ";params"), the host, and every header value — a cookie, the Referer's
// path and query, a card in X-Card-Number — each read as written and, where
// it holds a percent escape or a '+' between digits, decoded as a form or
// cookie parser decodes it. header maps names to values (an http.Header);
// names in ignore (lower-case) are not read.
//
// A hit is refused with [CodeCardNumberDetected] in both the reject and
// tokenize modes, naming where ("path", "host", "header Cookie"): tok does
// not rewrite what routes and identifies a request. GuardOff reads nothing.
func (r *Rewriter) GuardRequest(path, host string, header map[string][]string, ignore map[string]bool) error {
	if r.guard == GuardOff {
		return nil
	}
	if metaHolds(path) {
		return newError(CodeCardNumberDetected, "path", "card-like number in the request path")
	}
	if metaHolds(host) {
		return newError(CodeCardNumberDetected, "host", "card-like number in the host")
	}
	for name, vals := range header {
		if ignore[strings.ToLower(name)] {
			continue
		}
		if metaHolds(name) {
			// "X-4111111111111111: 1": every framework hands the app the
			// names too.
			return newError(CodeCardNumberDetected, "header *", "card-like number in a header name")
		}
		for _, v := range vals {
			if metaHolds(v) {
				return newError(CodeCardNumberDetected, "header "+safeText(name, 64), "card-like number in a header")
			}
		}
	}
	return nil
}

// metaHolds reports whether s, or s decoded as a URL, form or cookie
// value, holds a card-like number.
func metaHolds(s string) bool {
	if !mayHoldCard([]byte(s)) {
		return false
	}
	if len(findCards(s)) > 0 {
		return true
	}
	if strings.Contains(s, "%") || digitPlusDigit([]byte(s)) {
		return len(findCards(formDecodeReading(s))) > 0
	}
	return false
}
