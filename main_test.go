package main

import (
	"strings"
	"testing"

	"github.com/tokproxy/tok/config"
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
