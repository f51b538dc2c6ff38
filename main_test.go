package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/postgres"
)

// tok check warns about env:NAME secrets the environment leaves unset,
// which tok serve would refuse to start without.
func TestUnsetSecrets(t *testing.T) {
	cfg := &config.Config{Egress: []config.EgressRoute{{
		Name:      "psp",
		Headers:   map[string]string{"Authorization": "env:PSP_KEY", "X-Plain": "literal"},
		EgressKey: "env:EGRESS_KEY",
	}}}
	env := map[string]string{"EGRESS_KEY": "set"}
	got := unsetSecrets(cfg, func(k string) string { return env[k] })
	if len(got) != 1 || !strings.Contains(got[0], "PSP_KEY") {
		t.Errorf("unsetSecrets = %q, want one warning naming PSP_KEY", got)
	}
	env["PSP_KEY"] = "set"
	if got := unsetSecrets(cfg, func(k string) string { return env[k] }); len(got) != 0 {
		t.Errorf("unsetSecrets with everything set = %q, want none", got)
	}
}

// TestDefaultsInStep: the stores keep their own commit timeout default
// (vault packages do not import proxy); it is the one config fills in.
func TestDefaultsInStep(t *testing.T) {
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"vault.commit_timeout (bolt)", bolt.DefaultCommitTimeout, proxy.DefaultCommitTimeout},
		{"vault.commit_timeout (postgres)", postgres.DefaultTimeout, proxy.DefaultCommitTimeout},
		{"vault.commit_timeout (config)", config.Default().Vault.CommitTimeout, proxy.DefaultCommitTimeout},
	} {
		if c.got != c.want {
			t.Errorf("%s: default %v, proxy's %v", c.key, c.got, c.want)
		}
	}
}

// TestEgressHeaderTemplate: a header template's variables are named by tok
// check and resolved by the wiring.
func TestEgressHeaderTemplate(t *testing.T) {
	cfg := &config.Config{Egress: []config.EgressRoute{{Name: "s", Headers: map[string]string{"Authorization": "Bearer {env:STRIPE_SECRET}"}}}}
	if got := unsetSecrets(cfg, func(string) string { return "" }); len(got) != 1 || !strings.Contains(got[0], "STRIPE_SECRET") {
		t.Errorf("unsetSecrets = %q, want one naming STRIPE_SECRET", got)
	}
	routes, err := egressRoutes([]config.EgressRoute{{Name: "s", Upstream: "https://api.stripe.com",
		Headers: map[string]string{"Authorization": "Bearer {env:STRIPE_SECRET}"}}}, func(string) string { return "sk_x" })
	if err != nil || routes[0].Headers["Authorization"] != "Bearer sk_x" {
		t.Errorf("egressRoutes = %+v, %v; want Authorization Bearer sk_x", routes, err)
	}
}

// TestCANew: tok ca new writes a CA that loads, its key private, and never
// overwrites one.
func TestCANew(t *testing.T) {
	dir := t.TempDir()
	var out, errb strings.Builder
	if code := run([]string{"ca", "new", "-o", dir}, nil, &out, &errb); code != exitOK {
		t.Fatalf("tok ca new = %d: %s", code, errb.String())
	}
	crt, err1 := os.ReadFile(filepath.Join(dir, "egress-ca.crt"))
	key, err2 := os.ReadFile(filepath.Join(dir, "egress-ca.key"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if _, err := proxy.LoadForwardCA(crt, key); err != nil {
		t.Errorf("the CA does not load: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, "egress-ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if code := run([]string{"ca", "new", "-o", dir}, nil, &out, &errb); code == exitOK {
		t.Error("tok ca new overwrote an existing CA")
	}
}

// TestEgressRoutesMapping: every key of an egress route reaches the proxy's
// route.
func TestEgressRoutesMapping(t *testing.T) {
	cfg, err := config.Parse([]byte(`egress:
  - name: s
    match: {host: stripe.egress.internal}
    upstream: https://api.stripe.com
    error_format: stripe
    timeout: 75s
    unrevealed_tokens: refuse
    response_ignore: [latest_charge.payment_method_details.card.network_transaction_id]
    response_cards: {networks: [visa], lengths: [16]}
    egress_key: env:K
    egress_key_header: authorization-bearer
    headers: {Authorization: "Bearer {env:S}"}
    fields: [{xml: /transaction/credit-card/number}]
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	routes, err := egressRoutes(cfg.Egress, func(string) string { return "set" })
	if err != nil {
		t.Fatal(err)
	}
	r := routes[0]
	if r.Host != "stripe.egress.internal" || r.Path != "/*" || r.ErrorFormat != proxy.ErrorFormatStripe || r.Timeout != 75*time.Second ||
		!r.RefuseUnrevealed || len(r.ResponseIgnore) != 1 || r.Fields[0].XML != "/transaction/credit-card/number" ||
		r.EgressKeyHeader != proxy.EgressKeyBearer || r.ResponseCards == nil ||
		!r.ResponseCards.Takes("4111111111111111") || r.ResponseCards.Takes("5555555555554444") {
		t.Errorf("egressRoutes = %+v, want every key mapped", r)
	}
}

// TestREADMEEgressSDKRoutes: the README's Stripe, Adyen and Braintree
// routes validate and map onto the proxy as the text says.
func TestREADMEEgressSDKRoutes(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "Stripe, Adyen and Braintree side by side")
	j := strings.Index(s[max(i, 0):], "```yaml\n")
	if i < 0 || j < 0 {
		t.Fatal("the README lacks the side-by-side egress routes")
	}
	block := s[i+j+len("```yaml\n"):]
	block = block[:strings.Index(block, "```")]
	cfg, err := config.Parse([]byte(block), "README.md")
	if err != nil {
		t.Fatalf("the README's egress routes do not validate: %v", err)
	}
	routes, err := egressRoutes(cfg.Egress, func(string) string { return "set" })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"stripe": proxy.EgressKeyBearer, "adyen": "X-API-Key", "braintree": proxy.EgressKeyBasic}
	for _, r := range routes {
		if r.EgressKeyHeader != want[r.Name] {
			t.Errorf("route %s: egress_key_header %q, want %q", r.Name, r.EgressKeyHeader, want[r.Name])
		}
	}
	// The networks the README lists are the guard's own.
	k := strings.Index(s, "the guard's own table: ")
	if k < 0 {
		t.Fatal("the README does not list the networks")
	}
	list := s[k+len("the guard's own table: "):]
	list = strings.ReplaceAll(list[:strings.Index(list, ")")], "\n", " ")
	var names []string
	for _, n := range strings.Split(list, ",") {
		names = append(names, strings.TrimSpace(n))
	}
	slices.Sort(names)
	if !slices.Equal(names, rewrite.Networks()) {
		t.Errorf("the README lists networks %q, the guard knows %q", names, rewrite.Networks())
	}
	if len(routes) != 3 || routes[0].ResponseCards == nil || !routes[0].ResponseCards.Takes("378282246310005") || routes[0].ResponseCards.Takes("6011111111111117") {
		t.Errorf("the Stripe route's response_cards do not take Visa, Mastercard and Amex only")
	}
}
