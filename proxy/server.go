// Package proxy is everything HTTP in tok: the direct API (/handle, /login,
// /@me, /logout), the admin endpoints, and the tokenizing proxies.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/auth"
	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault"
)

// Defaults for [Options] fields left zero.
const (
	DefaultMaxBody          = 1 << 20 // bytes of request body accepted (limits.max_body)
	DefaultSessionIdle      = 15 * time.Minute
	DefaultSessionMax       = 8 * time.Hour // PCI DSS 8.2.8 absolute limit
	DefaultLockoutThreshold = 10            // failed logins before a lock (PCI DSS 8.3.4)
	DefaultLockoutDuration  = 30 * time.Minute
	// DefaultLockoutClientThreshold: failures of one client from all
	// source addresses that lock it from every address.
	DefaultLockoutClientThreshold = 100
	// DefaultLoginSourceRate is lockout.source_rate: login attempts per
	// minute per source address.
	DefaultLoginSourceRate = 30
	DefaultShutdownTimeout = 25 * time.Second // below Kubernetes' 30 s grace period
	DefaultCommitTimeout   = 5 * time.Second  // vault.commit_timeout: well below writeTimeout

	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 64 << 10
)

// Listen holds the listener addresses. An empty address turns that listener off.
type Listen struct {
	Public string // POST /handle (anonymous), and the inbound proxy
	Auth   string // POST /login, GET|POST /@me, POST /logout, POST /handle (convergent)
	Admin  string // /metrics, /healthz, /readyz
	Egress string // outbound routes to payment providers; served only with Egress routes
}

// Client is a configured API client that may log in on the auth listener
// (see [auth.Client]).
type Client = auth.Client

// Options configures a [Server]. Vault and Store are required.
type Options struct {
	Vault *vault.Vault
	Store Store // sessions, lockouts and readiness; usually the vault's durable store
	// Volatile, if set, is the vault's store of volatile values (store:
	// memory): vault/memory in this process, or a store shared by replicas
	// on a server (vault/redis). /metrics shows how full it is; /readyz
	// pings it, since requests with a CVC fail while it is down.
	Volatile VolatileStore
	// Quota, if set, is the vault's limits.vault_bytes, exported as
	// tok_vault_bytes and tok_vault_bytes_max.
	Quota   *vault.Quota
	Listen  Listen
	Clients []Client
	// MaxBody caps request bodies. If zero, DefaultMaxBody.
	MaxBody int64
	// Audit receives one JSON line per login attempt, lookup and reveal,
	// refused /@me session and admin action or refusal, each keyed with
	// [audit.Key] of the Vault's keyring.
	// If nil, audit lines are discarded (tests only: production configs
	// always set one).
	Audit io.Writer
	// AuditLast is the last line already in the audit log (see
	// [audit.LastLine]), so the keyed chain continues across restarts. Nil
	// starts a new chain. AuditTail, when its Last or Torn is set, is
	// used instead: the end of the log as [audit.ReadTail] found it, whose
	// torn region the first line written seals.
	AuditLast []byte
	AuditTail audit.Tail
	// Logger receives operational logs. If nil, slog.Default().
	Logger *slog.Logger
	// Now replaces time.Now (tests). If nil, time.Now.
	Now func() time.Time
	// Registry receives tok's metrics and is served on /metrics. If nil, a
	// new registry is created.
	Registry *prometheus.Registry
	// Commits, if set, are the durable store's commit histograms (see
	// [NewCommitMetrics]); a reload keeps the first generation's.
	Commits *CommitMetrics
	// Session policy. Zero values take the defaults above.
	SessionIdle      time.Duration
	SessionMax       time.Duration
	LockoutThreshold int // failures per (client, source address) that lock; see auth.Authenticator.Login
	LockoutDuration  time.Duration
	// LockoutClientThreshold: failures per client from all sources that
	// lock it everywhere. If zero, DefaultLockoutClientThreshold (at
	// least LockoutThreshold).
	LockoutClientThreshold int
	// LoginSourceRate: login attempts per minute per source address. If
	// zero, DefaultLoginSourceRate.
	LoginSourceRate int
	ShutdownTimeout time.Duration
	// Budgets bound the convergent (oracle) paths and /@me. Zero fields
	// take the defaults; see [Budgets].
	Budgets Budgets
	// SessionSweep is how often expired sessions are removed from the
	// store. If zero, DefaultSessionSweep.
	SessionSweep time.Duration
	// CommitTimeout is vault.commit_timeout: the deadline of the store's
	// commits (set in the store itself), which also bounds the wait for an
	// audit line and makes /readyz report an audit write or a commit in
	// flight for longer. If zero, DefaultCommitTimeout.
	CommitTimeout time.Duration

	// Inbound proxy: when Upstream is set, every request to the
	// public listener except /handle is forwarded to it, with the values
	// at Routes' fields tokenized first.
	Upstream *url.URL
	Routes   []Route
	Guard    GuardOptions
	// MaxDepth bounds JSON nesting in proxied bodies. If zero,
	// rewrite.DefaultMaxDepth.
	MaxDepth int
	// Transport reaches the upstream. If nil, a tuned clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
	// MaxInFlight bounds proxied requests in progress. If zero,
	// DefaultMaxInFlight.
	MaxInFlight int

	// Egress routes: requests from the app on the egress
	// listener, forwarded to payment providers with tokens revealed.
	Egress []EgressRoute

	// TLS, by listener name (ListenerPublic, ...): listeners without an
	// entry serve plain HTTP.
	TLS map[string]ListenerTLS

	// Backup, if set, writes a consistent snapshot of the vault store to w
	// while it serves traffic; GET /backup on the admin listener streams it.
	// Nil: the store cannot be backed up this way (PostgreSQL has its own
	// tools) and /backup answers 404.
	Backup func(ctx context.Context, w io.Writer) (int64, error)
	// ForwardCA, if set, turns on the egress listener's forward-proxy mode
	// (forward.go): CONNECT tunnels to the hosts egress routes name, with
	// certificates this CA signs. Nil: CONNECT is refused.
	ForwardCA *ForwardCA
}

