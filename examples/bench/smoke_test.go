package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke runs the whole harness for a moment: it builds tok and its
// opponents, starts them, and runs every stage once, briefly. It checks the
// harness works, not tok's figures. Skipped with -short.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := parseFlags([]string{
		"-duration", "300ms", "-rounds", "1", "-warmup", "0", "-rate", "200", "-open-duration", "300ms",
		"-overload", "500ms", "-overload-conns", "64", "-sweep-duration", "200ms",
		"-chart", filepath.Join(t.TempDir(), "chart.png"),
	}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("harness: %v\n%s", err, out.String())
	}
	for _, want := range []string{"preflight:", "== closed loop: POST /checkout", "== closed loop: POST /cart", "== open loop", "tok store commits (fsync included), from tok's histogram: p50 ≤ ", "== overload", "wrote "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}

// TestSmokeEgress runs the egress benchmark for a moment. Skipped with
// -short.
func TestSmokeEgress(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes; skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := parseFlags([]string{"-egress", "-egress-tokens", "1500", "-duration", "300ms", "-rounds", "2", "-warmup", "0"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("harness: %v\n%s", err, out.String())
	}
	for _, want := range []string{"minted 1500 card tokens", "preflight: both targets answer 2xx", "round 2/2", "egress overhead:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log(out.String())
}
