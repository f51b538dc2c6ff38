package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
)

// serverOptions is proxy.Options for cfg, with what serve opened: the
// vault, its durable store, the audit log and the logger.
func serverOptions(cfg *config.Config, v *vault.Vault, store vault.Durable, audit io.Writer, log *slog.Logger) (proxy.Options, error) {
	opts, err := proxyOptions(cfg, os.Getenv)
	if err != nil {
		return proxy.Options{}, err
	}
	opts.Vault, opts.Store, opts.Audit, opts.Logger, opts.Backup = v, store, audit, log, backupOf(store)
	return opts, nil
}

// volatileFormats are the formats of the unbound values cfg puts in the
// volatile store (fields with store: memory and no bind): the vault looks a
// new durable token up in the volatile store only if its format is one of
// them. Bound values are stored under card/token keys, which no durable
// token equals.
func volatileFormats(cfg *config.Config) []vault.Format {
	var out []vault.Format
	for _, r := range cfg.Inbound {
		for _, f := range r.Fields {
			if f.Store == config.StoreMemory && f.Bind == "" {
				out = append(out, f.Format)
			}
		}
	}
	return out
}

// proxyOptions maps the config onto proxy.Options: every key the proxy
// reads (the stores, keyring, audit log and memory limit are serve's own).
// getenv resolves the env:NAME secrets of egress routes; the CA files the
// config names are read.
func proxyOptions(cfg *config.Config, getenv func(string) string) (proxy.Options, error) {
	clients := make([]proxy.Client, len(cfg.Clients))
	for i, c := range cfg.Clients {
		clients[i] = proxy.Client{Name: c.Name, SecretHash: c.SecretHash, Reveal: c.Reveal, Delete: c.Delete,
			HandleBudget: c.HandleBudget, RevealBudget: c.RevealBudget}
	}
	routes := make([]proxy.Route, len(cfg.Inbound))
	for i, r := range cfg.Inbound {
		routes[i] = proxy.Route{Name: r.Name, Method: r.Match.Method, Path: r.Match.Path, Uninspected: !r.Inspected(), CardHeaders: r.CardHeaders, Guard: r.Guard}
		for _, f := range r.Fields {
			spec, err := f.Spec()
			if err != nil {
				return proxy.Options{}, fmt.Errorf("inbound route %s, field %s: %w", r.Name, f.Selector(), err)
			}
			routes[i].Fields = append(routes[i].Fields, proxy.RouteField{JSON: f.JSON, Form: f.Form, XML: f.XML, Spec: spec, Bind: f.Bind})
		}
	}
	var upstream *url.URL
	if cfg.Upstream != "" {
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("upstream: %w", err)
		}
		upstream = u
	}
	egress, err := egressRoutes(cfg.Egress, getenv)
	if err != nil {
		return proxy.Options{}, err
	}
	var forwardCA *proxy.ForwardCA
	if c := cfg.TLS.EgressCA; c != nil {
		crt, err := os.ReadFile(c.CertFile)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
		key, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
		if forwardCA, err = proxy.LoadForwardCA(crt, key); err != nil {
			return proxy.Options{}, fmt.Errorf("tls.egress_ca: %w", err)
		}
	}
	return proxy.Options{
		Listen:                 proxy.Listen{Public: cfg.Listen.Public, Auth: cfg.Listen.Auth, Admin: cfg.Listen.Admin, Egress: cfg.Listen.Egress},
		Clients:                clients,
		MaxBody:                int64(cfg.Limits.MaxBody),
		SessionIdle:            cfg.Session.Idle,
		SessionMax:             cfg.Session.Max,
		LockoutThreshold:       cfg.Lockout.Threshold,
		LockoutDuration:        cfg.Lockout.Duration,
		CommitTimeout:          cfg.Vault.CommitTimeout,
		LockoutClientThreshold: cfg.Lockout.ClientThreshold,
		LoginSourceRate:        cfg.Lockout.SourceRate,
		Upstream:               upstream,
		Routes:                 routes,
		Guard:                  proxy.GuardOptions{Mode: cfg.Guard.Mode, Ignore: cfg.Guard.Ignore, IgnoreHeaders: cfg.Guard.IgnoreHeaders, ReportThen: cfg.Guard.ReportThen},
		MaxDepth:               cfg.Limits.MaxDepth,
		MaxInFlight:            cfg.Limits.MaxInFlight,
		Egress:                 egress,
		TLS:                    listenerTLS(cfg.TLS),
		ForwardCA:              forwardCA,
		Budgets: proxy.Budgets{Window: cfg.Budgets.Window, HandleAnonymous: cfg.Budgets.HandleAnonymous,
			HandleClient: cfg.Budgets.HandleClient, Inbound: cfg.Budgets.Inbound, Reveal: cfg.Budgets.Reveal,
			TrustedProxies: cfg.Budgets.Sources()},
	}, nil
}

