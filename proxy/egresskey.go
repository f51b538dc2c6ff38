package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/tokproxy/tok/proxy/internal/httpx"
)

// Where an egress route's key may arrive besides a header of its own
// (EgressRoute.EgressKeyHeader): in the Authorization the app's SDK
// already sends, so that the app configures its SDK's API key as the
// egress key and never holds the provider's secret. tok checks the key,
// removes the app's Authorization and sets the route's own (Headers).
const (
	// EgressKeyBearer takes the key from "Authorization: Bearer KEY", as
	// stripe-go sends its API key.
	EgressKeyBearer = "authorization-bearer"
	// EgressKeyBasic takes the key from the user name of "Authorization:
	// Basic" (the password is not read): SDKs that log in with a user
	// name and password (Adyen's, Braintree's) send that.
	EgressKeyBasic = "authorization-basic"
)

// keyHeaderName is the header rt's key arrives in.
func (rt *egressRoute) keyHeaderName() string {
	switch rt.EgressKeyHeader {
	case "":
		return EgressKeyHeader
	case EgressKeyBearer, EgressKeyBasic:
		return "Authorization"
	}
	return rt.EgressKeyHeader
}

// keyInAuthorization reports whether rt's key arrives in Authorization,
// where an app's SDK puts it on every request: a CONNECT tunnel to rt's
// host need not carry it (forward.go).
func (rt *egressRoute) keyInAuthorization() bool {
	return strings.EqualFold(rt.keyHeaderName(), "Authorization")
}

// presentedKey returns the egress key r presents for rt, or "".
func (rt *egressRoute) presentedKey(r *http.Request) string {
	h := r.Header.Get(rt.keyHeaderName())
	switch rt.EgressKeyHeader {
	case EgressKeyBearer:
		return httpx.BearerToken(h)
	case EgressKeyBasic:
		user, _, _ := httpx.BasicCredentials(h)
		return user
	}
	if t := tunnelFrom(r.Context()); h == "" && t != nil && !rt.keyInAuthorization() {
		return t.key // presented on CONNECT (forward.go)
	}
	return h
}

// checkKey refuses r unless it presents rt's egress key (if rt has one),
// compared in constant time.
func (rt *egressRoute) checkKey(r *http.Request) error {
	if rt.EgressKey == "" {
		return nil
	}
	if keyEqual(rt.presentedKey(r), rt.EgressKey) {
		return nil
	}
	where := "in " + rt.keyHeaderName()
	switch rt.EgressKeyHeader {
	case EgressKeyBearer:
		where = "as the Authorization bearer token (the API key the SDK is configured with)"
	case EgressKeyBasic:
		where = "as the user name of Basic Authorization"
	}
	return httpx.Errorf(http.StatusUnauthorized, CodeInvalidEgressKey, "send the route's egress key %s", where)
}

// keyEqual compares a presented egress key with the route's in constant
// time, length included: the SHA-256 digests are compared, so a wrong
// key's length does not show in the time either.
func keyEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
