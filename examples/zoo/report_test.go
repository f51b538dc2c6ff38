package zoo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// reportClasses are the corpus classes TestZooReportMode runs: those where
// the guard decides (a card outside the fields in a body, a form, a query
// or a header, on the checkout route and off it). The others test how tok
// reads a request (framing, encodings, syntax), which report mode does not
// change, and TestZoo runs them all.
var reportClasses = []string{"guard", "form", "query", "header"}

// variantResult is what one request of the corpus got.
type variantResult struct {
	forwarded bool
	code      string // tok's error code when it refused
	leaks     []string
}

// TestZooReportMode runs the guard classes of the corpus through tok
// twice per app: as tok.yaml says (reject), then with the checkout route
// in report mode, guard.report_then: tokenize and card_headers. In report
// mode no card reaches the app (the app's own parser says), and
// tok_would_refuse_total counts, per code, exactly the requests reject
// mode refused that report mode let through. With card headers the app's
// parser sees Tok-Card-* headers for the tokenized card, and never one the
// client sent.
func TestZooReportMode(t *testing.T) {
	zoo, all, gaps := zooCorpus(t)
	var cases []corpusCase
	for _, c := range all {
		for _, cl := range reportClasses {
			if c.Class == cl {
				cases = append(cases, c)
			}
		}
	}
	strict := os.Getenv("TOK_ZOO_STRICT") == "1"
	only := os.Getenv("TOK_ZOO_APPS")
	for _, a := range apps {
		if only != "" && !slices.Contains(strings.Split(only, ","), a.name) {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			addr := startApp(t, a, zoo)
			reject := runVariants(t, startTok(t, zoo, addr, nil).Addr("public"), cases)
			p := startTok(t, zoo, addr, func(cfg map[string]any) {
				route := cfg["inbound"].([]any)[0].(map[string]any)
				route["guard"] = "report"
				route["card_headers"] = true
				cfg["guard"].(map[string]any)["report_then"] = "tokenize"
			})
			report := runVariants(t, p.Addr("public"), cases)

			want := map[string]float64{}
			for i, c := range cases {
				for j, r := range report[i] {
					if len(r.leaks) > 0 && (strict || !gaps.has(a.name, c.Name)) {
						t.Errorf("report mode: a card reached %s", describe(a.name, c.Name, r.leaks))
					}
					if rj := reject[i][j]; !rj.forwarded && rj.code != "" && r.forwarded {
						want[rj.code]++
					}
				}
			}
			got := wouldRefuse(t, p)
			t.Logf("%d requests of %d cases; report mode let through, by code: %v", countVariants(report), len(cases), want)
			for code, n := range want {
				if got[code] != n {
					t.Errorf("tok_would_refuse_total{code=%q} = %v; reject mode refused %v requests with it that report mode let through", code, got[code], n)
				}
			}
			for code, n := range got {
				if want[code] == 0 {
					t.Errorf("tok_would_refuse_total{code=%q} = %v; reject mode refused none that report mode let through", code, n)
				}
			}
			if len(want) == 0 {
				t.Error("report mode let through nothing reject mode refused: the corpus subset tests nothing")
			}
			checkCardHeaders(t, p.Addr("public"), a.name)
		})
	}
}

// runVariants sends every variant of every case to tok at addr and returns
// the first answer of each, by case and variant.
func runVariants(t *testing.T, addr string, cases []corpusCase) [][]variantResult {
	t.Helper()
	out := make([][]variantResult, len(cases))
	var wg sync.WaitGroup
	sem := make(chan struct{}, workersPerApp)
	for i, c := range cases {
		vs, err := c.variants()
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		out[i] = make([]variantResult, len(vs))
		for j, v := range vs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				resps, _ := exchange(addr, v)
				r := &out[i][j]
				for k, resp := range resps {
					r.leaks = append(r.leaks, findCards(resp.body, testPANs)...)
					if k > 0 {
						continue
					}
					r.forwarded = resp.outcome == forwarded
					var e struct{ Error string }
					if resp.outcome == refused && json.Unmarshal(resp.body, &e) == nil {
						r.code = e.Error
					}
				}
			})
		}
	}
	wg.Wait()
	return out
}

// wouldRefuse reads tok_would_refuse_total of p's checkout route by code.
func wouldRefuse(t *testing.T, p *tokbin.Proc) map[string]float64 {
	t.Helper()
	if err := p.WaitListening(context.Background(), "admin"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + p.Addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, m := range fams["tok_would_refuse_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["listener"] != "public" || labels["route"] != "checkout" {
			t.Errorf("a decision on %s route %s: only checkout is in report mode", labels["listener"], labels["route"])
		}
		got[labels["code"]] += m.GetCounter().GetValue()
	}
	return got
}

// checkCardHeaders posts a checkout with a forged Tok-Card-Brand header:
// the app's parser must see tok's card headers for the tokenized number
// (its last four digits among them) and not the forged value.
func checkCardHeaders(t *testing.T, addr, app string) {
	t.Helper()
	const forged = "forged-brand"
	body := `{"card":{"number":"4111111111111111"}}`
	req := fmt.Sprintf("POST /checkout HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\nTok-Card-Brand: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", forged, len(body), body)
	resps, err := exchange(addr, []byte(req))
	if err != nil || len(resps) == 0 || resps[0].outcome != forwarded {
		t.Fatalf("%s: checkout with card headers: %v %+v", app, err, resps)
	}
	view := strings.ReplaceAll(strings.ToLower(string(resps[0].body)), "_", "-")
	if bytes.Contains(resps[0].body, []byte("4111111111111111")) {
		t.Errorf("%s: the card number reached the app", app)
	}
	for _, h := range []string{"tok-card-brand", "tok-card-last4", "tok-card-field"} {
		if !strings.Contains(view, h) {
			t.Errorf("%s: the app's parser sees no %s header: %s", app, h, firstLine(resps[0].body))
		}
	}
	if strings.Contains(view, forged) {
		t.Errorf("%s: the client's Tok-Card-Brand reached the app", app)
	}
}

func countVariants(rs [][]variantResult) int {
	n := 0
	for _, r := range rs {
		n += len(r)
	}
	return n
}