// Server serves tok's listeners. Build it with [New]; it is safe for
// concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger
	// auditLog is shared by every generation; write to it through
	// mustRecord and tryRecord (auditpolicy.go).
	auditLog *audit.Log
	metrics  *metrics
	keys     *keyState  // shared by every generation
	budgets  *budgets   // what callers have spent; shared by every generation
	reports  *reports   // report mode's would-be refusals; shared by every generation
	ready    *readiness // shared by every generation
	// volReady pings the volatile store for /readyz; shared by every
	// generation.
	volReady *readiness
	// loginSources limits logins per source address; shared by every
	// generation.
	loginSources *auth.SourceLimiter
	auth         *auth.Authenticator
	inbound      *inbound   // nil without an upstream
	egress       *egress    // nil without egress routes
	tunnels      *tunnelSet // egress CONNECT tunnels (forward.go); shared by every generation
	handlers     map[string]http.Handler
	tlsConf      map[string]*tls.Config // by listener; nil entries: plain HTTP
	// live is the Server now answering on the listeners: this one until a
	// Reload replaces it. Every generation shares the same pointer.
	live *atomic.Pointer[Server]
}

// New checks opts, fills defaults and builds a Server.
func New(opts Options) (*Server, error) { return build(opts, nil) }

// Reload builds a Server from opts and makes it answer every new request
// on the running listeners; requests in flight finish on the old one. The
// audit log (and its keyed chain), the metrics and the listeners carry
// over. On error nothing changes. Listener addresses, and whether the
// egress listener runs, can only change with a restart.
func (s *Server) Reload(opts Options) error {
	cur := s.live.Load()
	if opts.Listen != cur.opts.Listen {
		return errors.New("reload: listener addresses changed; restart tok to apply them")
	}
	for _, name := range []string{ListenerPublic, ListenerAuth, ListenerAdmin, ListenerEgress} {
		_, was := cur.opts.TLS[name]
		if _, is := opts.TLS[name]; was != is {
			return fmt.Errorf("reload: TLS turned on or off for the %s listener; restart tok to apply that", name)
		}
	}
	if opts.Vault != nil {
		if err := cur.keys.checkKeyring(opts.Vault.Keyring()); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	ns, err := build(opts, cur)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	if (ns.egress == nil) != (cur.egress == nil) {
		return errors.New("reload: egress routes added or all removed; restart tok to start or stop the egress listener")
	}
	s.live.Store(ns)
	if cur.inbound != nil {
		if t, ok := cur.inbound.rp.Transport.(*http.Transport); ok {
			t.CloseIdleConnections()
		}
	}
	cur.log.Info("configuration reloaded", "inbound_routes", len(opts.Routes), "egress_routes", len(opts.Egress), "clients", len(opts.Clients))
	return nil
}

// positiveOr returns v, or def if v is zero or negative: an Options or
// Budgets limit left zero means its default.
func positiveOr[T ~int | ~int64 | ~float64](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// build makes a Server generation; prev, if set, lends its audit log,
// metrics and registry.
func build(opts Options, prev *Server) (*Server, error) {
	if opts.Vault == nil || opts.Store == nil {
		return nil, errors.New("proxy: Vault and Store are required")
	}
	opts.MaxBody = positiveOr(opts.MaxBody, DefaultMaxBody)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case prev != nil:
		opts.Registry = prev.opts.Registry
	case opts.Registry == nil:
		opts.Registry = prometheus.NewRegistry()
	}
	opts.SessionIdle = positiveOr(opts.SessionIdle, DefaultSessionIdle)
	opts.SessionMax = positiveOr(opts.SessionMax, DefaultSessionMax)
	opts.LockoutThreshold = positiveOr(opts.LockoutThreshold, DefaultLockoutThreshold)
	opts.LockoutDuration = positiveOr(opts.LockoutDuration, DefaultLockoutDuration)
	opts.LockoutClientThreshold = positiveOr(opts.LockoutClientThreshold, DefaultLockoutClientThreshold)
	opts.LockoutClientThreshold = max(opts.LockoutClientThreshold, opts.LockoutThreshold)
	opts.LoginSourceRate = positiveOr(opts.LoginSourceRate, DefaultLoginSourceRate)
	opts.ShutdownTimeout = positiveOr(opts.ShutdownTimeout, DefaultShutdownTimeout)
	opts.SessionSweep = positiveOr(opts.SessionSweep, DefaultSessionSweep)
	opts.CommitTimeout = positiveOr(opts.CommitTimeout, DefaultCommitTimeout)
	opts.Budgets = opts.Budgets.withDefaults()
	s := &Server{opts: opts, log: opts.Logger}
	if prev != nil {
		s.auditLog, s.metrics, s.live, s.keys, s.ready, s.budgets = prev.auditLog, prev.metrics, prev.live, prev.keys, prev.ready, prev.budgets
		s.volReady = prev.volReady
		s.reports = prev.reports
		s.loginSources = prev.loginSources
		s.loginSources.SetRate(opts.LoginSourceRate)
		s.tunnels = prev.tunnels
	} else {
		s.tunnels = &tunnelSet{}
		s.auditLog = openAuditLog(opts, s.log)
		s.ready, s.volReady = &readiness{}, &readiness{}
		s.loginSources = auth.NewSourceLimiter(opts.Now, opts.LoginSourceRate)
		s.metrics = newMetrics(opts.Registry)
		s.budgets = newBudgets()
		s.reports = newReports()
		if opts.Commits == nil {
			opts.Commits = NewCommitMetrics()
		}
		opts.Registry.MustRegister(opts.Commits)
		if opts.Volatile != nil {
			opts.Registry.MustRegister(newVolatileCollector(opts.Volatile))
		}
		if opts.Quota != nil {
			registerQuota(opts.Registry, opts.Quota)
		}
		s.live = new(atomic.Pointer[Server])
		s.live.Store(s)
		live := s.live
		s.keys = newKeyState(opts.Registry, func() *Server { return live.Load() })
	}
	var err error
	if s.tlsConf, err = tlsConfigs(opts.TLS); err != nil {
		return nil, err
	}
	auth, err := newAuthenticator(opts)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	if opts.MaxInFlight <= 0 {
		s.opts.MaxInFlight = DefaultMaxInFlight
	}
	switch {
	case opts.Upstream != nil:
		if s.inbound, err = newInbound(s); err != nil {
			return nil, fmt.Errorf("inbound: %w", err)
		}
	case len(opts.Routes) > 0:
		return nil, errors.New("proxy: inbound routes need an upstream")
	}
	if len(opts.Egress) > 0 {
		if s.egress, err = newEgress(s); err != nil {
			return nil, fmt.Errorf("egress: %w", err)
		}
	}
	s.handlers = map[string]http.Handler{ListenerPublic: s.PublicHandler(), ListenerAuth: s.AuthHandler(),
		ListenerAdmin: s.AdminHandler(), ListenerEgress: s.EgressHandler()}
	return s, nil
}

// Listener names, as in the config's listen section.
const (
	ListenerPublic = "public"
	ListenerAuth   = "auth"
	ListenerAdmin  = "admin"
	ListenerEgress = "egress"
)

// Run listens on every configured address and serves until ctx is done
// (see [Server.Serve]). It does not close the stores: the caller does,
// after Run returns.
func (s *Server) Run(ctx context.Context) error {
	addrs := map[string]string{ListenerPublic: s.opts.Listen.Public, ListenerAuth: s.opts.Listen.Auth, ListenerAdmin: s.opts.Listen.Admin}
	if s.egress != nil {
		addrs[ListenerEgress] = s.opts.Listen.Egress
	}
	ls := map[string]net.Listener{}
	for name, addr := range addrs {
		if addr == "" {
			continue
		}
		nl, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("listen %s on %s: %w", name, addr, err)
		}
		ls[name] = nl
	}
	return s.Serve(ctx, ls)
}

