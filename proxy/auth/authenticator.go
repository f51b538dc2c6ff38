// Package auth is who a caller of the auth listener is: the configured
// clients and their secrets, the lockout rule (lockout.go), the cost an
// unknown name pays, login limits per source address (sourcelimit.go) and
// sessions (session.go), kept in a [SessionStore] so every replica on a
// shared store sees the same sessions and lockouts.
package auth

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
)

const (
	// maxConcurrentLogins bounds bcrypt work: each comparison costs a core
	// for ~100-300 ms, so unbounded logins are a denial of service.
	maxConcurrentLogins = 4
	// MaxNameLen and MaxSecretLen bound what POST /login accepts.
	MaxNameLen   = 128
	MaxSecretLen = 72 // bcrypt ignores bytes past 72
)

// Client is a configured API client that may log in on the auth listener.
type Client struct {
	Name       string // what POST /login calls bank_coordinates
	SecretHash string // bcrypt hash of the client's secret
	Reveal     bool   // may see the full PAN in /@me; otherwise masked only
	Delete     bool   // may erase tokens with DELETE /@me (right to erasure)
	// HandleBudget and RevealBudget, if positive, replace Budgets.HandleClient
	// and Budgets.Reveal for this client.
	HandleBudget int
	RevealBudget int
}

// Mode is how the auth listener knows its clients.
type Mode int

const (
	// ModeSession: log in, then the session cookie (the default).
	ModeSession Mode = iota
	// ModeCertificate: the verified client certificate's CN names the client.
	ModeCertificate
	// ModeBoth: a session whose client is the certificate's CN.
	ModeBoth
)

// SessionStore keeps login sessions and lockouts (see [vault.SessionStore]
// for each method's contract). Every method is one the authenticator uses.
type SessionStore interface {
	PutSession(ctx context.Context, s vault.Session) error
	GetSession(ctx context.Context, key []byte) (vault.Session, error)
	DeleteSession(ctx context.Context, key []byte) error
	TouchSession(ctx context.Context, key []byte, lastSeen time.Time) error
	PurgeSessions(ctx context.Context, seenBy, createdBy time.Time) (int, error)
	UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error)
}

// Config configures an [Authenticator]. Every field is required (the
// server fills the defaults).
type Config struct {
	Store   SessionStore
	Clients []Client
	Now     func() time.Time
	// Idle and Max end a session: idle for Idle, or older than Max.
	Idle, Max time.Duration
	// LockoutThreshold failures of a client from one source address lock
	// it there, LockoutClientThreshold from all sources lock it everywhere,
	// for LockoutDuration (see [Authenticator.Login]).
	LockoutThreshold       int
	LockoutClientThreshold int
	LockoutDuration        time.Duration
	Mode                   Mode
}

// Authenticator checks client secrets and keeps sessions and lockouts in
// the store. It is safe for concurrent use.
type Authenticator struct {
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
	mode    Mode
}

// BcryptCost is the cost of the client secret hashes `tok secret hash`
// writes, and the least cost of the dummy hash an unknown client name is
// compared against.
const BcryptCost = 12

// New checks the clients' secret hashes and builds an Authenticator.
func New(c Config) (*Authenticator, error) {
	a := &Authenticator{
		store: c.Store, clients: map[string]Client{}, slots: make(chan struct{}, maxConcurrentLogins),
		now: c.Now, idle: c.Idle, max: c.Max, lockN: c.LockoutThreshold, clientN: c.LockoutClientThreshold,
		lockFor: c.LockoutDuration, mode: c.Mode,
	}
	cost := BcryptCost // dummy hashes cost what real ones do
	for _, cl := range c.Clients {
		hc, err := bcrypt.Cost([]byte(cl.SecretHash))
		if err != nil {
			return nil, fmt.Errorf("client %q: secret_hash: %w", cl.Name, err)
		}
		if _, dup := a.clients[cl.Name]; dup {
			return nil, fmt.Errorf("client %q configured twice", cl.Name)
		}
		a.clients[cl.Name] = cl
		cost = hc // unknown names must cost what a known one does (the highest)
		for _, k := range a.clients {
			cost = max(cost, mustCost(k.SecretHash))
		}
	}
	dummy, err := dummyHash(cost)
	if err != nil {
		return nil, err
	}
	a.dummy = dummy
	return a, nil
}

// dummyHash returns a bcrypt hash of cost that nothing matches: an unknown
// client name is compared against it, so it costs what a wrong secret
// does. Its secret is random and thrown away. Comparing against a hash
// costs what the hash's cost field says, so the dummy is made cheaply at
// the minimum cost and relabelled: startup (and every reload) does not
// spend a quarter second on it.
func dummyHash(cost int) ([]byte, error) {
	var junk [32]byte
	rand.Read(junk[:])
	dummy, err := bcrypt.GenerateFromPassword(junk[:], bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	dummy = append([]byte(fmt.Sprintf("$2a$%02d$", cost)), dummy[len("$2a$04$"):]...)
	if c, err := bcrypt.Cost(dummy); err != nil || c != cost {
		return nil, fmt.Errorf("dummy hash: cost %d, %v", c, err)
	}
	return dummy, nil
}

func mustCost(hash string) int {
	c, _ := bcrypt.Cost([]byte(hash)) // checked in New
	return c
}

// Mode is how the listener knows its clients.
func (a *Authenticator) Mode() Mode { return a.mode }

// Client returns the configured client name, and whether there is one.
func (a *Authenticator) Client(name string) (Client, bool) {
	c, ok := a.clients[name]
	return c, ok
}

// LoginSlot takes one of the few concurrent bcrypt comparisons, or
// reports that all are taken (the caller refuses: 429).
func (a *Authenticator) LoginSlot() (release func(), ok bool) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, true
	default:
		return nil, false
	}
}

// CertClient returns the CN of r's verified client certificate, or "".
func CertClient(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
