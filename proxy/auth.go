package proxy

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/vault"
)

const (
	sessionCookie = "session"
	// maxConcurrentLogins bounds bcrypt work: each comparison costs a core
	// for ~100-300 ms, so unbounded logins are a denial of service.
	maxConcurrentLogins = 4
	// touchInterval: a session's LastSeen is rewritten at most this often,
	// so a lookup is not always a durable write.
	touchInterval = time.Minute
	// unknownClientKey is where failures of unknown client names are
	// counted: one shared record, so an unknown name costs the same store
	// writes as a wrong secret without letting clients fill the store.
	// Parentheses never occur in client names (config), and unlike the
	// NUL byte it once began with, PostgreSQL's text type takes them.
	unknownClientKey = "(unknown)"
	// sourceKeySep joins a client name and a source address into the key
	// of their lockout record; client names never hold it (config).
	sourceKeySep = "@"
	maxNameLen   = 128
	maxSecretLen = 72 // bcrypt ignores bytes past 72
)

// authenticator checks client secrets and keeps sessions and lockouts in
// the store, so every replica on a shared store sees the same sessions.
type authenticator struct {
	store   SessionStore
	clients map[string]Client
	dummy   []byte // bcrypt hash compared when the client is unknown
	slots   chan struct{}
	now     func() time.Time
	idle    time.Duration
	max     time.Duration
	lockN   int // failures per (client, source address) that lock
	clientN int // failures per client, from all sources, that lock
	lockFor time.Duration
	mode    string // ClientAuthSession, ClientAuthCertificate or ClientAuthBoth
}

