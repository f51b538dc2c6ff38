package main

import (
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/proxy"
)

func TestTokConfigIsValid(t *testing.T) {
	for _, upstream := range []string{"http://127.0.0.1:3001", ""} {
		for _, cvc := range []string{"opaque", "digits"} {
			y := tokConfig("127.0.0.1:8081", "127.0.0.1:9091", "", "/tmp/x/tok.db", "/tmp/x/keyring.yaml", "/tmp/x/audit.log", upstream, cvc)
			cfg, err := config.Parse([]byte(y), "bench.yaml")
			if err != nil {
				t.Fatalf("generated config does not parse: %v\n%s", err, y)
			}
			if cfg.Listen.Auth != "" || cfg.Vault.Bolt != "/tmp/x/tok.db" {
				t.Errorf("config %+v: want auth off and the bolt file in the temporary directory", cfg)
			}
			if cfg.Budgets.HandleAnonymous != proxy.MaxBudget || cfg.Budgets.Inbound != proxy.MaxBudget {
				t.Errorf("budgets %+v: want the per-address budgets out of the load's way", cfg.Budgets)
			}
			if upstream == "" {
				if len(cfg.Inbound) != 0 {
					t.Error("a /handle-only config has inbound routes")
				}
				continue
			}
			if len(cfg.Inbound) != 1 || len(cfg.Inbound[0].Fields) != 2 || cfg.Inbound[0].Fields[1].Format.String() != cvc {
				t.Errorf("inbound = %+v, want the two-field checkout route with cvc %s", cfg.Inbound, cvc)
			}
		}
	}
}

func TestTokEgressConfigIsValid(t *testing.T) {
	y := tokConfig("127.0.0.1:8081", "127.0.0.1:9091", "127.0.0.1:8082", "/tmp/x/tok.db", "/tmp/x/keyring.yaml", "/tmp/x/audit.log", "http://127.0.0.1:3001", "opaque")
	cfg, err := config.Parse([]byte(y), "bench.yaml")
	if err != nil {
		t.Fatalf("generated config does not parse: %v\n%s", err, y)
	}
	if cfg.Listen.Egress != "127.0.0.1:8082" || len(cfg.Egress) != 1 {
		t.Fatalf("listen.egress %q, egress %+v: want the egress listener and one route", cfg.Listen.Egress, cfg.Egress)
	}
	r := cfg.Egress[0]
	if r.Upstream != "http://127.0.0.1:3001" || r.Match.Path != egressPrefix+"/*" || r.StripPrefix != egressPrefix ||
		len(r.Fields) != 1 || r.Fields[0].Form != "card[number]" {
		t.Errorf("egress route = %+v, want card[number] revealed on %s/* to the upstream", r, egressPrefix)
	}
	// Without an upstream there is nothing to reach: egress stays off.
	y = tokConfig("127.0.0.1:8081", "127.0.0.1:9091", "127.0.0.1:8082", "/tmp/x/tok.db", "/tmp/x/keyring.yaml", "/tmp/x/audit.log", "", "opaque")
	if cfg, err = config.Parse([]byte(y), "bench.yaml"); err != nil || len(cfg.Egress) != 0 {
		t.Errorf("a /handle-only config: %v, egress %+v; want no egress routes", err, cfg.Egress)
	}
}

func TestFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.conns != 64 || o.rounds != 5 || o.rate != 1000 || o.overload != 30*time.Second || o.overloadX != 1.5 {
		t.Errorf("defaults = %+v", o)
	}
	for _, args := range [][]string{
		{"-rounds", "0"}, {"-duration", "1h"}, {"-conns", "100000"}, {"-prefill", "10"},
		{"-handle", "-chart", "x.png"}, {"-cvc-format", "pan"}, {"extra"}, {"-rate", "0"},
		{"-egress", "-handle"}, {"-egress", "-chart", "x.png"}, {"-egress", "-egress-tokens", "0"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) = nil error", args)
		}
	}
}

func TestChart(t *testing.T) {
	series := []chartSeries{
		{Name: "plain p99", Color: seriesColors[0], Points: []chartPoint{{100, 0.4}, {1000, 0.9}, {5000, 30}}},
		{Name: "tok p99", Color: seriesColors[1], Dashed: true, Points: []chartPoint{{100, 0.6}, {1000, 0}, {5000, 1200}}},
	}
	path := filepath.Join(t.TempDir(), "chart.png")
	if err := writeChart(path, "latency by rate (ms)", series); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != chartW || b.Dy() != chartH {
		t.Errorf("chart is %v", b)
	}
	// Each series' color is drawn somewhere.
	for _, s := range series {
		found := false
		for y := 0; y < chartH && !found; y++ {
			for x := 0; x < chartW && !found; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				found = uint8(r>>8) == s.Color.R && uint8(g>>8) == s.Color.G && uint8(b>>8) == s.Color.B
			}
		}
		if !found {
			t.Errorf("series %s is not drawn", s.Name)
		}
	}
	drawChart("empty", nil) // no data: no panic
	for raw, want := range map[float64]float64{0: 1, 0.3: 0.5, 7: 10, 180: 200, 1234: 2000} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
	for r := range font {
		if strings.ToUpper(string(r)) != string(r) {
			t.Errorf("glyph %q is not drawn: text is drawn in capitals", r)
		}
	}
}
