package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// testHash is a bcrypt hash (cost 10) of "s3cret"; weakHash has cost 4.
const (
	testHash = "$2a$10$xA1L4Xkb9OhRbsVxTWABbOmld8o0CVUvFOtKKbubpYMnd1GZA43j."
	weakHash = "$2a$04$0JQK4DiG/uXn/swzc.b5qeR25CapHVKRmdrMCJMNrGhUtYBbRM/qu"
)

// full is a valid config using every key.
const full = `
listen: {public: ":18080", auth: "127.0.0.1:15000", admin: "off", egress: "127.0.0.1:18081"}
vault:
  postgres: "postgres://tok@127.0.0.1:5432/tok?sslmode=disable"
  keyring: /etc/tok/keyring.yaml
limits: {max_body: 512KiB, max_depth: 32}
clients:
  - name: cih
    secret_hash: "` + testHash + `"
    reveal: true
  - name: shop
    secret_hash: "` + testHash + `"
audit: {path: "-"}
session: {idle: 5m, max: 1h}
lockout: {threshold: 5, duration: 1h}
upstream: http://127.0.0.1:3000
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
        keep: {first: 8, last: 0}
      - json: card.cvc
        format: digits
        store: memory
        ttl: 15m
      - json: items.#.card.number
        format: opaque
        unique: true
      - form: card[number]
guard: {mode: tokenize, ignore: [order.id]}
egress:
  - name: psp
    match: {method: POST, path: /psp/*}
    upstream: https://api.psp.example
    strip_prefix: /psp
    fields:
      - form: card[number]
    headers: {Authorization: "env:PSP_API_KEY", Stripe-Version: "2024-06-20"}
    egress_key: env:TOK_EGRESS_KEY
  - name: local-psp
    match: {path: /local/*}
    upstream: http://127.0.0.1:4000
`

func TestParseFull(t *testing.T) {
	c, err := Parse([]byte(full), "tok.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Listen.Admin != "" || c.Listen.Public != ":18080" {
		t.Errorf("Listen = %+v, want admin off and public :18080", c.Listen)
	}
	if c.Vault.Bolt != "" || !strings.HasPrefix(c.Vault.Postgres, "postgres://") {
		t.Errorf("Vault = %+v, want postgres only", c.Vault)
	}
	if c.Limits.MaxBody != 512*KiB || c.Limits.MaxDepth != 32 {
		t.Errorf("Limits = %+v", c.Limits)
	}
	if len(c.Clients) != 2 || !c.Clients[0].Reveal || c.Clients[1].Reveal {
		t.Errorf("Clients = %+v", c.Clients)
	}
	if c.Session.Idle != 5*time.Minute || c.Lockout.Threshold != 5 {
		t.Errorf("Session = %+v, Lockout = %+v", c.Session, c.Lockout)
	}
	f := c.Inbound[0].Fields
	if f[0].Format != vault.FormatPAN || f[0].Store != StoreDisk || f[1].Store != StoreMemory || f[3].Form != "card[number]" {
		t.Errorf("Inbound fields = %+v", f)
	}
	if got := c.Egress[0].Headers["Authorization"]; got != "env:PSP_API_KEY" {
		t.Errorf("Egress headers = %v", c.Egress[0].Headers)
	}
	if c.Guard.Mode != rewrite.GuardTokenize || !reflect.DeepEqual(c.Guard.Ignore, []string{"order.id"}) {
		t.Errorf("Guard = %+v", c.Guard)
	}
}

func TestDefaults(t *testing.T) {
	want := Config{
		Listen: Listen{Public: DefaultPublicAddr, Auth: DefaultAuthAddr, Admin: DefaultAdminAddr, Egress: DefaultEgressAddr},
		Vault:  Vault{Bolt: DefaultBoltPath, Keyring: DefaultKeyringPath, CommitTimeout: proxy.DefaultCommitTimeout},
		Limits: Limits{MaxBody: proxy.DefaultMaxBody, MaxDepth: rewrite.DefaultMaxDepth, MaxInFlight: proxy.DefaultMaxInFlight,
			Memory: DefaultMemory, VolatileRecords: DefaultVolatileRecords},
		Audit:   Audit{Path: DefaultAuditPath},
		Session: Session{Idle: proxy.DefaultSessionIdle, Max: proxy.DefaultSessionMax},
		Lockout: Lockout{Threshold: proxy.DefaultLockoutThreshold, Duration: proxy.DefaultLockoutDuration,
			ClientThreshold: proxy.DefaultLockoutClientThreshold, SourceRate: proxy.DefaultLoginSourceRate},
		Budgets: Budgets{Window: proxy.DefaultBudgetWindow, HandleAnonymous: proxy.DefaultHandleAnonymousBudget,
			HandleClient: proxy.DefaultHandleClientBudget, Inbound: proxy.DefaultInboundBudget, Reveal: proxy.DefaultRevealBudget},
		Guard: Guard{Mode: rewrite.GuardReject, IgnoreHeaders: DefaultIgnoreHeaders, ReportThen: proxy.ReportForward},
	}
	for _, tc := range []struct{ name, yaml string }{
		{"empty file", ""},
		{"comments only", "# nothing here\n"},
		{"empty sections", "listen: {}\nvault: {}\nlimits:\nsession: {}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml), "tok.yaml")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("Parse(%q) =\n%+v\nwant\n%+v", tc.yaml, *c, want)
			}
		})
	}
}

// TestEmbeddedDefault is the golden test of default.yaml: it parses, it
// holds exactly the named default constants, and it documents every key.
func TestEmbeddedDefault(t *testing.T) {
	got, err := Parse(defaultYAML, "default.yaml")
	if err != nil {
		t.Fatalf("embedded default.yaml: %v", err)
	}
	empty, _ := Parse(nil, "empty")
	// default.yaml spells out empty lists; an empty file leaves them nil.
	got.Clients, got.Inbound, got.Egress, got.Guard.Ignore, got.Budgets.TrustedProxies = nil, nil, nil, nil, nil
	if !reflect.DeepEqual(got, empty) {
		t.Errorf("default.yaml =\n%+v\nwant the default constants\n%+v", *got, *empty)
	}
	if !reflect.DeepEqual(Default(), func() *Config { c, _ := Parse(defaultYAML, "x"); return c }()) {
		t.Error("Default() differs from parsing default.yaml")
	}
	// Every key of the schema appears in default.yaml (live or commented).
	text := string(defaultYAML)
	var walk func(reflect.Type, string)
	walk = func(tp reflect.Type, path string) {
		for tp.Kind() == reflect.Pointer || tp.Kind() == reflect.Slice {
			tp = tp.Elem()
		}
		if tp.Kind() != reflect.Struct || tp == durationType {
			return
		}
		for i := range tp.NumField() {
			name, _, _ := strings.Cut(tp.Field(i).Tag.Get("yaml"), ",")
			if !strings.Contains(text, name+":") {
				t.Errorf("default.yaml does not document %s", join(path, name))
			}
			walk(tp.Field(i).Type, join(path, name))
		}
	}
	walk(reflect.TypeFor[Config](), "")
}

