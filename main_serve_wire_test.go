package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// wireEnv is one row's parsed config, the proxy.Options the wiring made of
// it, and the directory holding the files it names.
type wireEnv struct {
	cfg  *config.Config
	opts proxy.Options
	dir  string
}

// wireRow sets one config key to a value other than its default. check
// proves the value reached the server: in proxy.Options, or through the
// function serve hands it to. refused, if set, is a problem config reports
// instead (the key does not apply there); warned, a warning tok check and
// serve print (the key is accepted but does nothing there).
type wireRow struct {
	yaml    string
	check   func(t *testing.T, e wireEnv)
	refused string
	warned  string
}

// wireEnvVars is the environment the rows' env:NAME references read.
var wireEnvVars = map[string]string{"EGRESS_KEY": "k3y", "PSP_KEY": "s3cret"}

// TestEveryConfigKeyReachesTheServer walks the config schema: every key
// needs a row here, and every row's value must arrive where the server
// reads it. A key added without wiring fails this test.
func TestEveryConfigKeyReachesTheServer(t *testing.T) {
	rows := wireRows()
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	for _, k := range keys {
		if _, ok := rows[k]; !ok {
			t.Errorf("config key %s has no row in wireRows: add one proving it reaches the server", k)
		}
	}
	for k := range rows {
		if !slices.Contains(keys, k) {
			t.Errorf("wireRows has a row for %s, which the config schema does not have", k)
		}
	}
	dir := wireFiles(t)
	for _, k := range keys {
		row, ok := rows[k]
		if !ok {
			continue
		}
		t.Run(k, func(t *testing.T) {
			doc := strings.ReplaceAll(row.yaml, "DIR", dir)
			cfg, err := config.Parse([]byte(doc), "tok.yaml")
			if row.refused != "" {
				if err == nil || !strings.Contains(err.Error(), row.refused) {
					t.Errorf("Parse = %v, want a problem containing %q", err, row.refused)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse:\n%s\n%v", doc, err)
			}
			if row.warned != "" {
				if w := strings.Join(cfg.Warnings(), "\n"); !strings.Contains(w, row.warned) {
					t.Errorf("Warnings = %q, want one containing %q", w, row.warned)
				}
				return
			}
			opts, err := proxyOptions(cfg, func(k string) string { return wireEnvVars[k] })
			if err != nil {
				t.Fatalf("proxyOptions: %v", err)
			}
			row.check(t, wireEnv{cfg: cfg, opts: opts, dir: t.TempDir()})
		})
	}
}

// configKeys lists the key paths of the schema under t: "limits.max_body",
// "inbound[].fields[].keep.first".
func configKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft, path := f.Type, prefix+name
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft, path = ft.Elem(), path+"[]"
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]() {
			out = append(out, configKeys(ft, path+".")...)
			continue
		}
		out = append(out, path)
	}
	return out
}

