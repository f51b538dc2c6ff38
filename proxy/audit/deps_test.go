package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHTTPStack: `tok audit verify` reads a file and checks a chain; the
// package it runs on links no HTTP server, client or metrics stack.
func TestNoHTTPStack(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the package's dependencies")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "net/http" || strings.HasPrefix(dep, "github.com/prometheus/") || strings.HasPrefix(dep, "github.com/tokproxy/tok/proxy/") && dep != "github.com/tokproxy/tok/proxy/audit" {
			t.Errorf("proxy/audit depends on %s", dep)
		}
	}
}
