package config

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// validator checks a decoded, defaulted Config and records every problem.
type validator struct {
	doc    *document
	routes map[string]string // route name → path of its first use
}

// fail records a problem at path unless path already has a schema problem.
func (v *validator) fail(path, format string, args ...any) {
	if v.doc.skipped(path) {
		return
	}
	v.doc.add(Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	clientNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	routeNameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	jsonSegRE    = regexp.MustCompile(`^(#|([A-Za-z0-9_$@-]|\\[.\[\]#\\])+)$`)
	envNameRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// hostNameRE is a lower-case DNS name (egress match.host).
	hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
	// tokenRE is RFC 9110's token: method and header names.
	tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

func (v *validator) config(c *Config) {
	v.routes = map[string]string{}
	v.listen(c)
	v.tls(c.TLS)
	v.vault(c.Vault)
	v.limits(c.Limits)
	v.clients(c.Clients)
	if c.Audit.Path != "-" && strings.ContainsFunc(c.Audit.Path, isControl) {
		v.fail("audit.path", "contains a control character")
	}
	v.session(c.Session, c.Lockout)
	v.budgets(c.Budgets)
	if c.Upstream != "" {
		v.upstreamURL("upstream", c.Upstream, false)
	}
	if len(c.Inbound) > 0 && c.Upstream == "" {
		v.fail("inbound", "inbound routes need an upstream; set upstream to the merchant app's URL, e.g. http://127.0.0.1:3000")
	}
	matches := map[string]string{}
	for i, r := range c.Inbound {
		p := fmt.Sprintf("inbound[%d]", i)
		v.route(p, r.Name, r.Match, matches)
		if r.Match.Host != "" {
			v.fail(p+".match.host", "inbound routes match on method and path only; remove host")
		}
		switch {
		case len(r.Fields) == 0 && r.Inspected():
			v.fail(p+".fields", "an inbound route needs at least one field (or inspect: false for a binary upload route); add one or remove the route")
		case len(r.Fields) > 0 && !r.Inspected():
			v.fail(p+".inspect", "a route with card fields is always inspected; remove inspect: false or the fields")
		}
		if r.Guard != nil && *r.Guard != rewrite.GuardReject && *r.Guard != rewrite.GuardReport {
			v.fail(p+".guard", "a route's guard is reject or report; set tokenize or off for every route with guard.mode")
		}
		v.fields(p, r.Fields)
		v.binds(p, r.Fields, true)
		if r.CardHeaders && !slices.ContainsFunc(r.Fields, Field.isCard) {
			v.fail(p+".card_headers", "card headers describe a card field, and this route has none (a bound or memory field is not one); add a card field or remove card_headers")
		}
	}
	v.guard(c.Guard)
	if len(c.Egress) > 0 && c.Listen.Egress == "" {
		v.fail("listen.egress", "egress routes are configured but the egress listener is off; set an address or remove the routes")
	}
	matches = map[string]string{}
	for i, r := range c.Egress {
		v.egress(fmt.Sprintf("egress[%d]", i), r, matches)
	}
	for i, r := range c.Inbound {
		v.revealPolicies(fmt.Sprintf("inbound[%d]", i), r.Fields, c.Egress)
	}
}

// revealPolicies checks the reveal policy keys of an inbound route's
// fields against the egress routes they name.
func (v *validator) revealPolicies(route string, fs []Field, egress []EgressRoute) {
	var names []string
	for _, r := range egress {
		names = append(names, r.Name)
	}
	for i, f := range fs {
		p := fmt.Sprintf("%s.fields[%d]", route, i)
		for j, name := range f.RevealTo {
			if name != vault.RevealToMe && !slices.Contains(names, name) {
				v.fail(fmt.Sprintf("%s.reveal_to[%d]", p, j), "%q is not an egress route; name one of the egress routes (%s), or %q for the /@me reveal", name, strings.Join(names, ", "), vault.RevealToMe)
			}
		}
		if f.Bind != "" && f.RevealTo != nil {
			v.fail(p+".reveal_to", "a bound value reveals only with its card, under the card's policy; set reveal_to on the card field %q instead", f.Bind)
		}
		if f.MaxReveals < 0 {
			v.fail(p+".max_reveals", "%d is negative; use a positive count, or remove it for no limit", f.MaxReveals)
		}
		if f.RevealWindow != nil && *f.RevealWindow <= 0 {
			v.fail(p+".reveal_window", "must be positive, e.g. 24h; remove it for no window")
		}
		counted := f.MaxReveals != 0 || f.RevealWindow != nil
		switch {
		case !counted:
		case f.Store == StoreMemory:
			v.fail(p, "a value held in memory takes no max_reveals or reveal_window: a bound one (a CVC) reveals only with its card, under the card's policy; set them on the card field (reveal_to is allowed here)")
		case !f.Unique:
			v.fail(p, "max_reveals and reveal_window need unique: true: a convergent token is shared by every checkout of the same card, so a count or a window started by its first tokenization would refuse later, legitimate payments")
		}
	}
}

func (v *validator) listen(c *Config) {
	addrs := map[string]string{}
	on := 0
	for _, l := range []struct{ key, addr string }{
		{"public", c.Listen.Public}, {"auth", c.Listen.Auth}, {"admin", c.Listen.Admin}, {"egress", c.Listen.Egress},
	} {
		p := "listen." + l.key
		if l.addr == "" {
			continue
		}
		on++
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			v.fail(p, "%q is not host:port; write e.g. \"127.0.0.1:8080\" or \":8080\", or \"off\"", l.addr)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			v.fail(p, "port %q is not a number from 0 to 65535", port)
			continue
		}
		if prev, dup := addrs[l.addr]; dup && !strings.HasSuffix(l.addr, ":0") {
			v.fail(p, "same address as %s; give each listener its own port", prev)
			continue
		}
		addrs[l.addr] = p
	}
	if on == 0 || (c.Listen.Public == "" && c.Listen.Auth == "" && c.Listen.Admin == "") {
		v.fail("listen", "every listener is off; give at least public, auth or admin an address")
	}
}

func (v *validator) vault(c Vault) {
	if c.Bolt != "" && c.Postgres != "" {
		v.fail("vault.postgres", "set exactly one of vault.bolt and vault.postgres; remove one")
	}
	if c.Postgres != "" {
		u, err := url.Parse(c.Postgres)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			// Never echo the URL: it may carry a password.
			v.fail("vault.postgres", "not a postgres:// URL; write postgres://user@host:5432/db (or set TOK_POSTGRES_URL)")
		} else if _, hasPass := u.User.Password(); hasPass {
			v.fail("vault.postgres", "holds a password; move the URL to the environment variable TOK_POSTGRES_URL (or use a .pgpass file)")
		}
	}
	if c.Volatile != "" {
		u, err := url.Parse(c.Volatile)
		switch {
		case err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "":
			// Never echo the URL: it may carry a password.
			v.fail("vault.volatile", "not a redis:// URL; write redis://host:6379/0 (rediss:// for TLS), or leave it empty to keep values in tok's memory")
		case u.User != nil:
			if _, hasPass := u.User.Password(); hasPass {
				v.fail("vault.volatile", "holds a password; put it in the environment variable %s and remove it from the URL", EnvRedisPassword)
			}
		}
		if c.VolatileCA != "" && err == nil && u.Scheme != "rediss" {
			v.fail("vault.volatile_ca", "a CA file needs a rediss:// (TLS) URL in vault.volatile")
		}
	} else if c.VolatileCA != "" {
		v.fail("vault.volatile_ca", "set without vault.volatile; remove it or set vault.volatile to a rediss:// URL")
	}
	if strings.ContainsFunc(c.Bolt, isControl) {
		v.fail("vault.bolt", "contains a control character")
	}
	if strings.ContainsFunc(c.Keyring, isControl) {
		v.fail("vault.keyring", "contains a control character")
	}
	if c.CommitTimeout < MinCommitTimeout || c.CommitTimeout > MaxCommitTimeout {
		v.fail("vault.commit_timeout", "%s is out of range; use %s to %s (below the listeners' 60s write timeout, so a client always gets a status)",
			c.CommitTimeout, MinCommitTimeout, MaxCommitTimeout)
	}
}

