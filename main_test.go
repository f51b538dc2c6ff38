package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
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

// TestBudgetDefaults: the proxy's defaults for budgets left zero are the
// config's documented ones (default.yaml), so a library user and a config
// user get the same oracle bounds.
func TestBudgetDefaults(t *testing.T) {
	c := config.Default().Budgets
	p := proxy.Budgets{Window: proxy.DefaultBudgetWindow, HandleAnonymous: proxy.DefaultHandleAnonymousBudget,
		HandleClient: proxy.DefaultHandleClientBudget, Inbound: proxy.DefaultInboundBudget, Reveal: proxy.DefaultRevealBudget}
	want := proxy.Budgets{Window: c.Window, HandleAnonymous: c.HandleAnonymous, HandleClient: c.HandleClient,
		Inbound: c.Inbound, Reveal: c.Reveal}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("proxy budget defaults %+v, config defaults %+v: want the same", p, want)
	}
	if proxy.AnonymousClient != config.AnonymousClient {
		t.Errorf("proxy.AnonymousClient %q, config.AnonymousClient %q", proxy.AnonymousClient, config.AnonymousClient)
	}
	if proxy.MaxBudget != config.MaxBudget {
		t.Errorf("proxy.MaxBudget %d, config.MaxBudget %d", proxy.MaxBudget, config.MaxBudget)
	}
}

// TestDefaultsInStep: where proxy or a store keeps its own default for a
// config key (used when a caller leaves the option zero), it is the
// config's, which default.yaml documents (config's TestEmbeddedDefault).
func TestDefaultsInStep(t *testing.T) {
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"vault.commit_timeout (proxy)", proxy.DefaultCommitTimeout, config.DefaultCommitTimeout},
		{"vault.commit_timeout (bolt)", bolt.DefaultCommitTimeout, config.DefaultCommitTimeout},
		{"vault.commit_timeout (postgres)", postgres.DefaultTimeout, config.DefaultCommitTimeout},
		{"lockout.threshold", proxy.DefaultLockoutThreshold, config.DefaultLockoutThreshold},
		{"lockout.duration", proxy.DefaultLockoutDuration, config.DefaultLockoutDuration},
		{"lockout.client_threshold", proxy.DefaultLockoutClientThreshold, config.DefaultLockoutClientThreshold},
		{"lockout.source_rate", proxy.DefaultLoginSourceRate, config.DefaultLockoutSourceRate},
		{"session.idle", proxy.DefaultSessionIdle, config.DefaultSessionIdle},
		{"session.max", proxy.DefaultSessionMax, config.DefaultSessionMax},
	} {
		if c.got != c.want {
			t.Errorf("%s: default %v, config's %v", c.key, c.got, c.want)
		}
	}
}