// Serve serves each listener by name (ListenerPublic, ListenerAuth,
// ListenerAdmin, ListenerEgress) until ctx is done or one fails, then stops accepting and
// drains in-flight requests for up to ShutdownTimeout. It closes the
// listeners.
func (s *Server) Serve(ctx context.Context, listeners map[string]net.Listener) error {
	if len(listeners) == 0 {
		return errors.New("proxy: no listener configured")
	}
	errc := make(chan error, len(listeners))
	var servers []*http.Server
	var wg sync.WaitGroup
	for name, nl := range listeners {
		if _, ok := s.handlers[name]; !ok {
			nl.Close()
			return fmt.Errorf("proxy: unknown listener %q", name)
		}
		if s.tlsConf[name] != nil {
			nl = s.tlsListener(name, nl)
		}
		// Each request goes to the generation live when it arrives.
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.live.Load().handlers[name].ServeHTTP(w, r)
		})
		srv := s.httpServer(name, h)
		servers = append(servers, srv)
		s.log.Info("listening", "listener", name, "addr", nl.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(nl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", name, err)
			}
		}()
	}
	s.startKeys(ctx)
	defer s.stopKeys()
	defer s.startJanitor(ctx)()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down: draining in-flight requests", "timeout", s.opts.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
			runErr = errors.Join(runErr, fmt.Errorf("drain: %w", err))
		}
	}
	// Hijacked CONNECT tunnels are not the listeners' to drain.
	if err := s.tunnels.shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("drain egress tunnels: %w", err))
	}
	wg.Wait()
	return runErr
}

// httpServer returns a server with every timeout set: a slow client cannot
// hold a connection or a goroutine forever.
func (s *Server) httpServer(name string, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          httpx.ErrorLog(s.log, name),
	}
}

// newAuthenticator builds the auth listener's authenticator from opts
// (defaults filled).
func newAuthenticator(opts Options) (*auth.Authenticator, error) {
	mode := auth.ModeSession
	switch opts.TLS[ListenerAuth].ClientAuth {
	case ClientAuthCertificate:
		mode = auth.ModeCertificate
	case ClientAuthBoth:
		mode = auth.ModeBoth
	}
	return auth.New(auth.Config{
		Store: opts.Store, Clients: opts.Clients, Now: opts.Now,
		Idle: opts.SessionIdle, Max: opts.SessionMax,
		LockoutThreshold: opts.LockoutThreshold, LockoutClientThreshold: opts.LockoutClientThreshold,
		LockoutDuration: opts.LockoutDuration, Mode: mode,
	})
}
