package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/examples/internal/tokbin"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
)

// target is one proxy under test.
type target struct {
	name string // "plain" or "tok"
	addr string // host:port clients send to
	p    *tokbin.Proc
}

// env is the running set of processes and where they keep their files.
type env struct {
	dir        string
	keep       bool
	procs      procs
	upstream   string  // address of the trivial upstream app
	plain, tok *target // plain is nil with -handle
	// tokEgress is tok's egress listener (the same process as tok), with
	// -egress; nil otherwise.
	tokEgress  *target
	metricsURL string // tok's /metrics
	// handle are the -handle targets (tok on each store of -stores), with
	// -handle; tok is then nil.
	handle []*handleTarget
	// cleanups run after the processes are stopped (dropping the
	// benchmark's PostgreSQL schema), last first.
	cleanups []func(io.Writer)
}

// close stops the processes and removes the temporary directory.
func (e *env) close(out io.Writer) {
	e.procs.stopAll()
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i](out)
	}
	if e.keep {
		fmt.Fprintf(out, "kept %s (binaries, config, logs, vault)\n", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

// setup builds the binaries and starts the processes. The returned env, if
// not nil, must be closed even when err is not nil.
func setup(ctx context.Context, o options, out io.Writer) (*env, error) {
	root := o.root
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		if root, err = tokbin.ModuleRoot(wd); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "tok-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	e := &env{dir: dir, keep: o.keep}
	tokBin, upstreamBin, plainBin, err := build(ctx, root, dir, o.tokBin, out)
	if err != nil {
		return e, err
	}
	keyring := filepath.Join(dir, "keyring.yaml")
	if err := runQuiet(ctx, dir, tokBin, "keys", "new", "-o", keyring); err != nil {
		return e, err
	}
	boltPath := filepath.Join(dir, "tok.db")
	if o.prefill > 0 {
		if err := prefill(boltPath, keyring, o.prefill, out); err != nil {
			return e, err
		}
	}

	if o.handle {
		return e, setupHandle(ctx, e, o, tokBin, keyring, boltPath, out)
	}

	var upstreamURL string
	if !o.handle {
		if e.upstream, err = freePort(); err != nil {
			return e, err
		}
		up, err := e.procs.start(dir, "upstream", upstreamBin, "-addr", e.upstream)
		if err != nil {
			return e, err
		}
		if err := up.Poll(ctx, tokbin.TCPReady(e.upstream)); err != nil {
			return e, err
		}
		upstreamURL = "http://" + e.upstream

		e.plain = &target{name: "plain"}
		if e.plain.addr, err = freePort(); err != nil {
			return e, err
		}
		idle := fmt.Sprint(max(o.conns, o.overloadConns))
		if e.plain.p, err = e.procs.start(dir, "plainproxy", plainBin, "-addr", e.plain.addr, "-upstream", upstreamURL, "-idle", idle); err != nil {
			return e, err
		}
		if err := e.plain.p.Poll(ctx, tokbin.TCPReady(e.plain.addr)); err != nil {
			return e, err
		}
	}

	e.tok = &target{name: "tok"}
	if e.tok.addr, err = freePort(); err != nil {
		return e, err
	}
	admin, err := freePort()
	if err != nil {
		return e, err
	}
	egressAddr := ""
	if o.egress {
		if egressAddr, err = freePort(); err != nil {
			return e, err
		}
	}
	cfgPath := filepath.Join(dir, "tok.yaml")
	cfg := tokConfig(e.tok.addr, admin, egressAddr, boltPath, keyring, filepath.Join(dir, "audit.log"), upstreamURL, o.cvcFormat)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return e, fmt.Errorf("write tok config: %w", err)
	}
	if err := runQuiet(ctx, dir, tokBin, "check", "-config", cfgPath); err != nil {
		return e, err
	}
	env := tokEnv("")
	if o.volatileURL != "" {
		env = append(env, config.EnvRedisURL+"="+o.volatileURL)
	}
	if e.tok.p, err = e.procs.startEnv(dir, "tok", tokBin, env, "serve", "-config", cfgPath); err != nil {
		return e, err
	}
	if err := e.tok.p.Poll(ctx, tokbin.HTTPReady("http://"+admin+"/readyz")); err != nil {
		return e, err
	}
	e.metricsURL = "http://" + admin + "/metrics"
	if o.egress {
		e.tokEgress = &target{name: "tok", addr: egressAddr, p: e.tok.p}
		if err := e.tok.p.Poll(ctx, tokbin.TCPReady(egressAddr)); err != nil {
			return e, err
		}
	}
	fmt.Fprintf(out, "started: upstream %s, plain proxy %s, tok %s (egress %s, admin %s), files in %s\n",
		orNone(e.upstream), orNone(addrOf(e.plain)), e.tok.addr, orNone(egressAddr), admin, dir)
	return e, nil
}

func addrOf(t *target) string {
	if t == nil {
		return ""
	}
	return t.addr
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// tokEnv is the environment tok runs in: the harness's own without the
// variables that would override the config (TOK_POSTGRES_URL, TOK_KEYRING),
// and with TOK_POSTGRES_URL=pgURL if pgURL is not empty, which is how a
// PostgreSQL URL reaches tok (the config refuses one with a password).
func tokEnv(pgURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, config.EnvPostgresURL+"=") || strings.HasPrefix(kv, config.EnvKeyring+"=") || strings.HasPrefix(kv, config.EnvRedisURL+"=") {
			continue
		}
		env = append(env, kv)
	}
	if pgURL != "" {
		env = append(env, config.EnvPostgresURL+"="+pgURL)
	}
	return env
}