// wireFiles writes the PEM files rows name under DIR: a CA certificate
// and key (also used as the listeners' certificate) and a keyring.
func wireFiles(t *testing.T) string {
	dir := t.TempDir()
	crt, key, err := proxy.NewForwardCA()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"crt.pem": crt, "key.pem": key} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := vault.WriteKeyringFile(filepath.Join(dir, "keyring.yaml"), vault.NewKeyringFile(), false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

const (
	wireUpstream = "upstream: http://127.0.0.1:3000\n"
	wireClients  = "clients: [{name: shop, secret_hash: %q, reveal: true, delete: true, handle_budget: 7, reveal_budget: 9}]\n"
)

// inbound is a config with one inbound route; route is the route's body.
func inbound(route string) string {
	return wireUpstream + "inbound:\n  - name: pay\n" + indent(route, "    ")
}

// egress is a config with one egress route; route is added to its body.
func egress(fields, route string) string {
	if fields == "" {
		fields = "[{json: card.number}]"
	}
	return "egress:\n  - name: psp\n    match: {host: psp.egress.internal}\n    upstream: https://psp.example\n    fields: " + fields + "\n" + indent(route, "    ")
}

func indent(s, by string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		b.WriteString(by + l)
	}
	if s != "" && !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

func wireRows() map[string]wireRow {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), config.MinBcryptCost)
	if err != nil {
		panic(err)
	}
	clients := strings.Replace(wireClients, "%q", `"`+string(hash)+`"`, 1)
	route := "match: {method: POST, path: /pay}\nfields: [{json: card.number}]\n"
	field := func(f string) string { return inbound("match: {path: /pay}\nfields: [" + f + "]\n") }
	spec := func(e wireEnv) vault.Spec { return e.opts.Routes[0].Fields[0].Spec }
	eroute := func(e wireEnv) proxy.EgressRoute { return e.opts.Egress[0] }
	rows := map[string]wireRow{
		"listen.public": {yaml: "listen: {public: '127.0.0.1:18080'}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Listen.Public == "127.0.0.1:18080", "Listen.Public = %q", e.opts.Listen.Public)
		}},
		"listen.auth": {yaml: "listen: {auth: 'off'}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Listen.Auth == "", "Listen.Auth = %q, want off (empty)", e.opts.Listen.Auth)
		}},
		"listen.admin": {yaml: "listen: {admin: '127.0.0.1:19091'}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Listen.Admin == "127.0.0.1:19091", "Listen.Admin = %q", e.opts.Listen.Admin)
		}},
		"listen.egress": {yaml: "listen: {egress: '127.0.0.1:18082'}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Listen.Egress == "127.0.0.1:18082", "Listen.Egress = %q", e.opts.Listen.Egress)
		}},
		"tls.auth.client_ca_file": {yaml: "tls: {auth: {cert_file: DIR/crt.pem, key_file: DIR/key.pem, client_ca_file: DIR/crt.pem}}", check: func(t *testing.T, e wireEnv) {
			expect(t, strings.HasSuffix(e.opts.TLS[proxy.ListenerAuth].ClientCAFile, "/crt.pem"), "TLS[auth] = %+v", e.opts.TLS[proxy.ListenerAuth])
		}},
		"tls.auth.client_auth": {yaml: "tls: {auth: {cert_file: DIR/crt.pem, key_file: DIR/key.pem, client_ca_file: DIR/crt.pem, client_auth: both}}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.TLS[proxy.ListenerAuth].ClientAuth == proxy.ClientAuthBoth, "TLS[auth] = %+v", e.opts.TLS[proxy.ListenerAuth])
		}},
		"tls.egress_ca.cert_file": {yaml: "tls: {egress_ca: {cert_file: DIR/crt.pem, key_file: DIR/key.pem}}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.ForwardCA != nil, "ForwardCA = nil, want the CA loaded")
		}},
		"vault.bolt": {yaml: "vault: {bolt: DIR/vault/tok.db}", check: func(t *testing.T, e wireEnv) {
			e.cfg.Vault.Bolt = filepath.Join(e.dir, "tok.db") // a fresh file per run
			s, err := openStore(context.Background(), e.cfg, false, nil, discardLog())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			_, err = os.Stat(e.cfg.Vault.Bolt)
			expect(t, err == nil, "openStore made no bolt file at vault.bolt: %v", err)
		}},
		"vault.postgres": {yaml: "vault: {postgres: 'postgres://tok@127.0.0.1:1/tok?connect_timeout=5'}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.cfg.Vault.Bolt == "", "vault.bolt = %q beside vault.postgres", e.cfg.Vault.Bolt)
			s, err := openStore(context.Background(), e.cfg, false, nil, discardLog())
			if err == nil {
				s.Close()
			}
			expect(t, err != nil && strings.Contains(err.Error(), "127.0.0.1"), "openStore = %v, want PostgreSQL's refused connection to port 1", err)
		}},
		"vault.keyring": {yaml: "vault: {keyring: DIR/keyring.yaml}", check: func(t *testing.T, e wireEnv) {
			_, source, err := e.cfg.LoadKeyring(func(string) string { return "" })
			expect(t, err == nil && strings.HasSuffix(source, "/keyring.yaml"), "LoadKeyring = %q, %v", source, err)
		}},
		"vault.volatile": {yaml: "vault: {volatile: 'redis://127.0.0.1:6379/15'}", check: func(t *testing.T, e wireEnv) {
			s, err := openVolatile(context.Background(), e.cfg, discardLog())
			if err != nil {
				t.Skipf("no Redis at 127.0.0.1:6379: %v", err)
			}
			defer s.Close()
			_, inMemory := s.(*memory.Store)
			expect(t, !inMemory, "openVolatile = %T, want the Redis store vault.volatile names", s)
		}},
		"vault.volatile_ca": {yaml: "vault: {volatile: 'rediss://127.0.0.1:6379/15', volatile_ca: DIR/key.pem}", check: func(t *testing.T, e wireEnv) {
			s, err := openVolatile(context.Background(), e.cfg, discardLog())
			if err == nil {
				s.Close()
			}
			expect(t, err != nil && strings.Contains(err.Error(), "key.pem"), "openVolatile = %v, want it to read the CA file vault.volatile_ca names", err)
		}},
		"vault.commit_timeout": {yaml: "vault: {commit_timeout: 2s}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.CommitTimeout == 2*time.Second, "CommitTimeout = %s", e.opts.CommitTimeout)
		}},
		"limits.max_body": {yaml: "limits: {max_body: 2MiB}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.MaxBody == 2<<20, "MaxBody = %d", e.opts.MaxBody)
		}},
		"limits.max_depth": {yaml: "limits: {max_depth: 32}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.MaxDepth == 32, "MaxDepth = %d", e.opts.MaxDepth)
		}},
		"limits.max_in_flight": {yaml: "limits: {max_in_flight: 100}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.MaxInFlight == 100, "MaxInFlight = %d", e.opts.MaxInFlight)
		}},
		"limits.memory": {yaml: "limits: {memory: 96MiB}", check: checkMemoryLimit},
		"limits.volatile_records": {yaml: "limits: {volatile_records: 1000}", check: func(t *testing.T, e wireEnv) {
			s, err := openVolatile(context.Background(), e.cfg, discardLog())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m, ok := s.(*memory.Store)
			expect(t, ok && m.Stats().MaxRecords == 1000, "volatile store %T holds at most 1000: %v", s, ok && m.Stats().MaxRecords == 1000)
		}},
		"limits.vault_bytes": {yaml: "limits: {vault_bytes: 256MiB}", check: func(t *testing.T, e wireEnv) {
			e.cfg.Vault.Bolt = filepath.Join(e.dir, "tok.db")
			s, err := openStore(context.Background(), e.cfg, false, nil, discardLog())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			q := vaultQuota(e.cfg, s)
			expect(t, q != nil && q.Max() == 256<<20, "vaultQuota = %v, want 256 MiB", q)
			// The vault serve and every reload build refuses a new card
			// past the quota (here 1 byte, below what config accepts).
			e.cfg.Limits.VaultBytes = 1
			q = vaultQuota(e.cfg, s)
			keys, err := vault.NewKeyring(vault.NewKeyringFile())
			if err != nil {
				t.Fatal(err)
			}
			v, err := vault.New(s, keys, vaultOptions(e.cfg, memory.New(), q)...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Tokenize(context.Background(), []vault.Request{{Value: "4111111111111111"}})
			expect(t, errors.Is(err, vault.ErrVaultFull), "Tokenize past the quota = %v, want ErrVaultFull", err)
		}},
		"clients[].name": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].Name == "shop", "Clients = %+v", e.opts.Clients)
		}},
		"clients[].secret_hash": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].SecretHash == string(hash), "Clients = %+v", e.opts.Clients)
		}},
		"clients[].reveal": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].Reveal, "Clients = %+v", e.opts.Clients)
		}},
		"clients[].delete": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].Delete, "Clients = %+v", e.opts.Clients)
		}},
		"clients[].handle_budget": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].HandleBudget == 7, "Clients = %+v", e.opts.Clients)
		}},
		"clients[].reveal_budget": {yaml: clients, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Clients[0].RevealBudget == 9, "Clients = %+v", e.opts.Clients)
		}},
		"audit.path": {yaml: "audit: {path: DIR/audit.log}", check: func(t *testing.T, e wireEnv) {
			e.cfg.Audit.Path = filepath.Join(e.dir, "audit.log")
			_, c, _, err := openAudit(e.cfg.Audit.Path, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			st, err := os.Stat(e.cfg.Audit.Path)
			expect(t, err == nil && st.Mode().Perm() == 0o600, "audit file: %v, %v; want mode 0600", st, err)
		}},
		"session.idle": {yaml: "session: {idle: 10m}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.SessionIdle == 10*time.Minute, "SessionIdle = %s", e.opts.SessionIdle)
		}},
		"session.max": {yaml: "session: {max: 4h}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.SessionMax == 4*time.Hour, "SessionMax = %s", e.opts.SessionMax)
		}},
		"lockout.threshold": {yaml: "lockout: {threshold: 5}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.LockoutThreshold == 5, "LockoutThreshold = %d", e.opts.LockoutThreshold)
		}},
		"lockout.duration": {yaml: "lockout: {duration: 45m}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.LockoutDuration == 45*time.Minute, "LockoutDuration = %s", e.opts.LockoutDuration)
		}},
		"lockout.client_threshold": {yaml: "lockout: {client_threshold: 50}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.LockoutClientThreshold == 50, "LockoutClientThreshold = %d", e.opts.LockoutClientThreshold)
		}},
		"lockout.source_rate": {yaml: "lockout: {source_rate: 60}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.LoginSourceRate == 60, "LoginSourceRate = %d", e.opts.LoginSourceRate)
		}},
		"budgets.window": {yaml: "budgets: {window: 30m}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Budgets.Window == 30*time.Minute, "Budgets = %+v", e.opts.Budgets)
		}},
		"budgets.handle_anonymous": {yaml: "budgets: {handle_anonymous: 5}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Budgets.HandleAnonymous == 5, "Budgets = %+v", e.opts.Budgets)
		}},
		"budgets.handle_client": {yaml: "budgets: {handle_client: 6}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Budgets.HandleClient == 6, "Budgets = %+v", e.opts.Budgets)
		}},
		"budgets.inbound": {yaml: "budgets: {inbound: 7}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Budgets.Inbound == 7, "Budgets = %+v", e.opts.Budgets)
		}},
		"budgets.reveal": {yaml: "budgets: {reveal: 8}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Budgets.Reveal == 8, "Budgets = %+v", e.opts.Budgets)
		}},
		"budgets.trusted_proxies": {yaml: "budgets: {trusted_proxies: [10.0.0.0/8]}", check: func(t *testing.T, e wireEnv) {
			p := e.opts.Budgets.TrustedProxies
			expect(t, len(p) == 1 && p[0].String() == "10.0.0.0/8", "TrustedProxies = %v", p)
		}},
		"upstream": {yaml: wireUpstream, check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Upstream != nil && e.opts.Upstream.String() == "http://127.0.0.1:3000", "Upstream = %v", e.opts.Upstream)
		}},
		"inbound[].name": {yaml: inbound(route), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Name == "pay", "Routes = %+v", e.opts.Routes)
		}},
		"inbound[].match.method": {yaml: inbound(route), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Method == "POST", "Routes = %+v", e.opts.Routes)
		}},
		"inbound[].match.path": {yaml: inbound(route), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Path == "/pay", "Routes = %+v", e.opts.Routes)
		}},
		"inbound[].match.host": {yaml: inbound("match: {path: /pay, host: shop.example}\nfields: [{json: card.number}]\n"), refused: "inbound routes match on method and path only"},
		"inbound[].fields[].json": {yaml: inbound(route), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Fields[0].JSON == "card.number", "Fields = %+v", e.opts.Routes[0].Fields)
		}},
		"inbound[].fields[].form": {yaml: field("{form: 'card[number]'}"), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Fields[0].Form == "card[number]", "Fields = %+v", e.opts.Routes[0].Fields)
		}},
		"inbound[].fields[].xml": {yaml: field("{xml: /card/number}"), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Fields[0].XML == "/card/number", "Fields = %+v", e.opts.Routes[0].Fields)
		}},
		"inbound[].fields[].bind": {yaml: field("{json: card.number}, {json: card.cvc, bind: card.number, format: digits, store: memory, ttl: 10m}"), check: func(t *testing.T, e wireEnv) {
			f := e.opts.Routes[0].Fields[1]
			expect(t, f.Bind == "card.number" && f.Spec.Bound, "Fields[1] = %+v", f)
			// A bound value is stored under a card/token key: no format to declare.
			expect(t, len(volatileFormats(e.cfg)) == 0, "volatileFormats = %v, want none", volatileFormats(e.cfg))
		}},
		"inbound[].fields[].format": {yaml: field("{json: card.number, format: opaque}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).Format == vault.FormatOpaque, "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].keep.first": {yaml: field("{json: card.number, keep: {first: 8}}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).KeepFirst == 8, "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].keep.last": {yaml: field("{json: card.number, keep: {last: 0}}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).KeepLast == -1, "Spec = %+v, want KeepLast -1 (none)", spec(e))
		}},
		"inbound[].fields[].unique": {yaml: field("{json: card.number, unique: true}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).Unique, "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].store": {yaml: field("{json: card.cvc, format: digits, store: memory, ttl: 10m}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).Volatile, "Spec = %+v", spec(e))
			got := volatileFormats(e.cfg)
			expect(t, slices.Equal(got, []vault.Format{vault.FormatDigits}), "volatileFormats = %v, want [digits]", got)
		}},
		"inbound[].fields[].ttl": {yaml: field("{json: card.cvc, format: digits, store: memory, ttl: 10m}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).TTL == 10*time.Minute, "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].reveal_to": {yaml: field("{json: card.number, reveal_to: [psp, '@me']}") + egress("", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, slices.Equal(spec(e).RevealTo, []string{"psp", vault.RevealToMe}), "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].max_reveals": {yaml: field("{json: card.number, unique: true, max_reveals: 3}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).MaxReveals == 3, "Spec = %+v", spec(e))
		}},
		"inbound[].fields[].reveal_window": {yaml: field("{json: card.number, unique: true, reveal_window: 24h}"), check: func(t *testing.T, e wireEnv) {
			expect(t, spec(e).RevealWindow == 24*time.Hour, "Spec = %+v", spec(e))
		}},
		"egress[].fields[].reveal_to":     {yaml: egress("[{json: card.number, reveal_to: [psp]}]", ""), refused: "belong on the inbound field that makes the tokens"},
		"egress[].fields[].max_reveals":   {yaml: egress("[{json: card.number, max_reveals: 1}]", ""), refused: "belong on the inbound field that makes the tokens"},
		"egress[].fields[].reveal_window": {yaml: egress("[{json: card.number, reveal_window: 1h}]", ""), refused: "belong on the inbound field that makes the tokens"},
		"inbound[].inspect": {yaml: inbound("match: {path: /upload}\ninspect: false\n"), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].Uninspected, "Routes = %+v", e.opts.Routes)
		}},
		"inbound[].card_headers": {yaml: inbound("match: {path: /pay}\nfields: [{json: card.number}]\ncard_headers: true\n"), check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Routes[0].CardHeaders, "Routes = %+v", e.opts.Routes)
		}},
		"guard.mode": {yaml: "guard: {mode: tokenize}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Guard.Mode == rewrite.GuardTokenize, "Guard = %+v", e.opts.Guard)
		}},
		"inbound[].guard": {yaml: inbound("match: {path: /upload}\ninspect: false\nguard: report\n"), check: func(t *testing.T, e wireEnv) {
			g := e.opts.Routes[0].Guard
			expect(t, g != nil && *g == rewrite.GuardReport, "Routes = %+v", e.opts.Routes)
		}},
		"guard.report_then": {yaml: "guard: {mode: report, report_then: tokenize}", check: func(t *testing.T, e wireEnv) {
			expect(t, e.opts.Guard.Mode == rewrite.GuardReport && e.opts.Guard.ReportThen == proxy.ReportTokenize, "Guard = %+v", e.opts.Guard)
		}},
		"guard.ignore": {yaml: "guard: {ignore: [order.id]}", check: func(t *testing.T, e wireEnv) {
			expect(t, slices.Equal(e.opts.Guard.Ignore, []string{"order.id"}), "Guard = %+v", e.opts.Guard)
		}},
		"guard.ignore_headers": {yaml: "guard: {ignore_headers: [x-trace]}", check: func(t *testing.T, e wireEnv) {
			expect(t, slices.Equal(e.opts.Guard.IgnoreHeaders, []string{"x-trace"}), "Guard = %+v", e.opts.Guard)
		}},
		"egress[].name": {yaml: egress("", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Name == "psp", "Egress = %+v", eroute(e))
		}},
		"egress[].match.host": {yaml: egress("", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Host == "psp.egress.internal", "Egress = %+v", eroute(e))
		}},
		"egress[].match.method": {yaml: strings.Replace(egress("", ""), "{host:", "{method: POST, host:", 1), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Method == "POST", "Egress = %+v", eroute(e))
		}},
		"egress[].match.path": {yaml: strings.Replace(egress("", ""), "{host:", "{path: /v1/*, host:", 1), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Path == "/v1/*", "Egress = %+v", eroute(e))
		}},
		"egress[].upstream": {yaml: egress("", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Upstream.String() == "https://psp.example", "Egress = %+v", eroute(e))
		}},
		"egress[].strip_prefix": {yaml: strings.Replace(egress("", "strip_prefix: /psp"), "{host: psp.egress.internal}", "{path: /psp/*}", 1), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).StripPrefix == "/psp", "Egress = %+v", eroute(e))
		}},
		"egress[].ca_file": {yaml: egress("", "ca_file: DIR/crt.pem"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).RootCAs != nil, "RootCAs = nil, want the ca_file's pool")
		}},
		"egress[].fields[].json": {yaml: egress("", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Fields[0].JSON == "card.number", "Fields = %+v", eroute(e).Fields)
		}},
		"egress[].fields[].form": {yaml: egress("[{form: 'card[number]'}]", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Fields[0].Form == "card[number]", "Fields = %+v", eroute(e).Fields)
		}},
		"egress[].fields[].xml": {yaml: egress("[{xml: /transaction/number}]", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Fields[0].XML == "/transaction/number", "Fields = %+v", eroute(e).Fields)
		}},
		"egress[].fields[].bind": {yaml: egress("[{json: card.number}, {json: card.cvc, bind: card.number}]", ""), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Fields[1].Bind == "card.number", "Fields = %+v", eroute(e).Fields)
		}},
		"egress[].fields[].format":     {yaml: egress("[{json: card.number, format: digits}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].fields[].keep.first": {yaml: egress("[{json: card.number, keep: {first: 8}}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].fields[].keep.last":  {yaml: egress("[{json: card.number, keep: {last: 2}}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].fields[].unique":     {yaml: egress("[{json: card.number, unique: true}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].fields[].store":      {yaml: egress("[{json: card.cvc, format: digits, store: memory, ttl: 1m}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].fields[].ttl":        {yaml: egress("[{json: card.number, ttl: 1m}]", ""), warned: "an egress route reveals tokens and ignores them"},
		"egress[].headers": {yaml: egress("", "headers: {Authorization: 'Bearer {env:PSP_KEY}'}"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Headers["Authorization"] == "Bearer s3cret", "Headers = %q", eroute(e).Headers)
		}},
		"egress[].egress_key": {yaml: egress("", "egress_key: env:EGRESS_KEY"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).EgressKey == "k3y", "EgressKey = %q", eroute(e).EgressKey)
		}},
		"egress[].error_format": {yaml: egress("", "error_format: adyen"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).ErrorFormat == proxy.ErrorFormatAdyen, "ErrorFormat = %q", eroute(e).ErrorFormat)
		}},
		"egress[].timeout": {yaml: egress("", "timeout: 75s"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Timeout == 75*time.Second, "Timeout = %s", eroute(e).Timeout)
		}},
		"egress[].response_ignore": {yaml: egress("", "response_ignore: [charge.network_transaction_id]"), check: func(t *testing.T, e wireEnv) {
			expect(t, slices.Equal(eroute(e).ResponseIgnore, []string{"charge.network_transaction_id"}), "ResponseIgnore = %q", eroute(e).ResponseIgnore)
		}},
		"egress[].response_cards.networks": {yaml: egress("", "response_cards: {networks: [visa]}"), check: func(t *testing.T, e wireEnv) {
			c := eroute(e).ResponseCards
			expect(t, c != nil && c.Takes("4111111111111111") && !c.Takes("5555555555554444"), "ResponseCards take other than Visa")
		}},
		"egress[].response_cards.prefixes": {yaml: egress("", "response_cards: {prefixes: ['51-55']}"), check: func(t *testing.T, e wireEnv) {
			c := eroute(e).ResponseCards
			expect(t, c != nil && c.Takes("5555555555554444") && !c.Takes("4111111111111111"), "ResponseCards take other than 51-55")
		}},
		"egress[].response_cards.lengths": {yaml: egress("", "response_cards: {lengths: [15]}"), check: func(t *testing.T, e wireEnv) {
			c := eroute(e).ResponseCards
			expect(t, c != nil && c.Takes("378282246310005") && !c.Takes("4111111111111111"), "ResponseCards take other than 15 digits")
		}},
		"egress[].egress_key_header": {yaml: egress("", "egress_key: env:EGRESS_KEY\negress_key_header: authorization-bearer\nheaders: {Authorization: 'Bearer {env:PSP_KEY}'}"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).EgressKeyHeader == proxy.EgressKeyBearer, "EgressKeyHeader = %q", eroute(e).EgressKeyHeader)
		}},
		"egress[].unrevealed_tokens": {yaml: egress("", "unrevealed_tokens: refuse"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).RefuseUnrevealed, "RefuseUnrevealed = false, want true")
		}},
		"egress[].guard": {yaml: egress("", "guard: report"), check: func(t *testing.T, e wireEnv) {
			expect(t, eroute(e).Report, "Report = false, want true")
		}},
	}
	rows["tls.egress_ca.key_file"] = rows["tls.egress_ca.cert_file"]
	for _, l := range []string{proxy.ListenerPublic, proxy.ListenerAuth, proxy.ListenerAdmin, proxy.ListenerEgress} {
		doc := "tls: {" + l + ": {cert_file: DIR/crt.pem, key_file: DIR/key.pem}}"
		files := func(t *testing.T, e wireEnv) {
			lt := e.opts.TLS[l]
			expect(t, strings.HasSuffix(lt.CertFile, "/crt.pem") && strings.HasSuffix(lt.KeyFile, "/key.pem"), "TLS[%s] = %+v", l, lt)
		}
		rows["tls."+l+".cert_file"] = wireRow{yaml: doc, check: files}
		rows["tls."+l+".key_file"] = wireRow{yaml: doc, check: files}
		if l != proxy.ListenerAuth {
			rows["tls."+l+".client_ca_file"] = wireRow{yaml: "tls: {" + l + ": {cert_file: DIR/crt.pem, key_file: DIR/key.pem, client_ca_file: DIR/crt.pem}}", refused: "apply to the auth listener only"}
			rows["tls."+l+".client_auth"] = wireRow{yaml: "tls: {" + l + ": {cert_file: DIR/crt.pem, key_file: DIR/key.pem, client_auth: session}}", refused: "apply to the auth listener only"}
		}
	}
	return rows
}

// checkMemoryLimit: limits.memory becomes the runtime's soft memory limit.
func checkMemoryLimit(t *testing.T, e wireEnv) {
	t.Setenv("GOMEMLIMIT", "")
	prev := debug.SetMemoryLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		memoryLimit.Store(0)
		debug.SetMemoryLimit(prev)
	})
	setMemoryLimit(ctx, e.cfg.Limits.Memory, discardLog())
	got := debug.SetMemoryLimit(-1)
	expect(t, got == 96<<20, "runtime memory limit = %d, want 96 MiB", got)
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
