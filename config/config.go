// Package config is tok's YAML configuration: the schema, the embedded
// defaults (default.yaml, which also documents every key), strict decoding
// and validation.
//
// [Parse] reports every problem in a file at once, each with its line, the
// key path and the fix, so that `tok check` can list them all. The decoded
// [Config] is plain data: main hands its values down to proxy and vault.
package config

import (
	_ "embed"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// defaultYAML is the commented default configuration.
//
//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the commented default configuration file: every key
// with its default value and documentation.
func DefaultYAML() []byte { return append([]byte(nil), defaultYAML...) }

// Defaults for keys left absent or empty. default.yaml shows the same values;
// a test keeps the two in step.
const (
	DefaultPublicAddr = ":8080"          // listen.public
	DefaultAuthAddr   = "127.0.0.1:5000" // listen.auth
	DefaultAdminAddr  = "127.0.0.1:9090" // listen.admin
	DefaultEgressAddr = "127.0.0.1:8081" // listen.egress

	// DefaultDataDir holds the default bolt file, keyring and audit log, and
	// the demo secret written by [Bootstrap].
	DefaultDataDir     = "./data"
	DefaultBoltPath    = "./data/tok.db"       // vault.bolt, when vault.postgres is empty too
	DefaultKeyringPath = "./data/keyring.yaml" // vault.keyring
	DefaultAuditPath   = "./data/audit.log"    // audit.path

	// limits.max_body, max_depth and max_in_flight default to the
	// proxy's own: proxy.DefaultMaxBody, rewrite.DefaultMaxDepth and
	// proxy.DefaultMaxInFlight (proxied requests in progress on the
	// public listener; the excess is shed with 503).

	// DefaultMemory is limits.memory, the Go runtime's soft memory limit:
	// the garbage collector works harder as the process nears it, so
	// garbage does not double the footprint under load.
	DefaultMemory Size = 48 * MiB
	// DefaultVolatileRecords is limits.volatile_records: values kept in
	// memory only (store: memory fields, e.g. CVCs for their ttl) that tok
	// holds at once; beyond it such fields are refused with 503, so
	// posting checkouts cannot grow tok's memory without bound.
	DefaultVolatileRecords = 1 << 18 // 262144, about 27 MB at ~104 B per record

	// The session, lockout, budget and commit timeout defaults are the
	// proxy's own (proxy.DefaultSessionIdle and the rest), which fill in a
	// key left absent; default.yaml shows the same values.

	DefaultStore = StoreDisk // fields[].store

	// DefaultErrorFormat is egress[].error_format; the timeout's default
	// is proxy.DefaultEgressTimeout.
	DefaultErrorFormat = proxy.ErrorFormatPlain
	// DefaultUnrevealedTokens is egress[].unrevealed_tokens.
	DefaultUnrevealedTokens = UnrevealedWarn
)

// Unrevealed is what an egress route does with a live token found outside
// the fields it reveals (egress[].unrevealed_tokens): it would reach the
// provider as a token, which the provider declines.
type Unrevealed string

// What an egress route does with an unrevealed token.
const (
	UnrevealedWarn   Unrevealed = "warn"   // log a warning naming the route and field, and forward
	UnrevealedRefuse Unrevealed = "refuse" // refuse with 422 "unrevealed_token"
)

// UnmarshalText sets u from the config; empty is the default.
func (u *Unrevealed) UnmarshalText(text []byte) error {
	switch v := Unrevealed(text); v {
	case "", UnrevealedWarn, UnrevealedRefuse:
		*u = v
		return nil
	}
	return fmt.Errorf("%q: use warn or refuse", text)
}

// DefaultIgnoreHeaders is guard.ignore_headers when the key is absent: the
// tracing headers that carry random 64-bit ids in decimal, one in a hundred
// of which reads as a 19-digit card (Datadog's trace and parent ids, Google
// Cloud's span id). Reading them refused about 1.2% of traced requests
// (TestHeaderPrecision); exempting them lets a card written there reach the
// app and its tracer. Set guard.ignore_headers: [] to read them too.
var DefaultIgnoreHeaders = []string{"x-datadog-trace-id", "x-datadog-parent-id", "x-cloud-trace-context"}

// Limits enforced by validation.
const (
	MinMaxBody     Size = 1 * KiB  // smallest limits.max_body
	MaxMaxBody     Size = 64 * MiB // largest limits.max_body
	MaxMaxDepth         = 1000     // largest limits.max_depth
	MaxMaxInFlight      = 100_000  // largest limits.max_in_flight
	MinMemory      Size = 16 * MiB // smallest limits.memory
	// MinVaultBytes is the smallest limits.vault_bytes other than 0 (off):
	// an empty bbolt vault with its log takes about 64 MiB.
	MinVaultBytes Size = 128 * MiB
	// MaxVolatileRecords is the largest limits.volatile_records.
	MaxVolatileRecords = 100_000_000
	// MaxLockoutThreshold and MinLockoutDuration are PCI DSS 8.3.4's bounds:
	// lockout settings may be stricter than the defaults, never looser.
	MaxLockoutThreshold = 10
	MinLockoutDuration  = 30 * time.Minute
	// MaxLockoutClientThreshold bounds lockout.client_threshold, the
	// failures from all sources that lock a client everywhere.
	MaxLockoutClientThreshold = 10_000
	// MaxLockoutSourceRate bounds lockout.source_rate (per minute).
	MaxLockoutSourceRate = 100_000
	// MinCommitTimeout and MaxCommitTimeout bound vault.commit_timeout:
	// above a disk's slowest healthy fsync, below the listeners' write
	// timeout, so a client always gets a status.
	MinCommitTimeout = 100 * time.Millisecond
	MaxCommitTimeout = 50 * time.Second
	// MaxSessionIdle is the longest session.idle (PCI DSS 8.2.8: re-auth
	// after 15 minutes idle); sessions may be stricter, never looser.
	MaxSessionIdle = 15 * time.Minute
	// MaxVolatileTTL is the longest ttl of a store: memory field: sensitive
	// authentication data may be kept until authorization, not for days.
	MaxVolatileTTL = 24 * time.Hour
	// MaxSessionMax is the longest session.max.
	MaxSessionMax = 8 * time.Hour
	// MaxKeepFirst and MaxKeepLast bound the digits a pan token keeps in
	// clear: PCI DSS allows at most the BIN (first 8) and the last 4.
	MaxKeepFirst = 8
	MaxKeepLast  = 4
	// MinBcryptCost is the weakest bcrypt cost accepted in secret_hash;
	// `tok secret hash` uses auth.BcryptCost.
	MinBcryptCost = 10
	// MinEgressTimeout and MaxEgressTimeout bound egress[].timeout.
	MinEgressTimeout = time.Second
	MaxEgressTimeout = 10 * time.Minute
	// MinBudgetWindow and MaxBudgetWindow bound budgets.window.
	MinBudgetWindow = time.Minute
	MaxBudgetWindow = 24 * time.Hour
)

// Off is the listen address that turns a listener off.
const Off = "off"

// Environment variables read by [Config.ApplyEnv] and [Config.LoadKeyring].
// When set, they win over the file.
const (
	EnvPostgresURL = "TOK_POSTGRES_URL" // selects postgres with this URL
	EnvKeyring     = "TOK_KEYRING"      // the keyring file's contents
	// EnvRedisURL, when set, puts the volatile store on Redis at this URL
	// (vault.volatile).
	EnvRedisURL = "TOK_REDIS_URL"
	// EnvRedisPassword is the password tok authenticates to Redis with
	// (AUTH): never in the file.
	EnvRedisPassword = "TOK_REDIS_PASSWORD"
)

// Store is where a field's tokens are kept (fields[].store).
type Store string

// Field stores.
const (
	StoreDisk   Store = "disk"   // the durable store (bolt or postgres)
	StoreMemory Store = "memory" // the volatile store: never on disk, needs a ttl
)

// UnmarshalText sets s from the config; empty is the default.
func (s *Store) UnmarshalText(text []byte) error {
	switch v := Store(text); v {
	case "", StoreDisk, StoreMemory:
		*s = v
		return nil
	}
	return fmt.Errorf("%q is not a store; use disk or memory", text)
}

// Config is tok's whole configuration. After [Parse] every default is
// filled in: a listener that is off has an empty address, and exactly one of
// Vault.Bolt and Vault.Postgres is set.
type Config struct {
	Listen   Listen        `yaml:"listen"`
	TLS      TLS           `yaml:"tls"`
	Vault    Vault         `yaml:"vault"`
	Limits   Limits        `yaml:"limits"`
	Clients  []Client      `yaml:"clients"`
	Audit    Audit         `yaml:"audit"`
	Session  Session       `yaml:"session"`
	Lockout  Lockout       `yaml:"lockout"`
	Budgets  Budgets       `yaml:"budgets"`
	Upstream string        `yaml:"upstream"` // the merchant app; empty: no inbound proxy
	Inbound  []Route       `yaml:"inbound"`
	Guard    Guard         `yaml:"guard"`
	Egress   []EgressRoute `yaml:"egress"`
}

// Listen holds the listener addresses (host:port). After Parse, an empty
// address means the listener is off ("off" in the file).
type Listen struct {
	Public string `yaml:"public"`
	Auth   string `yaml:"auth"`
	Admin  string `yaml:"admin"`
	Egress string `yaml:"egress"` // served only when there are egress routes
}

// TLS holds each listener's TLS files. A listener without them serves
// plain HTTP.
type TLS struct {
	Public *ListenerTLS `yaml:"public"`
	Auth   *ListenerTLS `yaml:"auth"`
	Admin  *ListenerTLS `yaml:"admin"`
	Egress *ListenerTLS `yaml:"egress"`
	// EgressCA is tok's own CA (tok ca new), which turns on the egress
	// listener's forward-proxy mode: CONNECT to the hosts egress routes
	// name, answered with certificates it signs. Nil: CONNECT is refused.
	EgressCA *CAFiles `yaml:"egress_ca"`
}

// CAFiles are a CA's PEM certificate and PKCS #8 key.
type CAFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ListenerTLS is one listener's certificate and key (PEM files, re-read on
// SIGHUP) and, on the auth listener, client certificate rules.
type ListenerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile (auth only): client certificates must be signed by a CA
	// in this PEM bundle.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth (auth only): session (default), certificate or both.
	ClientAuth proxy.ClientAuth `yaml:"client_auth"`
}