func newAuthenticator(o Options) (*authenticator, error) {
	a := &authenticator{
		store: o.Store, clients: map[string]Client{}, slots: make(chan struct{}, maxConcurrentLogins),
		now: o.Now, idle: o.SessionIdle, max: o.SessionMax, lockN: o.LockoutThreshold, clientN: o.LockoutClientThreshold,
		lockFor: o.LockoutDuration,
		mode:    o.TLS[ListenerAuth].ClientAuth,
	}
	if a.mode == "" {
		a.mode = ClientAuthSession
	}
	cost := bcrypt.DefaultCost + 2 // what `tok secret hash` uses
	for _, c := range o.Clients {
		hc, err := bcrypt.Cost([]byte(c.SecretHash))
		if err != nil {
			return nil, fmt.Errorf("client %q: secret_hash: %w", c.Name, err)
		}
		if _, dup := a.clients[c.Name]; dup {
			return nil, fmt.Errorf("client %q configured twice", c.Name)
		}
		a.clients[c.Name] = c
		cost = hc // unknown names must cost what a known one does (the highest)
		for _, k := range a.clients {
			cost = max(cost, mustCost(k.SecretHash))
		}
	}
	// The dummy's secret is random and thrown away: nothing matches it.
	// Comparing against a hash costs what the hash's cost field says, so
	// the dummy is made cheaply at the minimum cost and relabelled: startup
	// (and every reload) does not spend a quarter second on it.
	var junk [32]byte
	rand.Read(junk[:])
	dummy, err := bcrypt.GenerateFromPassword(junk[:], bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	a.dummy = append([]byte(fmt.Sprintf("$2a$%02d$", cost)), dummy[len("$2a$04$"):]...)
	if c, err := bcrypt.Cost(a.dummy); err != nil || c != cost {
		return nil, fmt.Errorf("dummy hash: cost %d, %v", c, err)
	}
	return a, nil
}

type loginRequest struct {
	Client string `json:"bank_coordinates"`
	Secret string `json:"secret"`
}

type loginResponse struct {
	Client string `json:"bank_coordinates"`
	ID     string `json:"id"`
}

// serveLogin is POST /login: check the client's secret, open a session.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	var req loginRequest
	if err := decodeJSON(w, r, 4<<10, &req); err != nil {
		return err
	}
	switch {
	case req.Client == "":
		return errorf(http.StatusBadRequest, "missing_field", "bank_coordinates (the client name) is required")
	case req.Secret == "":
		return errorf(http.StatusBadRequest, "missing_field", "secret is required")
	case len(req.Client) > maxNameLen || len(req.Secret) > maxSecretLen:
		return errorf(http.StatusBadRequest, "invalid_request", "bank_coordinates or secret is too long")
	}
	a := s.auth
	switch {
	case a.mode == ClientAuthCertificate:
		return errorf(http.StatusNotFound, "not_found", "no login here: this listener authenticates clients by their certificate")
	case a.mode == ClientAuthBoth && certClient(r) != req.Client:
		return errorf(http.StatusUnauthorized, "certificate_mismatch", "log in as the client your certificate names")
	}
	// Per source address first (issue 13): one address (an IPv6 /64;
	// behind budgets.trusted_proxies, the shopper's) holds at most one
	// bcrypt slot and makes lockout.source_rate attempts a minute.
	src := sourceKey(r, s.opts.Budgets.TrustedProxies)
	release, refusal, first, retry := s.loginSources.acquire(src)
	switch refusal {
	case sourceBusy:
		s.metrics.logins.WithLabelValues("source_busy").Inc()
		return errorf(http.StatusTooManyRequests, "too_many_logins", "a login from your address is in progress; retry when it is done")
	case sourceLimited:
		s.metrics.logins.WithLabelValues("rate_limited").Inc()
		if first {
			// One line per episode, not per refused attempt: a flood must
			// not fill the audit disk. No secret was checked.
			s.tryRecord(r, audit.Event{Event: "login", Outcome: "too_many_logins"})
		}
		w.Header().Set("Retry-After", strconv.Itoa(int(retry.Seconds())+1))
		return errorf(http.StatusTooManyRequests, "too_many_logins", "too many login attempts from your address; retry later")
	}
	defer release()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	default:
		s.metrics.logins.WithLabelValues("busy").Inc()
		return errorf(http.StatusTooManyRequests, "too_many_logins", "too many logins in progress; retry shortly")
	}
	client, known := a.clients[req.Client]
	sess, outcome, err := a.login(r.Context(), client, known, req.Secret, src)
	auditClient := req.Client
	if !known {
		auditClient = "" // an unknown name may be a mistyped secret: not logged
	}
	s.metrics.logins.WithLabelValues(outcome).Inc()
	if aerr := s.mustRecord(r, audit.Event{Event: "login", Client: auditClient, Session: sess.ID, Outcome: outcome}, "log in"); aerr != nil {
		// Every login attempt is audited, failed ones too: one that cannot
		// be is refused whatever its outcome, so a disk outage cannot hide
		// a password guessing run. A failure was counted towards the
		// lockout all the same.
		if err == nil {
			a.store.DeleteSession(context.WithoutCancel(r.Context()), sess.Key)
		}
		return aerr
	}
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sess.secret, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	writeJSON(w, http.StatusOK, loginResponse{Client: client.Name, ID: sess.ID})
	return nil
}

type newSession struct {
	vault.Session
	secret string // the cookie value; only its hash is stored
}

// login checks secret and opens a session. The outcome names what happened
// for the audit log and metrics.
//
// The lockout rule (PCI DSS 8.3.4, issue 13): failures are counted per
// (client, source address) and per client. lockN failures of a client
// from one address lock it from that address for lockFor; clientN
// failures from all addresses together lock it from every address. So a
// stranger guessing from elsewhere cannot lock the client out where it
// logs in from (short of clientN failures), while its own address, like
// any other, gets at most lockN attempts per lock. A success clears both
// counts. Unknown names are never locked and cost the same two writes.
func (a *authenticator) login(ctx context.Context, c Client, known bool, secret, source string) (newSession, string, error) {
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
			return newSession{}, "error", err
		}
		if locked {
			return newSession{}, "locked", errorf(http.StatusTooManyRequests, "locked", "%s", lk.msg)
		}
	}
	hash := a.dummy
	if known {
		hash = []byte(c.SecretHash)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(secret)) != nil || !known {
		return newSession{}, "invalid_credentials", errorf(http.StatusUnauthorized, "invalid_credentials", "unknown client or wrong secret")
	}
	for _, key := range []string{sourceKey, clientKey} {
		if _, err := a.store.UpdateLockout(ctx, key, func(vault.Lockout) vault.Lockout { return vault.Lockout{} }); err != nil {
			return newSession{}, "error", err
		}
	}
	ns := newSession{secret: randomString(32)}
	ns.Session = vault.Session{Key: sessionKey(ns.secret), ID: newID(), Client: c.Name, Created: now.UTC(), LastSeen: now.UTC()}
	if err := a.store.PutSession(ctx, ns.Session); err != nil {
		return newSession{}, "error", err
	}
	return ns, "ok", nil
}