func (v *validator) limits(l Limits) {
	if l.MaxBody < MinMaxBody || l.MaxBody > MaxMaxBody {
		v.fail("limits.max_body", "%s is out of range; use %s to %s", l.MaxBody, MinMaxBody, MaxMaxBody)
	}
	if l.MaxDepth < 1 || l.MaxDepth > MaxMaxDepth {
		v.fail("limits.max_depth", "%d is out of range; use 1 to %d", l.MaxDepth, MaxMaxDepth)
	}
	if l.MaxInFlight < 1 || l.MaxInFlight > MaxMaxInFlight {
		v.fail("limits.max_in_flight", "%d is out of range; use 1 to %d", l.MaxInFlight, MaxMaxInFlight)
	}
	if l.VaultBytes != 0 && l.VaultBytes < MinVaultBytes {
		v.fail("limits.vault_bytes", "%s is too small; use 0 (no quota) or at least %s", l.VaultBytes, MinVaultBytes)
	}
	if l.Memory < MinMemory {
		v.fail("limits.memory", "%s is too small; use at least %s", l.Memory, MinMemory)
	}
	if l.VolatileRecords < 1 || l.VolatileRecords > MaxVolatileRecords {
		v.fail("limits.volatile_records", "%d is out of range; use 1 to %d", l.VolatileRecords, MaxVolatileRecords)
	}
}