// Vault says where records and keys live.
type Vault struct {
	Bolt     string `yaml:"bolt"`     // bbolt file path
	Postgres string `yaml:"postgres"` // PostgreSQL URL
	Keyring  string `yaml:"keyring"`  // keyring file path (unless TOK_KEYRING is set)
	// Volatile is where store: memory values live: empty for the process's
	// own memory, or a redis:// (rediss:// for TLS) URL of a Redis server
	// the replicas share. Its password comes from TOK_REDIS_PASSWORD.
	Volatile string `yaml:"volatile"`
	// VolatileCA, if set, is a PEM file of the CAs that sign the Redis
	// server's certificate (rediss:// only); if empty, the system's.
	VolatileCA string `yaml:"volatile_ca"`
	// CommitTimeout bounds a request's wait for a commit or an audit line.
	CommitTimeout time.Duration `yaml:"commit_timeout"`
}

// Limits bound what a request may carry.
type Limits struct {
	MaxBody         Size `yaml:"max_body"`
	MaxDepth        int  `yaml:"max_depth"`
	MaxInFlight     int  `yaml:"max_in_flight"`
	Memory          Size `yaml:"memory"`
	VolatileRecords int  `yaml:"volatile_records"`
	// VaultBytes, if not zero, is the most the durable store may take on
	// disk: past it, values without a token are refused (507 vault_full).
	VaultBytes Size `yaml:"vault_bytes"`
}