// cvcTTL is how long tok keeps each CVC in memory in the harness. The
// memory store holds about rate × (ttl + 1 s) CVCs and refuses checkouts
// with 503 volatile_store_full past limits.volatile_records (262,144), so
// the README's rule applies: size the ttl from the cap and the rate. The
// closed loop reaches 15-25k checkouts/s on 2 cores, so 5 s; a 15-minute
// ttl would fill the store within 15 s. (In the shop the CVC is revealed
// by the authorization call that follows the checkout: seconds.)
const cvcTTL = "5s"

// CVC formats of -cvc-format. The default is the README's: a digits token
// bound to the card number (unique per card token, so it never runs out).
const (
	cvcBound  = "bound"  // digits, bind: card.number
	cvcDigits = "digits" // digits, unbound: ~900 live 3-digit tokens in all
	cvcOpaque = "opaque" // tok_ and 22 base62 characters
)

// cvcTokenFormat is the token format a -cvc-format value configures.
func cvcTokenFormat(f string) string {
	if f == cvcBound {
		return cvcDigits
	}
	return f
}

// cvcBind is the bind line a -cvc-format value adds to card.cvc, if any.
func cvcBind(f string) string {
	if f == cvcBound {
		return "        bind: card.number\n"
	}
	return ""
}

// tokConfig is the config tok runs with: the public listener in front of
// upstream (none: POST /handle only) with the two-field checkout route
// (card.cvc in cvcFormat), the admin listener for readiness and metrics,
// the auth listener off, and every file in the temporary directory. With
// an egress address (and an upstream), the egress listener serves the
// route egressPrefix/* to upstream, revealing the token at card[number].
func tokConfig(public, admin, egress, boltPath, keyring, audit, upstream, cvcFormat string) string {
	var b strings.Builder
	if egress == "" || upstream == "" {
		egress = "off"
	}
	fmt.Fprintf(&b, "listen: {public: %q, auth: off, admin: %q, egress: %q}\n", public, admin, egress)
	if boltPath == "" { // the store comes from TOK_POSTGRES_URL
		fmt.Fprintf(&b, "vault: {keyring: %q}\n", keyring)
	} else {
		fmt.Fprintf(&b, "vault: {bolt: %q, keyring: %q}\n", boltPath, keyring)
	}
	fmt.Fprintf(&b, "audit: {path: %q}\n", audit)
	// The load comes from one address and measures throughput: the
	// per-address budgets would refuse it within seconds.
	fmt.Fprintf(&b, "budgets: {handle_anonymous: %d, inbound: %d}\n", proxy.MaxBudget, proxy.MaxBudget)
	if upstream == "" {
		return b.String()
	}
	fmt.Fprintf(&b, "upstream: %q\n", upstream)
	fmt.Fprintf(&b, `inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
      - json: card.cvc
        format: %s
        store: memory
        ttl: %s
%sguard: {mode: reject}
`, cvcTokenFormat(cvcFormat), cvcTTL, cvcBind(cvcFormat))
	if egress != "off" {
		// No egress key: the plain proxy has none to check either.
		fmt.Fprintf(&b, `egress:
  - name: psp
    match: {method: POST, path: %s/*}
    upstream: %q
    strip_prefix: %s
    fields:
      - form: card[number]
`, egressPrefix, upstream, egressPrefix)
	}
	return b.String()
}

// prefill writes n records into a new vault at boltPath, sealed under the
// keyring file's keys, before tok opens it.
func prefill(boltPath, keyringPath string, n int, out io.Writer) error {
	b, err := os.ReadFile(keyringPath)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	kf, err := vault.ParseKeyringFile(b)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	keys, err := vault.NewKeyring(kf)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	s, err := bolt.Open(boltPath, bolt.Options{})
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	start := time.Now()
	if err := bolt.Prefill(s, n, keys); err != nil {
		s.Close()
		return fmt.Errorf("prefill: %w", err)
	}
	if err := s.Close(); err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	st, err := os.Stat(boltPath)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	fmt.Fprintf(out, "prefilled the vault with %d records in %v (%s on disk, %d bytes/record)\n",
		n, time.Since(start).Round(time.Millisecond), fmtBytes(st.Size()), st.Size()/int64(n))
	return nil
}

// build compiles tok (unless tokBin is given), the upstream and the plain
// proxy into dir and returns the paths of the three binaries.
func build(ctx context.Context, root, dir, tokBin string, out io.Writer) (tok, upstream, plain string, err error) {
	pkgs := []string{"./examples/bench/upstream", "./examples/bench/plainproxy"}
	if tokBin == "" {
		pkgs = append([]string{"."}, pkgs...)
	}
	fmt.Fprintf(out, "building %s in %s ...\n", strings.Join(pkgs, " "), root)
	bins, err := tokbin.BuildPackages(ctx, root, dir, pkgs...)
	if err != nil {
		return "", "", "", err
	}
	if tokBin == "" {
		tokBin, bins = bins[0], bins[1:]
	}
	return tokBin, bins[0], bins[1], nil
}

// runQuiet runs a short tok command; its output comes with an error only.
func runQuiet(ctx context.Context, dir, bin string, args ...string) error {
	_, err := tokbin.Run(ctx, bin, dir, args...)
	return err
}
