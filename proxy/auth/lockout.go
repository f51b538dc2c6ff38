package auth

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

const (
	// unknownClientKey is where failures of unknown client names are
	// counted: one shared record, so an unknown name costs the same store
	// writes as a wrong secret without letting clients fill the store.
	// Parentheses never occur in client names (config), and unlike the
	// NUL byte it once began with, PostgreSQL's text type takes them.
	unknownClientKey = "(unknown)"
	// sourceKeySep joins a client name and a source address into the key
	// of their lockout record; client names never hold it (config).
	sourceKeySep = "@"
)

// NewSession is a session just opened: what the store keeps, and the
// cookie value (Secret) only the client gets.
type NewSession struct {
	vault.Session
	Secret string // the cookie value; only its hash is stored
}

// Login checks secret for client c (known false: no client has that name)
// from source, and opens a session. The outcome names what happened for
// the audit log and metrics.
//
// The lockout rule (PCI DSS 8.3.4): failures are counted per (client,
// source address) and per client. lockN failures of a client from one
// address lock it from that address for lockFor; clientN failures from
// all addresses together lock it from every address. So a stranger
// guessing from elsewhere cannot lock the client out where it logs in
// from (short of clientN failures), while its own address, like any
// other, gets at most lockN attempts per lock. A success clears both
// counts. Unknown names are never locked and cost the same two writes and
// the same bcrypt comparison (against the dummy hash).
func (a *Authenticator) Login(ctx context.Context, c Client, known bool, secret, source string) (NewSession, string, error) {
	now := a.now()
	sourceKey, clientKey := unknownClientKey, unknownClientKey
	if known {
		sourceKey, clientKey = c.Name+sourceKeySep+source, c.Name
	}
	// Each attempt is counted as a failure before the secret is checked,
	// in one atomic update per record: attempts already in flight when a
	// threshold is reached (on this replica or another sharing the store)
	// were counted too, so no more than the threshold are ever checked
	// per lock. A right secret clears the counts below. The per-source
	// record goes first: an attempt it refuses is not counted against
	// the client everywhere.
	for _, lk := range []struct {
		key string
		n   int
		msg string
	}{
		{sourceKey, a.lockN, "too many failed logins from your address; this client is locked here, retry later"},
		{clientKey, a.clientN, "too many failed logins; this client is locked, retry later"},
	} {
		locked := false
		_, err := a.store.UpdateLockout(ctx, lk.key, func(l vault.Lockout) vault.Lockout {
			locked = known && now.Before(l.LockedUntil)
			if locked {
				return l
			}
			return a.fail(now, known, lk.n)(l)
		})
		if err != nil {
			return NewSession{}, "error", err
		}
		if locked {
			return NewSession{}, "locked", httpx.Errorf(http.StatusTooManyRequests, CodeLocked, "%s", lk.msg)
		}
	}
	hash := a.dummy
	if known {
		hash = []byte(c.SecretHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(secret)) != nil || !known {
		return NewSession{}, "invalid_credentials", httpx.Errorf(http.StatusUnauthorized, CodeInvalidCredentials, "unknown client or wrong secret")
	}
	for _, key := range []string{sourceKey, clientKey} {
		if _, err := a.store.UpdateLockout(ctx, key, func(vault.Lockout) vault.Lockout { return vault.Lockout{} }); err != nil {
			return NewSession{}, "error", err
		}
	}
	ns := NewSession{Secret: randomString(32)}
	ns.Session = vault.Session{Key: SessionKey(ns.Secret), ID: newID(), Client: c.Name, Created: now.UTC(), LastSeen: now.UTC()}
	if err := a.store.PutSession(ctx, ns.Session); err != nil {
		return NewSession{}, "error", err
	}
	return ns, "ok", nil
}

// fail returns the lockout update for one failed login at now, locking
// at threshold failures.
func (a *Authenticator) fail(now time.Time, known bool, threshold int) func(vault.Lockout) vault.Lockout {
	return func(l vault.Lockout) vault.Lockout {
		if !l.LockedUntil.IsZero() && !now.Before(l.LockedUntil) {
			l = vault.Lockout{} // the lock has run out: start counting again
		}
		l.Failures++
		if known && l.Failures >= threshold {
			return vault.Lockout{LockedUntil: now.Add(a.lockFor).UTC()}
		}
		if !known {
			l.Failures = min(l.Failures, 1) // only the write matters, not the count
		}
		return l
	}
}