func (v *validator) clients(cs []Client) {
	seen := map[string]int{}
	for i, c := range cs {
		p := fmt.Sprintf("clients[%d]", i)
		switch {
		case c.Name == "":
			v.fail(p+".name", "missing; every client needs a name (what POST /login calls bank_coordinates)")
		case !clientNameRE.MatchString(c.Name):
			v.fail(p+".name", "%q: use 1 to 64 letters, digits, \".\", \"_\" or \"-\"", c.Name)
		default:
			if c.Name == proxy.AnonymousClient {
				v.fail(p+".name", "%q is reserved: the audit log names unauthenticated /handle callers so; choose another name", c.Name)
			} else if first, dup := seen[c.Name]; dup {
				v.fail(p+".name", "duplicate client %q (also clients[%d]); names must be unique", c.Name, first)
			} else {
				seen[c.Name] = i
			}
		}
		for _, b := range []struct {
			key string
			n   int
		}{{"handle_budget", c.HandleBudget}, {"reveal_budget", c.RevealBudget}} {
			if b.n < 0 || b.n > proxy.MaxBudget {
				v.fail(p+"."+b.key, "%d is out of range; use 1 to %d, or 0 for the budgets section's value", b.n, proxy.MaxBudget)
			}
		}
		// The hash is not echoed: it is not the secret, but it is an
		// offline-guessing target.
		switch cost, err := bcrypt.Cost([]byte(c.SecretHash)); {
		case c.SecretHash == "":
			v.fail(p+".secret_hash", "missing; generate one with \"tok secret hash\"")
		case err != nil:
			v.fail(p+".secret_hash", "not a bcrypt hash; generate one with \"tok secret hash\"")
		case cost < MinBcryptCost:
			v.fail(p+".secret_hash", "bcrypt cost %d is below %d; regenerate it with \"tok secret hash\"", cost, MinBcryptCost)
		}
	}
}

func (v *validator) budgets(b Budgets) {
	if b.Window < MinBudgetWindow || b.Window > MaxBudgetWindow {
		v.fail("budgets.window", "%s is out of range; use %s to %s", b.Window, MinBudgetWindow, MaxBudgetWindow)
	}
	for _, x := range []struct {
		key string
		n   int
	}{
		{"handle_anonymous", b.HandleAnonymous}, {"handle_client", b.HandleClient},
		{"inbound", b.Inbound}, {"reveal", b.Reveal},
	} {
		if x.n < 1 || x.n > proxy.MaxBudget {
			v.fail("budgets."+x.key, "%d is out of range; use 1 to %d values per window (%d turns it off in effect)", x.n, proxy.MaxBudget, proxy.MaxBudget)
		}
	}
	for i, p := range b.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			v.fail(fmt.Sprintf("budgets.trusted_proxies[%d]", i), "%q is not an address or a CIDR prefix, e.g. 10.0.0.0/8", p)
		}
	}
}

