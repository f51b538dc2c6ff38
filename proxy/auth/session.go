package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

const (
	// CookieName is the session cookie's name.
	CookieName = "session"
	// touchInterval: a session's LastSeen is rewritten at most this often,
	// so a lookup is not always a durable write.
	touchInterval = time.Minute
)

// Session returns who r is: in certificate mode the client its verified
// certificate names; otherwise the live session named by its cookie (whose
// client must match the certificate in both mode).
func (a *Authenticator) Session(r *http.Request) (vault.Session, Client, error) {
	if a.mode == ModeCertificate {
		name := CertClient(r)
		c, ok := a.clients[name]
		if name == "" || !ok {
			return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeUnauthenticated, "present a client certificate whose CN names a configured client")
		}
		serial := r.TLS.VerifiedChains[0][0].SerialNumber.Text(16)
		return vault.Session{ID: "cert:" + serial, Client: name}, c, nil
	}
	sess, c, err := a.cookieSession(r)
	if err == nil && a.mode == ModeBoth && CertClient(r) != c.Name {
		return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeCertificateMismatch, "the session belongs to another client than your certificate")
	}
	return sess, c, err
}

// cookieSession returns the live session named by r's cookie, refreshing
// its idle timer. Expired sessions are deleted.
func (a *Authenticator) cookieSession(r *http.Request) (vault.Session, Client, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeUnauthenticated, "log in first: POST /login, then send the session cookie")
	}
	key := SessionKey(ck.Value)
	ctx := r.Context()
	sess, err := a.store.GetSession(ctx, key)
	if errors.Is(err, vault.ErrNotFound) {
		return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeUnauthenticated, "no such session; log in again")
	}
	if err != nil {
		return vault.Session{}, Client{}, err
	}
	now := a.now()
	client, ok := a.clients[sess.Client]
	if !ok || a.expired(sess, now) {
		if err := a.store.DeleteSession(ctx, key); err != nil {
			return vault.Session{}, Client{}, err
		}
		return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeSessionExpired, "session expired; log in again")
	}
	if now.Sub(sess.LastSeen) >= touchInterval {
		sess.LastSeen = now.UTC()
		// A touch, not a put: a logout that won the race stays a logout.
		err := a.store.TouchSession(ctx, key, sess.LastSeen)
		if errors.Is(err, vault.ErrNotFound) {
			return vault.Session{}, Client{}, httpx.Errorf(http.StatusUnauthorized, CodeUnauthenticated, "no such session; log in again")
		}
		if err != nil {
			return vault.Session{}, Client{}, err
		}
	}
	return sess, client, nil
}

// expired is the session expiry rule: idle for the idle timeout, or older
// than the absolute limit.
func (a *Authenticator) expired(s vault.Session, now time.Time) bool {
	return now.Sub(s.LastSeen) >= a.idle || now.Sub(s.Created) >= a.max
}

// Logout ends the session under key; no error if there is none.
func (a *Authenticator) Logout(ctx context.Context, key []byte) error {
	return a.store.DeleteSession(ctx, key)
}

// PurgeExpired removes every session expired now under the rule
// cookieSession applies ([Authenticator.expired]), and returns how many
// it removed.
func (a *Authenticator) PurgeExpired(ctx context.Context) (int, error) {
	now := a.now()
	return a.store.PurgeSessions(ctx, now.Add(-a.idle), now.Add(-a.max))
}

// SessionKey is what the store keeps a session under: the SHA-256 of its
// cookie value, so a copy of the store holds no live session secret.
func SessionKey(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newID returns a random UUID (version 4) for a session's public id.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