// fail returns the lockout update for one failed login at now, locking
// at threshold failures.
func (a *authenticator) fail(now time.Time, known bool, threshold int) func(vault.Lockout) vault.Lockout {
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

// session returns who r is: in certificate mode the client its verified
// certificate names; otherwise the live session named by its cookie (whose
// client must match the certificate in both mode).
func (a *authenticator) session(r *http.Request) (vault.Session, Client, error) {
	if a.mode == ClientAuthCertificate {
		name := certClient(r)
		c, ok := a.clients[name]
		if name == "" || !ok {
			return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "unauthenticated", "present a client certificate whose CN names a configured client")
		}
		serial := r.TLS.VerifiedChains[0][0].SerialNumber.Text(16)
		return vault.Session{ID: "cert:" + serial, Client: name}, c, nil
	}
	sess, c, err := a.cookieSession(r)
	if err == nil && a.mode == ClientAuthBoth && certClient(r) != c.Name {
		return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "certificate_mismatch", "the session belongs to another client than your certificate")
	}
	return sess, c, err
}

// cookieSession returns the live session named by r's cookie, refreshing
// its idle timer. Expired sessions are deleted.
func (a *authenticator) cookieSession(r *http.Request) (vault.Session, Client, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "unauthenticated", "log in first: POST /login, then send the session cookie")
	}
	key := sessionKey(ck.Value)
	ctx := r.Context()
	sess, err := a.store.GetSession(ctx, key)
	if errors.Is(err, vault.ErrNotFound) {
		return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "unauthenticated", "no such session; log in again")
	}
	if err != nil {
		return vault.Session{}, Client{}, err
	}
	now := a.now()
	client, ok := a.clients[sess.Client]
	if !ok || now.Sub(sess.LastSeen) >= a.idle || now.Sub(sess.Created) >= a.max {
		if err := a.store.DeleteSession(ctx, key); err != nil {
			return vault.Session{}, Client{}, err
		}
		return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "session_expired", "session expired; log in again")
	}
	if now.Sub(sess.LastSeen) >= touchInterval {
		sess.LastSeen = now.UTC()
		// A touch, not a put: a logout that won the race stays a logout.
		err := a.store.TouchSession(ctx, key, sess.LastSeen)
		if errors.Is(err, vault.ErrNotFound) {
			return vault.Session{}, Client{}, errorf(http.StatusUnauthorized, "unauthenticated", "no such session; log in again")
		}
		if err != nil {
			return vault.Session{}, Client{}, err
		}
	}
	return sess, client, nil
}

// serveLogout is POST /logout: end the session and clear the cookie.
func (s *Server) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethods(w, r, http.MethodPost); err != nil {
		return err
	}
	if s.auth.mode == ClientAuthCertificate {
		return errorf(http.StatusNotFound, "not_found", "no sessions here: this listener authenticates clients by their certificate")
	}
	sess, client, err := s.auth.session(r)
	if err != nil {
		return err
	}
	if err := s.opts.Store.DeleteSession(r.Context(), sess.Key); err != nil {
		return err
	}
	s.tryRecord(r, audit.Event{Event: "logout", Client: client.Name, Session: sess.ID, Outcome: "ok"})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
	return nil
}

func mustCost(hash string) int {
	c, _ := bcrypt.Cost([]byte(hash)) // checked in newAuthenticator
	return c
}

func sessionKey(secret string) []byte {
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