// want is one expected problem: its line, key path and a part of its message.
type want struct {
	line int
	path string
	msg  string
}

func checkProblems(t *testing.T, src string, wants []want) {
	t.Helper()
	_, err := Parse([]byte(src), "tok.yaml")
	if len(wants) == 0 {
		if err != nil {
			t.Fatalf("Parse: unexpected error:\n%v", err)
		}
		return
	}
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Parse error = %v, want *Error", err)
	}
	ps := cerr.Problems
	for _, w := range wants {
		found := false
		for _, p := range ps {
			if p.Line == w.line && p.Path == w.path && strings.Contains(p.Msg, w.msg) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("missing problem tok.yaml:%d: %s: ...%s...", w.line, w.path, w.msg)
		}
	}
	if len(ps) != len(wants) {
		t.Errorf("got %d problems, want %d:\n%v", len(ps), len(wants), err)
	}
	for _, p := range ps {
		if p.File != "tok.yaml" {
			t.Errorf("problem %v: File = %q, want tok.yaml", p, p.File)
		}
	}
}

func TestValidation(t *testing.T) {
	const up = "upstream: http://127.0.0.1:3000\n"
	route := func(fields string) string {
		return up + "inbound:\n  - name: r\n    match: {path: /x}\n    fields:\n" + fields
	}
	const stripeEgress = "egress:\n  - name: stripe\n    match: {path: /s/*}\n    upstream: https://api.stripe.com\n"
	tests := []struct {
		name string
		yaml string
		want []want
	}{
		{"listen not host:port", `listen: {public: "8080"}`, []want{{1, "listen.public", `write e.g. "127.0.0.1:8080"`}}},
		{"listen bad port", `listen: {auth: "127.0.0.1:http"}`, []want{{1, "listen.auth", "port"}}},
		{"listen same address", "listen:\n  auth: \":9000\"\n  admin: \":9000\"\n", []want{{3, "listen.admin", "same address as listen.auth"}}},
		{"listen all off", "listen: {public: off, auth: off, admin: off}", []want{{1, "listen", "every listener is off"}}},
		{"bolt and postgres", "vault:\n  bolt: a.db\n  postgres: postgres://h/db\n", []want{{3, "vault.postgres", "exactly one"}}},
		{"postgres not a url", "vault: {postgres: \"mysql://h/db\"}", []want{{1, "vault.postgres", "not a postgres:// URL"}}},
		{"postgres password", "vault: {postgres: \"postgres://u:pw@h/db\"}", []want{{1, "vault.postgres", "TOK_POSTGRES_URL"}}},
		{"volatile not a url", "vault: {volatile: \"memcached://h\"}", []want{{1, "vault.volatile", "not a redis:// URL"}}},
		{"volatile password", "vault:\n  volatile: \"redis://:pw@h:6379/0\"\n", []want{{2, "vault.volatile", "TOK_REDIS_PASSWORD"}}},
		{"volatile ca without tls", "vault:\n  volatile: redis://h:6379/0\n  volatile_ca: ca.pem\n", []want{{3, "vault.volatile_ca", "rediss://"}}},
		{"volatile ca alone", "vault:\n  volatile_ca: ca.pem\n", []want{{2, "vault.volatile_ca", "without vault.volatile"}}},
		{"max_body too small", "limits: {max_body: 100}", []want{{1, "limits.max_body", "use 1KiB to 64MiB"}}},
		{"max_body too large", "limits:\n  max_body: 1GiB\n", []want{{2, "limits.max_body", "out of range"}}},
		{"max_body lower bound ok", "limits: {max_body: 1KiB}\n", nil},
		{"two documents", "limits: {max_body: 64MiB}\n---\nlisten: {}\n", []want{{2, "", "only one YAML document"}}},
		{"max_depth", "limits: {max_depth: -1}", []want{{1, "limits.max_depth", "use 1 to 1000"}}},
		{"max_in_flight", "limits:\n  max_in_flight: -3\n", []want{{2, "limits.max_in_flight", "use 1 to 100000"}}},
		{"memory too small", "limits: {memory: 1MiB}", []want{{1, "limits.memory", "use at least 16MiB"}}},
		{"memory not a size", "limits: {memory: lots}", []want{{1, "limits.memory", "not a size"}}},
		{"volatile_records", "limits: {volatile_records: -1}", []want{{1, "limits.volatile_records", "use 1 to 100000000"}}},
		{"limits set", "limits: {max_in_flight: 64, memory: 256MiB, volatile_records: 5000}", nil},
		{"client without name", "clients:\n  - secret_hash: \"" + testHash + "\"\n", []want{{2, "clients[0].name", "missing"}}},
		{"client bad name", "clients:\n  - name: \"a b\"\n    secret_hash: \"" + testHash + "\"\n", []want{{2, "clients[0].name", "letters, digits"}}},
		{"client duplicate", "clients:\n  - name: cih\n    secret_hash: \"" + testHash + "\"\n  - name: cih\n    secret_hash: \"" + testHash + "\"\n",
			[]want{{4, "clients[1].name", `duplicate client "cih" (also clients[0])`}}},
		{"client not bcrypt", "clients:\n  - name: cih\n    secret_hash: \"$2a$12$nope\"\n", []want{{3, "clients[0].secret_hash", `not a bcrypt hash; generate one with "tok secret hash"`}}},
		{"client weak bcrypt", "clients:\n  - name: cih\n    secret_hash: \"" + weakHash + "\"\n", []want{{3, "clients[0].secret_hash", "cost 4 is below 10"}}},
		{"client no hash", "clients:\n  - name: cih\n", []want{{2, "clients[0].secret_hash", "missing"}}},
		{"session idle > max", "session: {idle: 10m, max: 5m}", []want{{1, "session.idle", "longer than session.max"}}},
		{"session idle too long", "session: {idle: 1h}", []want{{1, "session.idle", "at most 15m0s"}}},
		{"session max too long", "session: {max: 8760h}", []want{{1, "session.max", "at most 8h0m0s"}}},
		{"tls without key", "tls:\n  public: {cert_file: config_test.go}\n", []want{{2, "tls.public", "set both cert_file and key_file"}}},
		{"tls missing file", "tls:\n  admin: {cert_file: config_test.go, key_file: /nonexistent/k.pem}\n", []want{{2, "tls.admin.key_file", "cannot read"}}},
		{"tls client CA off auth", "tls:\n  public: {cert_file: config_test.go, key_file: config_test.go, client_ca_file: config_test.go}\n", []want{{2, "tls.public", "auth listener only"}}},
		{"tls certificate mode needs CA", "tls:\n  auth:\n    cert_file: config_test.go\n    key_file: config_test.go\n    client_auth: certificate\n", []want{{5, "tls.auth.client_auth", "needs client_ca_file"}}},
		{"tls bad mode", "tls:\n  auth: {cert_file: config_test.go, key_file: config_test.go, client_auth: maybe}\n", []want{{2, "tls.auth.client_auth", "want session, certificate or both"}}},
		{"session negative", "session:\n  max: -1h\n", []want{{2, "session.max", "positive"}}},
		{"lockout client_threshold below threshold", "lockout: {threshold: 5, client_threshold: 4}", []want{{1, "lockout.client_threshold", "use lockout.threshold (5) to 10000"}}},
		{"lockout source_rate", "lockout:\n  source_rate: -1\n", []want{{2, "lockout.source_rate", "use 1 to 100000"}}},
		{"lockout set", "lockout: {threshold: 3, client_threshold: 3, source_rate: 5}", nil},
		{"commit_timeout too short", "vault: {commit_timeout: 1ms}", []want{{1, "vault.commit_timeout", "use 100ms to 50s"}}},
		{"commit_timeout too long", "vault:\n  commit_timeout: 2m\n", []want{{2, "vault.commit_timeout", "below the listeners' 60s write timeout"}}},
		{"lockout looser than PCI", "lockout:\n  threshold: 11\n  duration: 5m\n", []want{{2, "lockout.threshold", "1 to 10"}, {3, "lockout.duration", "at least 30m"}}},
		{"budgets window", "budgets: {window: 10s}", []want{{1, "budgets.window", "use 1m0s to 24h0m0s"}}},
		{"budgets out of range", "budgets:\n  handle_client: -1\n  reveal: 2000000000\n",
			[]want{{2, "budgets.handle_client", "use 1 to 1000000000"}, {3, "budgets.reveal", "use 1 to 1000000000"}}},
		{"budgets set", "budgets: {window: 10m, handle_anonymous: 5, handle_client: 50, inbound: 500, reveal: 5}", nil},
		{"client budgets", "clients:\n  - name: cih\n    secret_hash: \"" + testHash + "\"\n    handle_budget: -5\n    reveal_budget: 10\n",
			[]want{{4, "clients[0].handle_budget", "or 0 for the budgets section's value"}}},
		{"client reserved name", "clients:\n  - name: anonymous\n    secret_hash: \"" + testHash + "\"\n", []want{{2, "clients[0].name", "reserved"}}},
		{"upstream scheme", "upstream: ftp://h", []want{{1, "upstream", "not an http or https URL"}}},
		{"upstream no host", "upstream: http://", []want{{1, "upstream", "with a host"}}},
		{"upstream query", "upstream: http://h/?a=1", []want{{1, "upstream", "query or fragment"}}},
		{"upstream fragment", "upstream: http://h/#x", []want{{1, "upstream", "query or fragment"}}},
		{"upstream credentials", "upstream: http://u:p@h/", []want{{1, "upstream", "credentials"}}},
		{"inbound without upstream", "inbound:\n  - name: r\n    match: {path: /x}\n    fields: [{json: a}]\n", []want{{1, "inbound", "need an upstream"}}},
		{"route without name", up + "inbound:\n  - match: {path: /x}\n    fields: [{json: a}]\n", []want{{3, "inbound[0].name", "missing"}}},
		{"route bad name", up + "inbound:\n  - name: a.b\n    match: {path: /x}\n    fields: [{json: a}]\n", []want{{3, "inbound[0].name", "letters, digits"}}},
		{"route names unique", up + "inbound:\n  - name: r\n    match: {path: /x}\n    fields: [{json: a}]\n  - name: r\n    match: {path: /y}\n    fields: [{json: a}]\n",
			[]want{{6, "inbound[1].name", `duplicate route name "r" (also inbound[0])`}}},
		{"route names unique across inbound and egress", up + "inbound:\n  - name: r\n    match: {path: /x}\n    fields: [{json: a}]\negress:\n  - name: r\n    match: {path: /x}\n    upstream: https://h\n",
			[]want{{7, "egress[0].name", "also inbound[0]"}}},
		{"route same match", up + "inbound:\n  - name: a\n    match: {method: POST, path: /x}\n    fields: [{json: a}]\n  - name: b\n    match: {method: POST, path: /x}\n    fields: [{json: a}]\n",
			[]want{{7, "inbound[1].match", "same method and path as inbound[0]"}}},
		{"route method lower case", up + "inbound:\n  - name: a\n    match: {method: post, path: /x}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.method", "upper case"}}},
		{"route path missing", up + "inbound:\n  - name: a\n    match: {method: POST}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.path", "missing; write an exact path"}}},
		{"route path relative", up + "inbound:\n  - name: a\n    match: {path: x}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.path", `start with "/"`}}},
		{"route path inner star", up + "inbound:\n  - name: a\n    match: {path: /a/*/b}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.path", `final "/*"`}}},
		{"route path query", up + "inbound:\n  - name: a\n    match: {path: \"/a?b\"}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.path", "no query"}}},
		{"route path dots", up + "inbound:\n  - name: a\n    match: {path: /a/../b}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.path", `".."`}}},
		{"route prefix ok", route("      - json: a\n") + "  - name: b\n    match: {path: /api/*}\n    fields: [{form: a}]\n", nil},
		{"route without fields", up + "inbound:\n  - name: a\n    match: {path: /x}\n", []want{{3, "inbound[0].fields", "at least one field"}}},
		{"field json and form", route("      - json: a\n        form: b\n"), []want{{6, "inbound[0].fields[0]", "exactly one of json, form and xml"}}},
		{"field neither", route("      - format: pan\n"), []want{{6, "inbound[0].fields[0]", "set one of json"}}},
		{"json empty segment", route("      - json: card..number\n"), []want{{6, "inbound[0].fields[0].json", "empty segment"}}},
		{"json leading dot", route("      - json: .a\n"), []want{{6, "inbound[0].fields[0].json", "empty segment"}}},
		{"json trailing dot", route("      - json: a.\n"), []want{{6, "inbound[0].fields[0].json", "empty segment"}}},
		{"json bad char", route("      - json: \"card.num*\"\n"), []want{{6, "inbound[0].fields[0].json", `segment "num*"`}}},
		{"json gjson modifier", route("      - json: \"a|@reverse\"\n"), []want{{6, "inbound[0].fields[0].json", "may hold only"}}},
		{"json ok", route("      - json: \"items.#.card_no.$x.@y.a-b.0\"\n"), nil},
		{"json too long", route("      - json: " + strings.Repeat("a", 257) + "\n"), []want{{6, "inbound[0].fields[0].json", "longer than 256"}}},
		{"form control char", route("      - form: \"a\\tb\"\n"), []want{{6, "inbound[0].fields[0].form", "control character"}}},
		{"form too long", route("      - form: " + strings.Repeat("a", 257) + "\n"), []want{{6, "inbound[0].fields[0].form", "longer than 256"}}},
		{"form ok", route("      - form: \"card[number]\"\n      - form: \"items[#][pan]\"\n"), nil},
		{"form brackets", route("      - form: \"card[number\"\n"), []want{{6, "inbound[0].fields[0].form", "malformed brackets"}}},
		{"json too many segments", route("      - json: " + strings.Repeat("a.", 32) + "a\n"), []want{{6, "inbound[0].fields[0].json", "more than 32 segments"}}},
		{"guard ignore not json", "guard:\n  ignore: [\"order[id]\"]\n", []want{{2, "guard.ignore[0]", "may hold only"}}},
		{"duplicate selector", route("      - json: a\n      - json: a\n"), []want{{7, "inbound[0].fields[1]", "same selector as fields[0]"}}},
		{"format unknown", route("      - json: a\n        format: card\n"), []want{{7, "inbound[0].fields[0].format", "use pan, digits or opaque"}}},
		{"keep only with pan", route("      - json: a\n        format: digits\n        keep: {first: 0}\n"), []want{{8, "inbound[0].fields[0].keep", "only pan tokens keep digits"}}},
		{"keep range", route("      - json: a\n        keep: {first: 9, last: 5}\n"), []want{{7, "inbound[0].fields[0].keep.first", "0 to 8"}, {7, "inbound[0].fields[0].keep.last", "0 to 4"}}},
		{"memory needs ttl", route("      - json: a\n        store: memory\n"), []want{{6, "inbound[0].fields[0].ttl", "needs a ttl"}}},
		{"unknown method", up + "inbound:\n  - name: r\n    match: {method: POTS, path: /x}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.method", "not a method tok knows"}}},
		{"memory ttl too long", route("      - json: a\n        store: memory\n        ttl: 87600h\n"), []want{{8, "inbound[0].fields[0].ttl", "at most 24h0m0s"}}},
		{"store unknown", route("      - json: a\n        store: ssd\n"), []want{{7, "inbound[0].fields[0].store", "use disk or memory"}}},
		{"ttl negative", route("      - json: a\n        ttl: -1m\n"), []want{{7, "inbound[0].fields[0].ttl", "positive"}}},
		{"bind ok", route("      - json: card.number\n      - json: card.cvc\n        format: digits\n        store: memory\n        ttl: 15m\n        bind: card.number\n"), nil},
		{"bind no such field", route("      - json: card.cvc\n        format: digits\n        store: memory\n        ttl: 15m\n        bind: card.number\n"),
			[]want{{10, "inbound[0].fields[0].bind", "names no json field of this route"}}},
		{"bind other kind", route("      - form: card[number]\n      - json: card.cvc\n        format: digits\n        store: memory\n        ttl: 15m\n        bind: card[number]\n"),
			[]want{{11, "inbound[0].fields[1].bind", "names no json field"}}},
		{"bind itself", route("      - json: card.cvc\n        format: digits\n        store: memory\n        ttl: 15m\n        bind: card.cvc\n"),
			[]want{{10, "inbound[0].fields[0].bind", "bound to itself"}}},
		{"bind on disk", route("      - json: card.number\n      - json: card.cvc\n        format: digits\n        bind: card.number\n"),
			[]want{{9, "inbound[0].fields[1].bind", "set format: digits and store: memory"}}},
		{"bind chain", route("      - json: a\n      - {json: b, format: digits, store: memory, ttl: 1m, bind: a}\n      - {json: c, format: digits, store: memory, ttl: 1m, bind: b}\n"),
			[]want{{8, "inbound[0].fields[2].bind", `"b" is bound itself`}}},
		{"egress bind", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    fields:\n      - form: card[cvc]\n        bind: card[number]\n",
			[]want{{7, "egress[0].fields[0].bind", "names no form field"}}},
		{"reveal policy ok", route("      - json: card.number\n        unique: true\n        reveal_to: [stripe, \"@me\"]\n        max_reveals: 3\n        reveal_window: 24h\n      - json: card.cvc\n        format: digits\n        store: memory\n        ttl: 15m\n        bind: card.number\n      - json: iban\n        format: digits\n        store: memory\n        ttl: 15m\n        reveal_to: [stripe]\n") + stripeEgress, nil},
		{"reveal_to unknown route", route("      - json: a\n        reveal_to: [stripe, adyen]\n") + stripeEgress,
			[]want{{7, "inbound[0].fields[0].reveal_to[1]", `"adyen" is not an egress route; name one of the egress routes (stripe), or "@me"`}}},
		{"reveal counts need unique", route("      - json: a\n        max_reveals: 3\n      - json: b\n        reveal_window: 1h\n"),
			[]want{{6, "inbound[0].fields[0]", "need unique: true: a convergent token is shared by every checkout"}, {8, "inbound[0].fields[1]", "need unique: true"}}},
		{"reveal counts bad values", route("      - json: a\n        unique: true\n        max_reveals: -1\n        reveal_window: 0s\n"),
			[]want{{8, "inbound[0].fields[0].max_reveals", "negative"}, {9, "inbound[0].fields[0].reveal_window", "must be positive"}}},
		{"reveal counts in memory", route("      - json: a\n      - json: c\n        format: digits\n        unique: true\n        store: memory\n        ttl: 15m\n        bind: a\n        max_reveals: 1\n        reveal_to: [\"@me\"]\n"),
			[]want{{7, "inbound[0].fields[1]", "a value held in memory takes no max_reveals"}, {14, "inbound[0].fields[1].reveal_to", "set reveal_to on the card field"}}},
		{"reveal policy on egress", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    fields:\n      - json: card.number\n        max_reveals: 1\n",
			[]want{{6, "egress[0].fields[0]", "belong on the inbound field"}}},
		{"trusted proxies", "budgets:\n  trusted_proxies: [10.0.0.0/8, \"::1\", 192.0.2.7, nope, 10.0.0.0/33]\n", []want{{2, "budgets.trusted_proxies[3]", "not an address or a CIDR prefix"}, {2, "budgets.trusted_proxies[4]", "not an address"}}},
		{"guard mode", "guard: {mode: loud}", []want{{1, "guard.mode", "use reject, report, tokenize or off"}}},
		{"enum refusals beside other problems", "guard: {mode: loud}\nlimits: {max_depth: 5000}\ntls:\n  auth: {cert_file: config_test.go, key_file: config_test.go, client_auth: [x]}\nsession: {idle: 1h}\n",
			[]want{{1, "guard.mode", "use reject, report, tokenize or off"}, {2, "limits.max_depth", "out of range"}, {4, "tls.auth.client_auth", "want a string"}, {5, "session.idle", ""}}},
		{"route guard tokenize", "upstream: http://127.0.0.1:3000\ninbound:\n  - name: r\n    match: {path: /x}\n    guard: tokenize\n    fields:\n      - json: card.number\n",
			[]want{{5, "inbound[0].guard", "a route's guard is reject or report"}}},
		{"egress route guard off", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    guard: off\n",
			[]want{{5, "egress[0].guard", "an egress route's guard is reject or report"}}},
		{"report_then", "guard: {mode: report, report_then: maybe}", []want{{1, "guard.report_then", "use forward or tokenize"}}},
		{"guard ignore empty", "guard:\n  ignore: [a, \"\"]\n", []want{{2, "guard.ignore[1]", "empty"}}},
		{"egress http remote", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: http://api.psp.example\n", []want{{4, "egress[0].upstream", "use https"}}},
		{"egress http loopback ok", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: http://[::1]:4000\n  - name: q\n    match: {path: /q/*}\n    upstream: http://localhost:4000\n", nil},
		{"egress no upstream", "egress:\n  - name: p\n    match: {path: /p/*}\n", []want{{2, "egress[0].upstream", "missing"}}},
		{"egress listener off", "listen: {egress: off}\negress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n", []want{{1, "listen.egress", "listener is off"}}},
		{"egress strip_prefix", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    strip_prefix: /q\n", []want{{5, "egress[0].strip_prefix", "not a prefix of match.path"}}},
		{"egress strip_prefix slash", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    strip_prefix: /p/\n", []want{{5, "egress[0].strip_prefix", `do not end with "/"`}}},
		{"egress ca_file missing", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    ca_file: /nonexistent/ca.pem\n", []want{{5, "egress[0].ca_file", "cannot read"}}},
		{"egress headers", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    headers:\n      Host: h\n      \"a b\": c\n      X-Key: \"env:1X\"\n      X-Ok: \"env:OK\"\n",
			[]want{{6, "egress[0].headers.Host", "tok sets Host itself"}, {7, "egress[0].headers.a b", "not a header name"}, {8, "egress[0].headers.X-Key", "not an environment variable name"}}},
		{"egress key literal", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: hunter2\n", []want{{5, "egress[0].egress_key", "env:NAME"}}},
		{"egress host route", "egress:\n  - name: s\n    match: {host: stripe.egress.internal}\n    upstream: https://api.stripe.com\n    error_format: stripe\n  - name: a\n    match: {host: adyen.egress.internal}\n    upstream: https://h\n", nil},
		{"egress host invalid", "egress:\n  - name: s\n    match: {host: \"Stripe:8081\"}\n    upstream: https://h\n", []want{{3, "egress[0].match.host", "not a host name"}}},
		{"egress same host", "egress:\n  - name: s\n    match: {host: s.internal}\n    upstream: https://h\n  - name: t\n    match: {host: s.internal}\n    upstream: https://h\n", []want{{6, "egress[1].match", "same host, method and path as egress[0]"}}},
		{"inbound host", up + "inbound:\n  - name: r\n    match: {host: h, path: /x}\n    fields: [{json: a}]\n", []want{{4, "inbound[0].match.host", "remove host"}}},
		{"egress new keys", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    error_format: paypal\n    timeout: 1h\n    unrevealed_tokens: drop\n    response_ignore: [\"\", \"a..b\"]\n    headers: {Authorization: \"Bearer {env:X\"}\n",
			[]want{{5, "egress[0].error_format", "use plain, stripe, adyen, checkout, braintree"}, {6, "egress[0].timeout", "out of range"}, {7, "egress[0].unrevealed_tokens", "use warn or refuse"},
				{8, "egress[0].response_ignore[0]", "empty"}, {8, "egress[0].response_ignore[1]", "empty segment"}, {9, "egress[0].headers.Authorization", "{env:NAME}"}}},
		{"xml fields", up + "inbound:\n  - name: r\n    match: {path: /x}\n    fields: [{xml: /a/b}, {xml: a/b}]\negress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    fields:\n      - {xml: a.b}\n      - {xml: /a/b, json: a.b}\n      - {xml: /t/cc/number}\n      - {xml: /t/cc/cvv, bind: /t/cc/number}\n",
			[]want{{5, "inbound[0].fields[1].xml", "absolute element path"}, {11, "egress[0].fields[0].xml", "absolute element path"}, {12, "egress[0].fields[1]", "exactly one of json, form and xml"}}},
		{"json escapes", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    fields:\n      - json: 'metadata.card\\.number'\n      - json: 'a\\[0\\].pan'\n      - json: 'a\\x'\n", []want{{8, "egress[0].fields[2].json", "backslash"}}},
		{"xml ignore paths", up + "guard:\n  ignore: [/order/id, /order/@ref, /order/@, a.b]\negress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    response_ignore: [/transaction/network-transaction-id, /t/@x/y]\n",
			[]want{{3, "guard.ignore[2]", "not an element name"}, {8, "egress[0].response_ignore[1]", "not an element name"}}},
		{"response cards", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    response_cards:\n      networks: [visa, vissa]\n      prefixes: [\"4\", \"55-51\", \"2221-2720\", x]\n      lengths: [15, 16, 11, 20]\n",
			[]want{{6, "egress[0].response_cards.networks[1]", `unknown network "vissa"`}, {7, "egress[0].response_cards.prefixes[1]", "range is empty"},
				{7, "egress[0].response_cards.prefixes[3]", "write digits"}, {8, "egress[0].response_cards.lengths[2]", "12 to 19"}, {8, "egress[0].response_cards.lengths[3]", "12 to 19"}}},
		{"response cards ok", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    response_cards: {networks: [visa, mastercard, amex], prefixes: [\"4\", \"51-55\", \"2221-2720\", \"34\", \"37\"], lengths: [15, 16]}\n", nil},
		{"egress key header", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: env:K\n    egress_key_header: authorization-bearer\n" +
			"  - name: q\n    match: {path: /q/*}\n    upstream: https://h\n    egress_key_header: authorization-digest\n    egress_key: env:K\n" +
			"  - name: r\n    match: {path: /r/*}\n    upstream: https://h\n    egress_key_header: \"a b\"\n    egress_key: env:K\n" +
			"  - name: s\n    match: {path: /s/*}\n    upstream: https://h\n    egress_key_header: X-API-Key\n",
			[]want{{6, "egress[0].egress_key_header", "set headers.Authorization"}, {10, "egress[1].egress_key_header", "use authorization-bearer"},
				{15, "egress[2].egress_key_header", "not a header name"}, {20, "egress[3].egress_key_header", "no egress_key"}}},
		{"egress key header ok", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: env:K\n    egress_key_header: authorization-basic\n    headers: {authorization: \"Basic {env:ADYEN_BASIC}\"}\n" +
			"  - name: q\n    match: {path: /q/*}\n    upstream: https://h\n    egress_key: env:K\n    egress_key_header: x-tok-egress-key\n", nil},
		{"egress field rules", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    fields: [{json: \"a..b\"}]\n", []want{{5, "egress[0].fields[0].json", "empty segment"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkProblems(t, tc.yaml, tc.want) })
	}
}

func TestSchemaProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []want
	}{
		{"unknown top-level key", "listne: {}\n", []want{{1, "listne", `unknown key "listne"; known keys here: listen, tls, vault`}}},
		{"unknown nested key", "vault:\n  bolt: a.db\n  keyfile: k\n", []want{{3, "vault.keyfile", "known keys here: bolt, postgres, keyring"}}},
		{"unknown key in list item", "clients:\n  - name: a\n    secret_hash: \"" + testHash + "\"\n    admin: true\n", []want{{4, "clients[0].admin", `unknown key "admin"`}}},
		{"unknown key in field", "upstream: http://h\ninbound:\n  - name: r\n    match: {path: /x}\n    fields:\n      - json: a\n        fromat: pan\n",
			[]want{{7, "inbound[0].fields[0].fromat", "unknown key"}}},
		{"duplicate key", "audit:\n  path: a\n  path: b\n", []want{{3, "audit.path", "duplicate key (first at line 2)"}}},
		{"bool type", "clients:\n  - name: a\n    secret_hash: \"" + testHash + "\"\n    reveal: yes please\n", []want{{4, "clients[0].reveal", "true or false"}}},
		{"int type", "limits: {max_depth: deep}", []want{{1, "limits.max_depth", "whole number"}}},
		{"size type", "limits:\n  max_body: 1 MeB\n", []want{{2, "limits.max_body", `"1 MeB" is not a size`}}},
		{"duration without unit", "session: {idle: 900}", []want{{1, "session.idle", "duration with a unit"}}},
		{"duration bad", "lockout: {duration: soon}", []want{{1, "lockout.duration", `"soon" is not a duration`}}},
		{"list expected", "clients: cih\n", []want{{1, "clients", "want a list"}}},
		{"mapping expected", "listen: :8080\n", []want{{1, "listen", "want a mapping"}}},
		{"string expected", "upstream: [a]\n", []want{{1, "upstream", "want a string"}}},
		{"top level not a mapping", "- a\n", []want{{1, "", "want a mapping"}}},
		{"headers not a mapping", "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    headers: [a]\n", []want{{5, "egress[0].headers", "want a mapping"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { checkProblems(t, tc.yaml, tc.want) })
	}
}

// TestAllProblemsAtOnce checks that schema and validation problems all come
// back from one Parse, in line order, and that a value with a schema problem
// is not also reported by validation.
func TestAllProblemsAtOnce(t *testing.T) {
	src := `listen:
  public: nope
  bogus: 1
limits:
  max_body: 12XB
  max_depth: 0
clients:
  - name: cih
    secret_hash: "abc"
  - name: cih
    secret_hash: "` + testHash + `"
    reveal: maybe
session: {idle: 10}
upstream: ftp://x
guard: {mode: loud}
`
	checkProblems(t, src, []want{
		{2, "listen.public", "not host:port"},
		{3, "listen.bogus", "unknown key"},
		{5, "limits.max_body", "not a size"},
		{9, "clients[0].secret_hash", "not a bcrypt hash"},
		{10, "clients[1].name", "duplicate client"},
		{12, "clients[1].reveal", "true or false"},
		{13, "session.idle", "duration with a unit"},
		{14, "upstream", "not an http or https URL"},
		{15, "guard.mode", "not a mode"},
	})
	_, err := Parse([]byte(src), "tok.yaml")
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 9 || lines[0] != `tok.yaml:2: listen.public: "nope" is not host:port; write e.g. "127.0.0.1:8080" or ":8080", or "off"` {
		t.Errorf("Error() =\n%s", err)
	}
}

func TestSyntaxError(t *testing.T) {
	_, err := Parse([]byte("listen:\n  public: \":8080\"\n bad indent: x\n"), "tok.yaml")
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Problems) != 1 {
		t.Fatalf("Parse error = %v, want one problem", err)
	}
	// yaml.v3 reports the line where the enclosing mapping is open.
	if p := cerr.Problems[0]; p.Line != 2 || !strings.Contains(p.Msg, "invalid YAML") {
		t.Errorf("problem = %+v, want line 2, invalid YAML", p)
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		err  bool
	}{
		{"0", 0, false},
		{"1048576", MiB, false},
		{"1KiB", 1024, false},
		{"1 MiB", MiB, false},
		{"2GiB", 2 * GiB, false},
		{"1KB", 1000, false},
		{"3MB", 3000000, false},
		{"1GB", 1000000000, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"1.5MiB", 0, true},
		{"-1", 0, true},
		{"1mib", 0, true},
		{"1TiB", 0, true},
		{"99999999999GiB", 0, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for s, want := range map[Size]string{MiB: "1MiB", 512 * KiB: "512KiB", 1000: "1000", 0: "0", 3 * GiB: "3GiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
	}
}

func TestFieldSpec(t *testing.T) {
	n := func(i int) *int { return &i }
	day := 24 * time.Hour
	tests := []struct {
		name  string
		field Field
		want  vault.Spec
		err   bool
	}{
		{"defaults", Field{JSON: "a"}, vault.Spec{}, false},
		{"pan keep", Field{JSON: "a", Format: vault.FormatPAN, Keep: &Keep{First: n(8), Last: n(0)}}, vault.Spec{KeepFirst: 8, KeepLast: -1}, false},
		{"pan keep last only", Field{JSON: "a", Keep: &Keep{Last: n(2)}}, vault.Spec{KeepLast: 2}, false},
		{"digits memory", Field{JSON: "a", Format: vault.FormatDigits, Store: StoreMemory, TTL: time.Minute}, vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute}, false},
		{"opaque unique disk ttl", Field{JSON: "a", Format: vault.FormatOpaque, Unique: true, Store: StoreDisk, TTL: time.Hour}, vault.Spec{Format: vault.FormatOpaque, Unique: true, TTL: time.Hour}, false},
		{"reveal policy", Field{JSON: "a", Unique: true, RevealTo: []string{"stripe", "@me"}, MaxReveals: 3, RevealWindow: &day}, vault.Spec{Unique: true, RevealTo: []string{"stripe", "@me"}, MaxReveals: 3, RevealWindow: 24 * time.Hour}, false},
		{"memory without ttl", Field{JSON: "a", Store: StoreMemory}, vault.Spec{}, true},
		{"keep with digits", Field{JSON: "a", Format: vault.FormatDigits, Keep: &Keep{}}, vault.Spec{}, true},
		{"bad format", Field{JSON: "a", Format: vault.Format(9)}, vault.Spec{}, true},
		{"bad store", Field{JSON: "a", Store: "x"}, vault.Spec{}, true},
	}
	for _, tc := range tests {
		got, err := tc.field.Spec()
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Spec() = %+v, %v; want %+v, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	c := Default()
	env := map[string]string{EnvPostgresURL: "postgres://u:secretpw@h/db"}
	applied := c.ApplyEnv(func(k string) string { return env[k] })
	if c.Vault.Postgres != env[EnvPostgresURL] || c.Vault.Bolt != "" {
		t.Errorf("Vault = %+v, want postgres from the environment and no bolt", c.Vault)
	}
	if len(applied) != 1 || strings.Contains(applied[0], "secretpw") {
		t.Errorf("ApplyEnv = %q, want one description without the URL", applied)
	}
	c = Default()
	if applied := c.ApplyEnv(func(string) string { return "" }); len(applied) != 0 || c.Vault.Bolt != DefaultBoltPath {
		t.Errorf("ApplyEnv with empty environment = %q, Vault = %+v", applied, c.Vault)
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	c := Default()
	c.Vault.Keyring = dir + "/keyring.yaml"
	none := func(string) string { return "" }
	if _, _, err := c.LoadKeyring(none); err == nil || !strings.Contains(err.Error(), "tok keys new") {
		t.Errorf("LoadKeyring without a file: %v, want a hint at tok keys new", err)
	}
	fileKeys := vault.NewKeyringFile()
	if err := vault.WriteKeyringFile(c.Vault.Keyring, fileKeys, false); err != nil {
		t.Fatal(err)
	}
	got, src, err := c.LoadKeyring(none)
	if err != nil || src != c.Vault.Keyring || got.FingerprintKey != fileKeys.FingerprintKey {
		t.Errorf("LoadKeyring from file = %v, %q, %v", got.Primary, src, err)
	}
	envKeys := vault.NewKeyringFile()
	b, _ := envKeys.Marshal()
	got, src, err = c.LoadKeyring(func(k string) string {
		if k == EnvKeyring {
			return string(b)
		}
		return ""
	})
	if err != nil || src != "env "+EnvKeyring || got.FingerprintKey != envKeys.FingerprintKey {
		t.Errorf("LoadKeyring with %s set: source %q, err %v; want the environment to win", EnvKeyring, src, err)
	}
	_, _, err = c.LoadKeyring(func(k string) string { return "primary: [" })
	if err == nil || !strings.Contains(err.Error(), EnvKeyring) {
		t.Errorf("LoadKeyring with a broken %s: %v", EnvKeyring, err)
	}
}

func TestResolve(t *testing.T) {
	env := func(k string) string { return map[string]string{"KEY": "v"}[k] }
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"literal", "literal", false},
		{"env:KEY", "v", false},
		{"env:MISSING", "", true},
		{"Bearer {env:KEY}", "Bearer v", false},
		{"{env:KEY}:{env:KEY}", "v:v", false},
		{"Bearer {env:MISSING}", "", true},
		{"no {env: template", "", true},
	} {
		got, err := Resolve(tc.in, env)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("Resolve(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestWarnings: an unbound short digits field is warned about with its
// token space and the rate at which it runs out; a bound one
// and the shipped example are not.
// TestReportWarnings: every guard in report mode, global or a route's, is
// warned about, saying it forwards what it would refuse.
func TestReportWarnings(t *testing.T) {
	base := "upstream: http://127.0.0.1:3000\ninbound:\n  - name: r\n    match: {path: /x}\n    fields:\n      - json: card.number\n"
	for _, tt := range []struct {
		name, yaml string
		want       []string
	}{
		{"reject", base, nil},
		{"global", base + "guard: {mode: report}\n", []string{"guard.mode is in report mode: it forwards what it would refuse", "forwards it unchanged", "report_then: forward"}},
		{"global tokenize", base + "guard: {mode: report, report_then: tokenize}\n", []string{"guard.mode is in report mode", "tokenizes the card numbers", "report_then: tokenize"}},
		{"route", strings.Replace(base, "    fields:", "    guard: report\n    fields:", 1), []string{"inbound[0] (r) is in report mode: it forwards what it would refuse"}},
		{"route rejects", strings.Replace(base, "    fields:", "    guard: reject\n    fields:", 1) + "guard: {mode: report}\n", []string{"guard.mode is in report mode"}},
	} {
		c, err := Parse([]byte(tt.yaml), "t.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		ws := c.Warnings()
		if len(ws) != min(len(tt.want), 1) {
			t.Fatalf("%s: Warnings() = %q, want %d", tt.name, ws, min(len(tt.want), 1))
		}
		for _, w := range tt.want {
			if !strings.Contains(ws[0], w) {
				t.Errorf("%s: warning %q lacks %q", tt.name, ws[0], w)
			}
		}
	}
}

func TestWarnings(t *testing.T) {
	base := "upstream: http://127.0.0.1:3000\ninbound:\n  - name: r\n    match: {path: /x}\n    fields:\n      - json: card.number\n"
	for _, tt := range []struct {
		name, fields string
		want         []string
	}{
		{"unbound in memory", "      - {json: card.cvc, format: digits, store: memory, ttl: 15m}\n",
			[]string{"inbound[0].fields[1] (r, json:card.cvc)", "900 live values per ttl", "at 15m0s it runs out at 1.0 values a second", "bind: card.number"}},
		{"unbound on disk", "      - {form: pin, format: digits}\n", []string{"900 values in all, ever", "bind: card[number]"}},
		{"bound", "      - {json: card.cvc, format: digits, store: memory, ttl: 15m, bind: card.number}\n", nil},
		{"pan only", "", nil},
	} {
		c, err := Parse([]byte(base+tt.fields), "t.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		ws := c.Warnings()
		if len(tt.want) == 0 {
			if len(ws) != 0 {
				t.Errorf("%s: Warnings() = %q, want none", tt.name, ws)
			}
			continue
		}
		if len(ws) != 1 {
			t.Fatalf("%s: Warnings() = %q, want one", tt.name, ws)
		}
		for _, w := range tt.want {
			if !strings.Contains(ws[0], w) {
				t.Errorf("%s: warning %q lacks %q", tt.name, ws[0], w)
			}
		}
	}
}

// TestEgressWarnings: a route without egress_key, and a well-known
// provider with tok's plain refusals or without response_ignore, are
// warned about (tok check prints what tok serve logs).
func TestEgressWarnings(t *testing.T) {
	c, err := Parse([]byte("egress:\n  - name: s\n    match: {host: stripe.egress.internal}\n    upstream: https://api.stripe.com\n"+
		"  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: env:K\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ws := c.Warnings()
	if len(ws) != 3 || !strings.Contains(ws[0], "egress[0] (s): no egress_key") || !strings.Contains(ws[1], "set error_format: stripe") ||
		!strings.Contains(ws[2], "egress[0] (s): no response_ignore") {
		t.Errorf("Warnings() = %q, want no egress_key, error_format and response_ignore for route s only", ws)
	}
	c, err = Parse([]byte("egress:\n  - name: s\n    match: {host: stripe.egress.internal}\n    upstream: https://api.stripe.com\n    egress_key: env:K\n"+
		"    error_format: stripe\n    response_ignore: [latest_charge.payment_method_details.card.network_transaction_id]\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("Warnings() for a Stripe route set up as the README says = %q, want none", ws)
	}
	c, err = Parse([]byte("guard: {mode: \"off\"}\negress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: env:K\n    response_cards: {lengths: [16]}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 1 || !strings.Contains(ws[0], "egress[0] (p): guard.mode is off") {
		t.Errorf("Warnings() with the guard off = %q, want response_cards without effect", ws)
	}
	c, err = Parse([]byte("egress:\n  - name: s\n    match: {host: stripe.egress.internal}\n    upstream: https://api.stripe.com\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Egress[0]
	if r.Match.Path != "/*" || r.Timeout != proxy.DefaultEgressTimeout || r.ErrorFormat != DefaultErrorFormat || r.UnrevealedTokens != DefaultUnrevealedTokens {
		t.Errorf("host route defaults = path %q timeout %s format %q unrevealed %q", r.Match.Path, r.Timeout, r.ErrorFormat, r.UnrevealedTokens)
	}
}

// TestEgressFieldTokenKeys: the keys that shape new tokens do nothing on an
// egress field (egress reveals); they are warned about, naming the field,
// and a plain egress field is not.
func TestEgressFieldTokenKeys(t *testing.T) {
	route := "egress:\n  - name: p\n    match: {path: /p/*}\n    upstream: https://h\n    egress_key: env:K\n    fields: [%s]\n"
	for _, tt := range []struct{ field, want string }{
		{"{json: card.number}", ""},
		{"{json: card.number, format: opaque}", "egress[0].fields[0] (p, json:card.number)"},
		{"{form: card, keep: {first: 6}}", "egress[0].fields[0] (p, form:card)"},
		{"{json: card.number, unique: true}", "egress[0].fields[0]"},
		{"{json: cvc, format: digits, store: memory, ttl: 1m}", "egress[0].fields[0]"},
	} {
		c, err := Parse([]byte(fmt.Sprintf(route, tt.field)), "t.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tt.field, err)
		}
		ws := c.Warnings()
		switch {
		case tt.want == "" && len(ws) != 0:
			t.Errorf("%s: Warnings() = %q, want none", tt.field, ws)
		case tt.want != "" && (len(ws) != 1 || !strings.Contains(ws[0], tt.want) || !strings.Contains(ws[0], "ignores them")):
			t.Errorf("%s: Warnings() = %q, want one naming %s", tt.field, ws, tt.want)
		}
	}
}

// TestDefaultEgressExample: the commented egress route in default.yaml,
// uncommented, is a valid route whose per-route values are the default
// constants, so the reference never drifts from the code.
func TestDefaultEgressExample(t *testing.T) {
	text := string(defaultYAML)
	start := strings.Index(text, "\negress: []\n")
	if start < 0 {
		t.Fatal("default.yaml has no egress section")
	}
	var b strings.Builder
	b.WriteString("egress:\n")
	for line := range strings.SplitSeq(text[start+len("\negress: []\n"):], "\n") {
		body, ok := strings.CutPrefix(line, "#")
		if !ok {
			break
		}
		b.WriteString(body + "\n")
	}
	c, err := Parse([]byte(b.String()), "default.yaml egress example")
	if err != nil {
		t.Fatalf("the commented egress example does not parse:\n%s\n%v", b.String(), err)
	}
	r := c.Egress[0]
	if r.Timeout != proxy.DefaultEgressTimeout || r.ErrorFormat != DefaultErrorFormat || r.UnrevealedTokens != DefaultUnrevealedTokens || r.Match.Host != "" {
		t.Errorf("egress example: timeout %s, error_format %q, unrevealed_tokens %q, host %q; want the defaults %s, %q, %q, \"\"",
			r.Timeout, r.ErrorFormat, r.UnrevealedTokens, r.Match.Host, proxy.DefaultEgressTimeout, DefaultErrorFormat, DefaultUnrevealedTokens)
	}
}

// TestInspect: a route may opt its bodies out of the guard only without
// fields, and tok check warns about it.
func TestInspect(t *testing.T) {
	const head = "upstream: http://127.0.0.1:3000\nguard: {ignore_headers: [X-Datadog-Trace-Id]}\ninbound:\n  - name: uploads\n    match: {path: /uploads/*}\n"
	c, err := Parse([]byte(head+"    inspect: false\n"), "t.yaml")
	if err != nil {
		t.Fatalf("inspect: false without fields: %v", err)
	}
	if c.Inbound[0].Inspected() || !reflect.DeepEqual(c.Guard.IgnoreHeaders, []string{"X-Datadog-Trace-Id"}) {
		t.Errorf("Inbound[0].Inspected() = true or IgnoreHeaders = %q", c.Guard.IgnoreHeaders)
	}
	if ws := c.Warnings(); len(ws) != 1 || !strings.Contains(ws[0], "inbound[0] (uploads): inspect: false") {
		t.Errorf("Warnings() = %q, want one naming the route", ws)
	}
	for _, bad := range []string{
		"    inspect: false\n    fields:\n      - json: card.number\n", // fields are always inspected
		"    inspect: true\n", // no fields and inspected: nothing to do
	} {
		if _, err := Parse([]byte(head+bad), "t.yaml"); err == nil || !strings.Contains(err.Error(), "inbound[0]") {
			t.Errorf("Parse(%q) = %v, want an error naming inbound[0]", bad, err)
		}
	}
	if _, err := Parse([]byte("guard: {ignore_headers: [\"a b\"]}\n"), "t.yaml"); err == nil || !strings.Contains(err.Error(), "guard.ignore_headers[0]") {
		t.Errorf("a bad header name: %v, want an error naming guard.ignore_headers[0]", err)
	}
}

// TestCardHeaders: card_headers needs a card field to describe, and a
// route without one is refused at the key's line.
func TestCardHeaders(t *testing.T) {
	const head = "upstream: http://127.0.0.1:3000\ninbound:\n  - name: pay\n    match: {path: /pay}\n"
	c, err := Parse([]byte(head+"    card_headers: true\n    fields:\n      - json: card.number\n      - {json: card.cvc, bind: card.number, format: digits, store: memory, ttl: 10m}\n"), "t.yaml")
	if err != nil || !c.Inbound[0].CardHeaders {
		t.Fatalf("card_headers with a card field: %v", err)
	}
	for _, bad := range []string{
		"    card_headers: true\n    inspect: false\n",
		"    card_headers: true\n    fields:\n      - {json: card.cvc, format: digits, store: memory, ttl: 10m}\n",
	} {
		_, err := Parse([]byte(head+bad), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), "t.yaml:5") || !strings.Contains(err.Error(), "inbound[0].card_headers") {
			t.Errorf("Parse(%q) = %v, want an error at t.yaml:5 naming inbound[0].card_headers", bad, err)
		}
	}
	if _, err := Parse([]byte(head+"    card_headers: yes please\n    fields: [{json: card.number}]\n"), "t.yaml"); err == nil {
		t.Error("card_headers: yes please parsed, want a type error")
	}
}
