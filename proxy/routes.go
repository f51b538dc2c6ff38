package proxy

import (
	"fmt"
	"net/http"
	"path"
	"strings"
)

// pathMatch is a route's method and path as configured: an exact path, or
// a prefix ending in "/*" ("/api/*" matches "/api" and everything below).
// Matching is on the decoded, cleaned path without ";params",
// case-insensitively, so "/Checkout/", "/%63heckout" and "/checkout;x" all
// match "/checkout": when in doubt, tok treats the request as the route's.
type pathMatch struct {
	method string // "" matches any method
	path   string // cleaned and lower-cased, without the "/*"
	prefix bool
}

func newPathMatch(method, p string) (pathMatch, error) {
	if !strings.HasPrefix(p, "/") {
		return pathMatch{}, fmt.Errorf("path %q must start with /", p)
	}
	base, prefix := strings.CutSuffix(p, "/*")
	return pathMatch{method: method, path: strings.ToLower(cleanPath(base)), prefix: prefix}, nil
}

// matches reports whether a request with method and matchPath p is on m.
func (m pathMatch) matches(method, p string) bool {
	if m.method != "" && !strings.EqualFold(m.method, method) {
		return false
	}
	return p == m.path || m.prefix && (m.path == "/" || strings.HasPrefix(p, m.path+"/"))
}

// matchPath is r's path as routes compare it.
func matchPath(r *http.Request) string { return strings.ToLower(cleanPath(r.URL.Path)) }

// cleanPath is how an app's router is likely to read p: decoded, dot
// segments and repeated slashes removed, no trailing slash, no ";params"
// (Java servlet containers drop them), backslashes as slashes.
func cleanPath(p string) string {
	if strings.Contains(p, ";") {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			segs[i], _, _ = strings.Cut(s, ";")
		}
		p = strings.Join(segs, "/")
	}
	p = strings.ReplaceAll(p, `\`, "/")
	return path.Clean("/" + p)
}