// vaultQuota is limits.vault_bytes as a quota on store, or nil when the
// limit is 0 (off) or the store cannot tell its size.
// vaultOptions are the vault's options from cfg and the store's quota
// (nil: none), the same at start and on every reload: a reload that
// dropped one, the quota say, would lift a limit the config still sets.
func vaultOptions(cfg *config.Config, mem vault.Store, quota *vault.Quota) []vault.Option {
	opts := []vault.Option{vault.WithVolatile(mem), vault.WithVolatileFormats(volatileFormats(cfg)...)}
	if quota != nil {
		opts = append(opts, vault.WithQuota(quota))
	}
	return opts
}

func vaultQuota(cfg *config.Config, store vault.Durable) *vault.Quota {
	sizer, ok := store.(vault.Sizer)
	if !ok || cfg.Limits.VaultBytes <= 0 {
		return nil
	}
	return vault.NewQuota(int64(cfg.Limits.VaultBytes), sizer.Size)
}

// backupOf is the store's online snapshot for GET /backup, when it has one
// (bbolt does; PostgreSQL has its own backup tools).
func backupOf(store vault.Durable) func(context.Context, io.Writer) (int64, error) {
	if b, ok := store.(interface {
		Backup(context.Context, io.Writer) (int64, error)
	}); ok {
		return b.Backup
	}
	return nil
}

// listenerTLS maps the config's tls section onto proxy listener names.
func listenerTLS(t config.TLS) map[string]proxy.ListenerTLS {
	out := map[string]proxy.ListenerTLS{}
	for name, lt := range map[string]*config.ListenerTLS{
		proxy.ListenerPublic: t.Public, proxy.ListenerAuth: t.Auth, proxy.ListenerAdmin: t.Admin, proxy.ListenerEgress: t.Egress,
	} {
		if lt != nil {
			out[name] = proxy.ListenerTLS{CertFile: lt.CertFile, KeyFile: lt.KeyFile, ClientCAFile: lt.ClientCAFile, ClientAuth: lt.ClientAuth}
		}
	}
	return out
}

// egressRoutes maps the config's egress routes onto proxy.EgressRoute,
// reading "env:NAME" secrets from the environment and CA bundles from disk.
// Secrets never appear in an error.
func egressRoutes(routes []config.EgressRoute, getenv func(string) string) ([]proxy.EgressRoute, error) {
	out := make([]proxy.EgressRoute, len(routes))
	for i, r := range routes {
		u, err := url.Parse(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("egress route %s: upstream: %w", r.Name, err)
		}
		er := proxy.EgressRoute{Name: r.Name, Method: r.Match.Method, Path: r.Match.Path, Host: r.Match.Host, Upstream: u,
			StripPrefix: r.StripPrefix, Headers: map[string]string{},
			ErrorFormat: r.ErrorFormat, Timeout: r.Timeout, ResponseIgnore: r.ResponseIgnore,
			RefuseUnrevealed: r.UnrevealedTokens == config.UnrevealedRefuse, EgressKeyHeader: r.EgressKeyHeader,
			Report: r.Guard != nil && *r.Guard == rewrite.GuardReport}
		if rc := r.ResponseCards; rc != nil {
			if er.ResponseCards, err = rewrite.NewCardSet(rc.Networks, rc.Prefixes, rc.Lengths); err != nil {
				return nil, fmt.Errorf("egress route %s: %w", r.Name, err)
			}
		}
		for _, f := range r.Fields {
			er.Fields = append(er.Fields, proxy.RouteField{JSON: f.JSON, Form: f.Form, XML: f.XML, Bind: f.Bind})
		}
		for k, v := range r.Headers {
			if er.Headers[k], err = config.Resolve(v, getenv); err != nil {
				return nil, fmt.Errorf("egress route %s: header %s: %w", r.Name, k, err)
			}
		}
		if r.EgressKey != "" {
			if er.EgressKey, err = config.Resolve(r.EgressKey, getenv); err != nil {
				return nil, fmt.Errorf("egress route %s: egress_key: %w", r.Name, err)
			}
		}
		if r.CAFile != "" {
			pem, err := os.ReadFile(r.CAFile)
			if err != nil {
				return nil, fmt.Errorf("egress route %s: ca_file: %w", r.Name, err)
			}
			er.RootCAs = x509.NewCertPool()
			if !er.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("egress route %s: ca_file %s holds no PEM certificate", r.Name, r.CAFile)
			}
		}
		out[i] = er
	}
	return out, nil
}
