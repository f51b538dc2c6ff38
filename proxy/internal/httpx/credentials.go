package httpx

import (
	"encoding/base64"
	"strings"
)

// BearerToken returns the token of an Authorization value of the Bearer
// scheme (any case), or "" if h is not one.
func BearerToken(h string) string {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(cred)
}

// BasicCredentials returns the user and password of an Authorization or
// Proxy-Authorization value of the Basic scheme (any case); ok is false if
// h is not one or its credentials are not valid base64.
func BasicCredentials(h string) (user, pass string, ok bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, pass, _ = strings.Cut(string(b), ":")
	return user, pass, true
}