// Client may log in on the auth listener.
type Client struct {
	Name       string `yaml:"name"`        // what POST /login calls bank_coordinates
	SecretHash string `yaml:"secret_hash"` // bcrypt hash of the secret
	Reveal     bool   `yaml:"reveal"`      // may see full PANs in /@me
	Delete     bool   `yaml:"delete"`      // may erase tokens (DELETE /@me)
	// HandleBudget and RevealBudget, if above 0, replace budgets.handle_client
	// and budgets.reveal for this client.
	HandleBudget int `yaml:"handle_budget"`
	RevealBudget int `yaml:"reveal_budget"`
}

// Budgets bound the paths that answer whether a card has a token, or that
// reveal one (each is an oracle for whether a card is known), in values
// per window.
type Budgets struct {
	Window          time.Duration `yaml:"window"`
	HandleAnonymous int           `yaml:"handle_anonymous"`
	HandleClient    int           `yaml:"handle_client"`
	Inbound         int           `yaml:"inbound"`
	Reveal          int           `yaml:"reveal"`
	// TrustedProxies are addresses or CIDR prefixes of the load balancers
	// in front of tok, whose X-Forwarded-For names the shopper; see
	// [Budgets.Sources].
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Sources returns TrustedProxies as prefixes (a lone address is a /32 or
// /128). Parse has validated them, so an entry that does not parse is
// left out.
func (b Budgets) Sources() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range b.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Audit configures the audit log.
type Audit struct {
	Path string `yaml:"path"` // "-" means stdout
}

// Session is the login session policy.
type Session struct {
	Idle time.Duration `yaml:"idle"`
	Max  time.Duration `yaml:"max"`
}

// Lockout is the failed-login policy.
type Lockout struct {
	Threshold int           `yaml:"threshold"` // per client and source address
	Duration  time.Duration `yaml:"duration"`
	// ClientThreshold: failures of one client from all sources that lock
	// it from every source.
	ClientThreshold int `yaml:"client_threshold"`
	// SourceRate: login attempts per minute per source address.
	SourceRate int `yaml:"source_rate"`
}

// Match selects the requests a route applies to.
type Match struct {
	Method string `yaml:"method"` // empty: any method
	Path   string `yaml:"path"`   // exact, or a prefix ending in "/*"; egress with host: empty is "/*"
	// Host (egress only) is the host name the app calls, without a port,
	// e.g. stripe.egress.internal: an SDK keeps its own paths (/v1/...)
	// and two providers never collide. Empty: any host.
	Host string `yaml:"host"`
}

// Route is an inbound route: the card fields of matching requests are
// tokenized before the request reaches the upstream.
type Route struct {
	Name   string  `yaml:"name"`
	Match  Match   `yaml:"match"`
	Fields []Field `yaml:"fields"`
	// Inspect false opts the route's bodies out of the guard: they stream
	// to the app unread (binary uploads larger than limits.max_body). Nil
	// or true: inspected. A route with fields is always inspected; tok
	// check warns about every route that is not.
	Inspect *bool `yaml:"inspect"`
	// CardHeaders adds Tok-Card-Field, Tok-Card-Brand, Tok-Card-Prefix,
	// Tok-Card-Last4, Tok-Card-Length, Tok-Card-Luhn and (for a convergent
	// field) Tok-Card-Fingerprint to the request the app gets, describing
	// the card at the first of the route's card fields the request
	// carries. False (the default): none. Tok-Card-* headers a client sends
	// are dropped on every route either way.
	CardHeaders bool `yaml:"card_headers"`
	// Guard, if set, is reject or report: the route's guard mode instead
	// of guard.mode, so one route can be rolled out in report mode while
	// the others reject (or stay rejecting while the rest report).
	Guard *rewrite.GuardMode `yaml:"guard"`
}

// GuardMode is r's guard mode: its own, or g's.
func (r Route) GuardMode(g Guard) rewrite.GuardMode {
	if r.Guard != nil {
		return *r.Guard
	}
	return g.Mode
}

// Inspected reports whether the guard reads r's bodies.
func (r Route) Inspected() bool { return r.Inspect == nil || *r.Inspect }

// EgressRoute is an outbound route: the tokens in its fields are revealed
// before the request goes to Upstream.
type EgressRoute struct {
	Name        string  `yaml:"name"`
	Match       Match   `yaml:"match"`
	Upstream    string  `yaml:"upstream"`
	StripPrefix string  `yaml:"strip_prefix"`
	CAFile      string  `yaml:"ca_file"` // PEM bundle; empty: the system roots
	Fields      []Field `yaml:"fields"`
	// Headers are set on every forwarded request. A value "env:NAME" is
	// read from the environment with [Resolve].
	Headers map[string]string `yaml:"headers"`
	// EgressKey, if set, is "env:NAME": the app must send the variable's
	// value in X-Tok-Egress-Key.
	EgressKey string `yaml:"egress_key"`
	// ErrorFormat is the envelope of tok's refusals on this route; one of
	// proxy.ErrorFormats. Empty: [DefaultErrorFormat].
	ErrorFormat proxy.ErrorFormat `yaml:"error_format"`
	// Timeout bounds the wait for the provider's answer. Zero:
	// proxy.DefaultEgressTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// ResponseIgnore are JSON paths (json selector grammar), form keys or
	// XML element paths ("/transaction/id", "/transaction/@id") of the
	// provider's answers that the response guard leaves alone:
	// ids such as network_transaction_id that pass the Luhn check by
	// chance and must reach the app unchanged.
	ResponseIgnore []string `yaml:"response_ignore"`
	// ResponseCards, if set, narrows what the response guard takes for a
	// card number in the provider's answers to the networks, issuer
	// prefixes and lengths it lists (each list empty: no narrowing by it).
	// Nil: every network the guard knows.
	ResponseCards *ResponseCards `yaml:"response_cards"`
	// EgressKeyHeader says where the app presents EgressKey: one of
	// proxy.EgressKeyBearer, proxy.EgressKeyBasic or a header name. Empty:
	// proxy.EgressKeyHeader.
	EgressKeyHeader string `yaml:"egress_key_header"`
	// UnrevealedTokens is warn or refuse: what to do with a live token
	// found in the body outside the route's fields. Empty:
	// [DefaultUnrevealedTokens].
	UnrevealedTokens Unrevealed `yaml:"unrevealed_tokens"`
	// Guard, if set, is reject or report: report records what reject mode
	// would refuse of the app's requests on this route, then forwards them
	// to the provider (proxy.EgressRoute.Report). Nil or reject: the egress
	// request guard, which rejects unless guard.mode is off (guard.mode
	// report leaves egress rejecting).
	Guard *rewrite.GuardMode `yaml:"guard"`
}

// ResponseCards narrows the egress response guard for one provider: a
// number in its answers is a card only if it is one to the guard and
// matches every list that is set. Names come from the guard's own
// network table (rewrite.Networks).
type ResponseCards struct {
	Networks []string `yaml:"networks"` // e.g. [visa, mastercard, amex]
	Prefixes []string `yaml:"prefixes"` // "4", "51-55", "2221-2720": issuer prefixes or ranges
	Lengths  []int    `yaml:"lengths"`  // 12 to 19, e.g. [15, 16]
}

// Field names one value in a body and how to tokenize it. Exactly one of
// JSON, Form and XML is set.
type Field struct {
	JSON   string        `yaml:"json"`   // dotted path; "#" = every array element
	Form   string        `yaml:"form"`   // form key
	XML    string        `yaml:"xml"`    // element path, /transaction/credit-card/number
	Format vault.Format  `yaml:"format"` // pan (default), digits, opaque
	Keep   *Keep         `yaml:"keep"`   // pan only; nil: 6 and 4
	Unique bool          `yaml:"unique"`
	Store  Store         `yaml:"store"` // disk (default) or memory
	TTL    time.Duration `yaml:"ttl"`   // required for memory
	// Bind names the route's card field (same kind of selector) this
	// value was collected with: a CVC's token is then unique only among
	// the values bound to that card's token, and reveals only together
	// with it. Inbound, bind needs format digits and store memory.
	Bind string `yaml:"bind"`
	// RevealTo, MaxReveals and RevealWindow are the reveal policy of the
	// tokens an inbound field makes (vault.RevealPolicy): the egress
	// routes (by name, or "@me" for the /@me reveal) they reveal through,
	// if not every route; how many times (0 or absent: unlimited); and
	// for how long from tokenization (absent: no end). A count or a
	// window needs unique: true and a durable field.
	RevealTo     []string       `yaml:"reveal_to"`
	MaxReveals   int            `yaml:"max_reveals"`
	RevealWindow *time.Duration `yaml:"reveal_window"`
}

// hasPolicy reports whether f sets any reveal policy key.
func (f Field) hasPolicy() bool {
	return f.RevealTo != nil || f.MaxReveals != 0 || f.RevealWindow != nil
}

// Keep says how many digits a pan token keeps in clear. A nil count takes
// the default (vault.DefaultKeepFirst, vault.DefaultKeepLast); 0 keeps none.
type Keep struct {
	First *int `yaml:"first"`
	Last  *int `yaml:"last"`
}

// Selector returns the field's selector as the proxy logs it: "json:PATH",
// "form:KEY" or "xml:PATH".
func (f Field) Selector() string {
	if f.Form != "" {
		return "form:" + f.Form
	}
	if f.XML != "" {
		return "xml:" + f.XML
	}
	return "json:" + f.JSON
}

// Guard configures the card-number guard.
type Guard struct {
	Mode   rewrite.GuardMode `yaml:"mode"` // reject (the zero value), report, tokenize or off
	Ignore []string          `yaml:"ignore"`
	// ReportThen is what report mode (guard.mode or a route's guard) does
	// with a request reject mode would refuse, once recorded: forward it as
	// the guard-off mode would, or tokenize as tokenize mode does. Empty:
	// forward.
	ReportThen proxy.ReportThen `yaml:"report_then"`
	// IgnoreHeaders names request headers (any case) the guard does not
	// read. If absent, DefaultIgnoreHeaders; [] reads every header.
	IgnoreHeaders []string `yaml:"ignore_headers"`
}

// Default returns the embedded default configuration. It panics only if the
// embedded file is broken, which a test rules out.
func Default() *Config {
	c, err := Parse(defaultYAML, "default.yaml")
	if err != nil {
		panic(fmt.Sprintf("config: embedded defaults: %v", err))
	}
	return c
}

// Load reads and parses the file at path. Problems are reported as for
// [Parse], named by path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes data strictly, fills in defaults and validates the result.
// name is the file name used in problem reports. The error, if any, is an
// [*Error] listing every problem found. Parse does not read the environment;
// see [Config.ApplyEnv].
func Parse(data []byte, name string) (*Config, error) {
	d, err := decode(data, name)
	if err != nil {
		return nil, err
	}
	d.cfg.fillDefaults()
	v := &validator{doc: d}
	v.config(d.cfg)
	if err := d.problems(); err != nil {
		return nil, err
	}
	return d.cfg, nil
}

// fillDefaults sets every absent key to its default.
func (c *Config) fillDefaults() {
	listen := []struct {
		addr *string
		def  string
	}{
		{&c.Listen.Public, DefaultPublicAddr},
		{&c.Listen.Auth, DefaultAuthAddr},
		{&c.Listen.Admin, DefaultAdminAddr},
		{&c.Listen.Egress, DefaultEgressAddr},
	}
	for _, l := range listen {
		switch *l.addr {
		case "":
			*l.addr = l.def
		case Off:
			*l.addr = ""
		}
	}
	if c.Vault.Bolt == "" && c.Vault.Postgres == "" {
		c.Vault.Bolt = DefaultBoltPath
	}
	setDefault(&c.Vault.Keyring, DefaultKeyringPath)
	setDefault(&c.Guard.ReportThen, proxy.ReportForward)
	setDefault(&c.Limits.MaxBody, proxy.DefaultMaxBody)
	setDefault(&c.Limits.MaxDepth, rewrite.DefaultMaxDepth)
	setDefault(&c.Limits.MaxInFlight, proxy.DefaultMaxInFlight)
	setDefault(&c.Limits.Memory, DefaultMemory)
	setDefault(&c.Limits.VolatileRecords, DefaultVolatileRecords)
	setDefault(&c.Audit.Path, DefaultAuditPath)
	setDefault(&c.Session.Idle, proxy.DefaultSessionIdle)
	setDefault(&c.Session.Max, proxy.DefaultSessionMax)
	setDefault(&c.Lockout.Threshold, proxy.DefaultLockoutThreshold)
	setDefault(&c.Lockout.Duration, proxy.DefaultLockoutDuration)
	setDefault(&c.Lockout.ClientThreshold, proxy.DefaultLockoutClientThreshold)
	setDefault(&c.Lockout.SourceRate, proxy.DefaultLoginSourceRate)
	setDefault(&c.Vault.CommitTimeout, proxy.DefaultCommitTimeout)
	if c.Guard.IgnoreHeaders == nil {
		c.Guard.IgnoreHeaders = slices.Clone(DefaultIgnoreHeaders)
	}
	setDefault(&c.Budgets.Window, proxy.DefaultBudgetWindow)
	setDefault(&c.Budgets.HandleAnonymous, proxy.DefaultHandleAnonymousBudget)
	setDefault(&c.Budgets.HandleClient, proxy.DefaultHandleClientBudget)
	setDefault(&c.Budgets.Inbound, proxy.DefaultInboundBudget)
	setDefault(&c.Budgets.Reveal, proxy.DefaultRevealBudget)
	for i := range c.Inbound {
		fillFieldDefaults(c.Inbound[i].Fields)
	}
	for i := range c.Egress {
		r := &c.Egress[i]
		fillFieldDefaults(r.Fields)
		setDefault(&r.ErrorFormat, DefaultErrorFormat)
		setDefault(&r.Timeout, proxy.DefaultEgressTimeout)
		setDefault(&r.UnrevealedTokens, DefaultUnrevealedTokens)
		setDefault(&r.EgressKeyHeader, proxy.EgressKeyHeader)
		if r.Match.Host != "" && r.Match.Path == "" {
			r.Match.Path = "/*"
		}
	}
}

func fillFieldDefaults(fs []Field) {
	for i := range fs {
		setDefault(&fs[i].Store, DefaultStore)
	}
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