// knownMethods are the methods a route may name (RFC 9110, and PATCH).
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func (v *validator) session(s Session, l Lockout) {
	if s.Idle < 0 {
		v.fail("session.idle", "must be positive, e.g. 15m")
	}
	if s.Max < 0 {
		v.fail("session.max", "must be positive, e.g. 8h")
	}
	if s.Idle > MaxSessionIdle {
		v.fail("session.idle", "%s is too long; use at most %s (PCI DSS 8.2.8)", s.Idle, MaxSessionIdle)
	}
	if s.Max > MaxSessionMax {
		v.fail("session.max", "%s is too long; use at most %s", s.Max, MaxSessionMax)
	}
	if s.Idle > 0 && s.Max > 0 && s.Idle > s.Max {
		v.fail("session.idle", "%s is longer than session.max (%s); lower it", s.Idle, s.Max)
	}
	if l.Threshold < 1 || l.Threshold > MaxLockoutThreshold {
		v.fail("lockout.threshold", "%d is out of range; use 1 to %d (PCI DSS 8.3.4)", l.Threshold, MaxLockoutThreshold)
	}
	if l.Duration < MinLockoutDuration {
		v.fail("lockout.duration", "%s is too short; use at least %s (PCI DSS 8.3.4)", l.Duration, MinLockoutDuration)
	}
	if l.ClientThreshold < l.Threshold || l.ClientThreshold > MaxLockoutClientThreshold {
		v.fail("lockout.client_threshold", "%d is out of range; use lockout.threshold (%d) to %d", l.ClientThreshold, l.Threshold, MaxLockoutClientThreshold)
	}
	if l.SourceRate < 1 || l.SourceRate > MaxLockoutSourceRate {
		v.fail("lockout.source_rate", "%d is out of range; use 1 to %d login attempts per minute", l.SourceRate, MaxLockoutSourceRate)
	}
}

