package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReportModeBinary rolls the guard out as the README's "Rolling out a
// rule: report mode" does: tok check warns that the route forwards what
// it would refuse; tok serve forwards a body reject mode would refuse
// (the card field tokenized, the stray card as sent), logs the decision
// without the number, counts it in tok_would_refuse_total and lists it in
// GET /report; a route left in reject mode still refuses.
func TestReportModeBinary(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	got := make(chan string, 4)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer upstream.Close()
	cfg := writeBoltConfig(t, dir, keyring, fmt.Sprintf(`upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    guard: report
    fields:
      - json: card.number
  - name: profile
    match: {method: POST, path: /profile}
    fields:
      - json: card.number
`, upstream.URL))

	code, out, errOut := tok(t, dir, "", "check", "-config", cfg)
	if code != 0 || !strings.Contains(out+errOut, "inbound[0] (checkout) is in report mode: it forwards what it would refuse") {
		t.Errorf("tok check: exit %d, output %q %q; want 0 and a warning that checkout forwards what it would refuse", code, out, errOut)
	}
	if strings.Contains(out+errOut, "inbound[1] (profile) is in report mode") {
		t.Errorf("tok check warns about profile, which rejects: %s", out+errOut)
	}

	const stray = "5555555555554444"
	body := `{"card":{"number":"` + testPAN + `"},"note":"` + stray + `"}`

	// tok explain shows the decision report mode records, and that the
	// request goes on.
	req := writeFile(t, dir, "checkout.http", "POST /checkout HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n"+body+"\n")
	code, out, errOut = tok(t, dir, "", "explain", "-config", cfg, "-json", req)
	var ex explained
	if err := json.Unmarshal([]byte(out), &ex); code != 0 || err != nil {
		t.Fatalf("tok explain: exit %d, %v: %s %s", code, err, out, errOut)
	}
	wantGuard := fmt.Sprintf("report mode: reject mode would refuse this request (card_number_detected at note in the body, byte %d); recorded, then guard.report_then: forward", strings.Index(body, `"`+stray))
	if ex.Guard != wantGuard || !ex.Verdict.Forwarded || strings.Contains(out, stray) {
		t.Errorf("tok explain: guard %q, forwarded %v; want %q, forwarded, and no card number in %s", ex.Guard, ex.Verdict.Forwarded, wantGuard, out)
	}

	s := startTok(t, dir, cfg)
	post := func(path string) int {
		t.Helper()
		resp, err := http.Post("http://"+s.addrs["public"]+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := post("/checkout"); st != http.StatusOK {
		t.Fatalf("POST /checkout = %d, want 200: the checkout route reports", st)
	}
	if sent := <-got; strings.Contains(sent, testPAN) || !strings.Contains(sent, `"note":"`+stray+`"`) {
		t.Errorf("the app received %s; want card.number tokenized and the note as sent", sent)
	}
	if st := post("/profile"); st != http.StatusUnprocessableEntity {
		t.Errorf("POST /profile = %d, want 422: the profile route rejects", st)
	}

	line := s.waitFor(t, "report mode: reject mode would refuse this request")
	if line["level"] != "WARN" || line["route"] != "checkout" || line["code"] != "card_number_detected" || line["path"] != "note" || line["offset"] != float64(strings.Index(body, `"`+stray)) {
		t.Errorf("decision log line %v; want WARN checkout card_number_detected at note, offset %d", line, strings.Index(body, `"`+stray))
	}

	if n := s.wouldRefuse(t, "public", "checkout", "card_number_detected"); n != 1 {
		t.Errorf("tok_would_refuse_total{listener=public,route=checkout,code=card_number_detected} = %v, want 1", n)
	}

	resp, err := http.Get("http://" + s.addrs["admin"] + "/report")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var report struct {
		Total []struct {
			Route, Code string
			Count       int
		}
		Recent []struct {
			Route, Code, Where, Path string
			Offset                   int
		}
	}
	if err := json.Unmarshal(raw, &report); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /report = %d %s: %v", resp.StatusCode, raw, err)
	}
	if strings.Contains(string(raw), stray) || strings.Contains(string(raw), testPAN) {
		t.Errorf("GET /report holds a card number: %s", raw)
	}
	if len(report.Total) != 1 || report.Total[0].Route != "checkout" || report.Total[0].Count != 1 ||
		len(report.Recent) != 1 || report.Recent[0].Path != "note" || report.Recent[0].Where != "body" {
		t.Errorf("GET /report = %s; want checkout counted once, the decision at note in the body", raw)
	}
	s.stop(t)
	if log := s.p.Log(); strings.Contains(log, stray) || strings.Contains(log, testPAN) {
		t.Error("tok's log holds a card number")
	}
}