// upstreamURL checks an upstream URL. Egress upstreams must use https
// unless the host is loopback: card numbers leave tok there.
func (v *validator) upstreamURL(path, raw string, egress bool) {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "":
		v.fail(path, "%q is not an http or https URL with a host, e.g. https://api.example.com", raw)
	case u.User != nil:
		v.fail(path, "must not hold credentials; for egress, send them with headers: {Authorization: \"env:NAME\"}")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		v.fail(path, "must not have a query or fragment; remove what follows \"?\" or \"#\"")
	case egress && u.Scheme != "https" && !isLoopback(u.Hostname()):
		v.fail(path, "card numbers would cross the network in clear; use https (plain http only for a loopback host)")
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// route checks a route's name (unique across inbound and egress routes) and
// match (unique within its list, tracked in matches).
func (v *validator) route(path, name string, m Match, matches map[string]string) {
	switch {
	case name == "":
		v.fail(path+".name", "missing; every route needs a name (it labels metrics and logs)")
	case !routeNameRE.MatchString(name):
		v.fail(path+".name", "%q: use 1 to 64 letters, digits, \"_\" or \"-\"", name)
	default:
		if prev, dup := v.routes[name]; dup {
			v.fail(path+".name", "duplicate route name %q (also %s); names must be unique", name, prev)
		} else {
			v.routes[name] = path
		}
	}
	switch {
	case m.Method != "" && (!tokenRE.MatchString(m.Method) || strings.ToUpper(m.Method) != m.Method):
		v.fail(path+".match.method", "%q is not an HTTP method; write it in upper case, e.g. POST", m.Method)
	case m.Method != "" && !slices.Contains(knownMethods, m.Method):
		// A typo would make a route that never matches, its cards unguarded
		// by their fields.
		v.fail(path+".match.method", "%q is not a method tok knows; use one of %s", m.Method, strings.Join(knownMethods, ", "))
	}
	pathOK := v.matchPath(path+".match.path", m.Path)
	if pathOK {
		key := m.Method + " " + m.Host + m.Path
		if prev, dup := matches[key]; dup {
			what := "method and path"
			if m.Host != "" {
				what = "host, method and path"
			}
			v.fail(path+".match", "same %s as %s; merge the two routes", what, prev)
		} else {
			matches[key] = path
		}
	}
}

func (v *validator) matchPath(path, p string) bool {
	switch {
	case p == "":
		v.fail(path, "missing; write an exact path such as /checkout or a prefix such as /api/*")
	case p[0] != '/':
		v.fail(path, "%q must start with \"/\"", p)
	case strings.ContainsAny(p, "?# ") || strings.ContainsFunc(p, isControl):
		v.fail(path, "%q: a path has no query, fragment, space or control character", p)
	case strings.Contains(strings.TrimSuffix(p, "/*"), "*"):
		v.fail(path, "%q: \"*\" is only allowed as a final \"/*\" (a prefix match)", p)
	case hasDotSegment(p):
		v.fail(path, "%q: remove \".\" and \"..\" segments", p)
	default:
		return true
	}
	return false
}

func hasDotSegment(p string) bool {
	for s := range strings.SplitSeq(p, "/") {
		if s == "." || s == ".." {
			return true
		}
	}
	return false
}

func (v *validator) fields(route string, fs []Field) {
	seen := map[string]int{}
	for i, f := range fs {
		p := fmt.Sprintf("%s.fields[%d]", route, i)
		set := 0
		for _, sel := range []string{f.JSON, f.Form, f.XML} {
			if sel != "" {
				set++
			}
		}
		switch {
		case set > 1:
			v.fail(p, "set exactly one of json, form and xml; split it into several fields")
		case set == 0:
			v.fail(p, "set one of json (a dotted path such as card.number), form (a form key such as card[number]) or xml (an element path such as /transaction/credit-card/number)")
		case f.XML != "":
			if len(f.XML) > rewrite.MaxSelectorLen {
				v.fail(p+".xml", "longer than %d bytes", rewrite.MaxSelectorLen)
			} else if err := rewrite.ValidateXMLSelector(f.XML); err != nil {
				v.fail(p+".xml", "%v", err)
			}
		case f.JSON != "":
			if msg := checkJSONSelector(f.JSON); msg != "" {
				v.fail(p+".json", "%s", msg)
			} else if err := rewrite.ValidateJSONSelector(f.JSON); err != nil {
				v.fail(p+".json", "%v", err) // the proxy's own grammar, so startup never disagrees
			}
		default:
			if msg := checkFormSelector(f.Form); msg != "" {
				v.fail(p+".form", "%s", msg)
			} else if err := rewrite.ValidateFormSelector(f.Form); err != nil {
				v.fail(p+".form", "%v", err)
			}
		}
		if j, dup := seen[f.Selector()]; dup {
			v.fail(p, "same selector as fields[%d]; remove one", j)
		} else {
			seen[f.Selector()] = i
		}
		if f.Keep != nil {
			if f.Format != vault.FormatPAN {
				v.fail(p+".keep", "only pan tokens keep digits; remove keep or use format: pan")
			}
			if k := f.Keep.First; k != nil && (*k < 0 || *k > MaxKeepFirst) {
				v.fail(p+".keep.first", "%d is out of range; keep 0 to %d leading digits", *k, MaxKeepFirst)
			}
			if k := f.Keep.Last; k != nil && (*k < 0 || *k > MaxKeepLast) {
				v.fail(p+".keep.last", "%d is out of range; keep 0 to %d trailing digits", *k, MaxKeepLast)
			}
		}
		if f.Store == StoreMemory {
			if f.TTL <= 0 {
				v.fail(p+".ttl", "store: memory needs a ttl, e.g. ttl: 15m (a volatile value must expire)")
			}
			if f.TTL > MaxVolatileTTL {
				v.fail(p+".ttl", "%s is too long for a value held in memory; use at most %s (a CVC is needed until authorization)", f.TTL, MaxVolatileTTL)
			}
		}
		if f.TTL < 0 {
			v.fail(p+".ttl", "must be positive, e.g. 15m")
		}
	}
}

// binds checks each field's bind: it names another, unbound field of the
// route with the same kind of selector; inbound, the bound field is a
// digits value held in memory (a CVC).
func (v *validator) binds(route string, fs []Field, inbound bool) {
	for i, f := range fs {
		if f.Bind == "" {
			continue
		}
		p := fmt.Sprintf("%s.fields[%d].bind", route, i)
		kind, example := "json", "card.number"
		switch {
		case f.Form != "":
			kind, example = "form", "card[number]"
		case f.XML != "":
			kind, example = "xml", "/transaction/credit-card/number"
		}
		j := slices.IndexFunc(fs, func(g Field) bool {
			return f.JSON != "" && g.JSON == f.Bind || f.Form != "" && g.Form == f.Bind || f.XML != "" && g.XML == f.Bind
		})
		switch {
		case j < 0:
			v.fail(p, "%q names no %s field of this route; name the card field this value is collected with, e.g. bind: %s", f.Bind, kind, example)
		case j == i:
			v.fail(p, "a field cannot be bound to itself; name the route's card field, e.g. bind: %s", example)
		case fs[j].Bind != "":
			v.fail(p, "%q is bound itself; bind to the card field it is bound to", f.Bind)
		}
		if inbound && (f.Format != vault.FormatDigits || f.Store != StoreMemory) {
			v.fail(p, "bind is for short values held in memory, such as a CVC: set format: digits and store: memory with a ttl")
		}
	}
}

// checkJSONSelector returns what is wrong with a json selector, or "". The
// grammar: segments separated by ".", each "#" (every element of an array)
// or one or more of A-Z a-z 0-9 _ $ @ - and escaped characters: a key
// holding ". [ ] #" or a backslash spells it with a backslash before it
// (order\.id names the key "order.id"). A numeric segment is an
// array index or an object key, as gjson reads it.
func checkJSONSelector(s string) string {
	if len(s) > rewrite.MaxSelectorLen {
		return fmt.Sprintf("longer than %d bytes", rewrite.MaxSelectorLen)
	}
	for i, seg := range splitUnescaped(s) {
		if seg == "" {
			return fmt.Sprintf("%q has an empty segment (segment %d); write dotted keys such as card.number", s, i+1)
		}
		if !jsonSegRE.MatchString(seg) {
			return fmt.Sprintf("%q: segment %q may hold only letters, digits, _ $ @ - or be \"#\" (every array element); write . [ ] # or a backslash in a key as \\. \\[ \\] \\# \\\\", s, seg)
		}
	}
	return ""
}

// splitUnescaped splits s at each "." that no backslash escapes.
func splitUnescaped(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '.':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// checkFormSelector returns what is wrong with a form key, or "". The
// bracket grammar (name[a][b], "#" for any index) is the proxy's:
// rewrite.ValidateFormSelector.
func checkFormSelector(s string) string {
	switch {
	case len(s) > rewrite.MaxSelectorLen:
		return fmt.Sprintf("longer than %d bytes", rewrite.MaxSelectorLen)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.ContainsFunc(s, isControl):
		return "contains a control character"
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

func (v *validator) guard(g Guard) {
	for i, h := range g.IgnoreHeaders {
		if h == "" || strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == ':' || r >= 0x7f }) {
			v.fail(fmt.Sprintf("guard.ignore_headers[%d]", i), "%q is not a header name", h)
		}
	}
	for i, s := range g.Ignore {
		v.ignore(fmt.Sprintf("guard.ignore[%d]", i), s, "order.id")
	}
}

// ignore checks one guard exemption: a JSON field path, or an XML element
// path (starting with "/", optionally ending in "/@attribute").
func (v *validator) ignore(p, s, example string) {
	switch {
	case s == "":
		v.fail(p, "empty; write a JSON field path such as %s or an XML element path such as /transaction/id", example)
	case rewrite.IsXMLSelector(s):
		if err := rewrite.ValidateXMLIgnore(s); err != nil {
			v.fail(p, "%v", err)
		}
	default:
		if msg := checkJSONSelector(s); msg != "" {
			v.fail(p, "%s", msg)
		} else if err := rewrite.ValidateJSONSelector(s); err != nil {
			v.fail(p, "%v", err)
		}
	}
}

func (v *validator) egress(p string, r EgressRoute, matches map[string]string) {
	v.route(p, r.Name, r.Match, matches)
	if h := r.Match.Host; h != "" && !hostNameRE.MatchString(h) {
		v.fail(p+".match.host", "%q is not a host name; write the lower-case name the app calls, without a port, e.g. stripe.egress.internal", h)
	}
	if r.Timeout < MinEgressTimeout || r.Timeout > MaxEgressTimeout {
		v.fail(p+".timeout", "%s is out of range; use %s to %s (default %s, longer than the SDKs' own)", r.Timeout, MinEgressTimeout, MaxEgressTimeout, proxy.DefaultEgressTimeout)
	}
	for i, s := range r.ResponseIgnore {
		v.ignore(fmt.Sprintf("%s.response_ignore[%d]", p, i), s, "payment_method_details.card.network_transaction_id")
	}
	v.responseCards(p+".response_cards", r.ResponseCards)
	v.egressKeyHeader(p, r)
	if r.Guard != nil && *r.Guard != rewrite.GuardReject && *r.Guard != rewrite.GuardReport {
		v.fail(p+".guard", "an egress route's guard is reject or report; egress never tokenizes or lets cards through unrecorded")
	}
	if r.Upstream == "" {
		v.fail(p+".upstream", "missing; write the payment provider's base URL, e.g. https://api.psp.example")
	} else {
		v.upstreamURL(p+".upstream", r.Upstream, true)
	}
	if r.StripPrefix != "" {
		switch {
		case r.StripPrefix[0] != '/' || (len(r.StripPrefix) > 1 && strings.HasSuffix(r.StripPrefix, "/")):
			v.fail(p+".strip_prefix", "%q: start with \"/\" and do not end with \"/\", e.g. /psp", r.StripPrefix)
		case !strings.HasPrefix(r.Match.Path, r.StripPrefix):
			v.fail(p+".strip_prefix", "%q is not a prefix of match.path %q; every matched path must start with it", r.StripPrefix, r.Match.Path)
		}
	}
	if r.CAFile != "" {
		if _, err := os.Stat(r.CAFile); err != nil {
			v.fail(p+".ca_file", "cannot read %q: %v", r.CAFile, unwrapPathError(err))
		}
	}
	v.fields(p, r.Fields)
	v.binds(p, r.Fields, false)
	for i, f := range r.Fields {
		if f.hasPolicy() {
			v.fail(fmt.Sprintf("%s.fields[%d]", p, i), "reveal_to, max_reveals and reveal_window belong on the inbound field that makes the tokens, where they are sealed into each token; remove them here")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(r.Headers)) {
		val := r.Headers[name]
		hp := p + ".headers." + name
		switch {
		case !tokenRE.MatchString(name):
			v.fail(hp, "%q is not a header name", name)
		case isHopOrFraming(name):
			v.fail(hp, "tok sets %s itself; remove it", http.CanonicalHeaderKey(name))
		}
		if ref, ok := strings.CutPrefix(val, "env:"); ok {
			if !envNameRE.MatchString(ref) {
				v.fail(hp, "%q is not an environment variable name", ref)
			}
		} else if _, err := EnvRefs(val); err != nil {
			v.fail(hp, "%v", err)
		} else if strings.ContainsFunc(val, isControl) {
			v.fail(hp, "the value contains a control character")
		}
	}
	if r.EgressKey != "" {
		ref, ok := strings.CutPrefix(r.EgressKey, "env:")
		if !ok || !envNameRE.MatchString(ref) {
			v.fail(p+".egress_key", "write env:NAME (the key is read from the environment, never from this file)")
		}
	}
}

// responseCards checks egress[].response_cards against the guard's own
// network table: every bad item is reported at its line.
func (v *validator) responseCards(p string, rc *ResponseCards) {
	if rc == nil {
		return
	}
	for i, n := range rc.Networks {
		if err := rewrite.CheckNetwork(n); err != nil {
			v.fail(fmt.Sprintf("%s.networks[%d]", p, i), "%v", err)
		}
	}
	for i, s := range rc.Prefixes {
		if _, _, err := rewrite.ParsePrefixRange(s); err != nil {
			v.fail(fmt.Sprintf("%s.prefixes[%d]", p, i), "%v", err)
		}
	}
	for i, l := range rc.Lengths {
		if err := rewrite.CheckCardLength(l); err != nil {
			v.fail(fmt.Sprintf("%s.lengths[%d]", p, i), "%v", err)
		}
	}
}

// egressKeyHeader checks egress[].egress_key_header: a keyword or a header
// name tok may remove, on a route that has a key; the Authorization
// keywords need the provider's own Authorization in headers, which takes
// the app's place.
func (v *validator) egressKeyHeader(p string, r EgressRoute) {
	h := r.EgressKeyHeader
	if strings.EqualFold(h, proxy.EgressKeyHeader) {
		return
	}
	hp := p + ".egress_key_header"
	switch {
	case h == proxy.EgressKeyBearer || h == proxy.EgressKeyBasic:
		if !slices.ContainsFunc(slices.Collect(maps.Keys(r.Headers)), func(k string) bool { return strings.EqualFold(k, "Authorization") }) {
			v.fail(hp, "%s replaces the app's Authorization: set headers.Authorization to the provider's secret, e.g. \"Bearer {env:STRIPE_SECRET}\"", h)
		}
	case strings.HasPrefix(strings.ToLower(h), "authorization-"):
		v.fail(hp, "%q: use %s, %s or a header name", h, proxy.EgressKeyBearer, proxy.EgressKeyBasic)
	case !tokenRE.MatchString(h):
		v.fail(hp, "%q is not a header name; use %s, %s or a header name", h, proxy.EgressKeyBearer, proxy.EgressKeyBasic)
	case isHopOrFraming(h) || strings.EqualFold(h, "Proxy-Authorization"):
		v.fail(hp, "tok cannot take the key from %s; choose another header", http.CanonicalHeaderKey(h))
	}
	if r.EgressKey == "" {
		v.fail(hp, "the route has no egress_key to check there; set egress_key: env:NAME")
	}
}

func isHopOrFraming(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer",
		"Keep-Alive", "Proxy-Connection", "Content-Encoding", "X-Tok-Egress-Key":
		return true
	}
	return false
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (v *validator) tls(t TLS) {
	if c := t.EgressCA; c != nil {
		if c.CertFile == "" || c.KeyFile == "" {
			v.fail("tls.egress_ca", "set both cert_file and key_file (tok ca new -o DIR writes them)")
		}
		for _, f := range []struct{ key, path string }{{"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				v.fail("tls.egress_ca."+f.key, "cannot read %q: %v", f.path, errorsCause(err))
			}
		}
	}
	for _, l := range []struct {
		key string
		t   *ListenerTLS
	}{{"public", t.Public}, {"auth", t.Auth}, {"admin", t.Admin}, {"egress", t.Egress}} {
		if l.t == nil {
			continue
		}
		p := "tls." + l.key
		if l.t.CertFile == "" || l.t.KeyFile == "" {
			v.fail(p, "set both cert_file and key_file (PEM files)")
		}
		for _, f := range []struct{ key, path string }{{"cert_file", l.t.CertFile}, {"key_file", l.t.KeyFile}, {"client_ca_file", l.t.ClientCAFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				v.fail(p+"."+f.key, "cannot read %q: %v", f.path, errorsCause(err))
			}
		}
		if l.key != "auth" && (l.t.ClientCAFile != "" || l.t.ClientAuth != "") {
			v.fail(p, "client_ca_file and client_auth apply to the auth listener only")
		}
		if m := l.t.ClientAuth; (m == proxy.ClientAuthCertificate || m == proxy.ClientAuthBoth) && l.t.ClientCAFile == "" {
			v.fail(p+".client_auth", "%s needs client_ca_file: the CA that signs client certificates", m)
		}
	}
}

// errorsCause is the innermost error text (os.PathError's, without the path).
func errorsCause(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// isCard reports whether f holds a card number: not a value bound to a
// card nor a volatile one (a CVC).
func (f Field) isCard() bool { return f.Bind == "" && f.Store != StoreMemory }
