package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// wouldRefuseCount is tok_would_refuse_total for route and code.
func (e *inboundEnv) wouldRefuseCount(t *testing.T, route, code string) float64 {
	t.Helper()
	var m dto.Metric
	if err := e.srv.metrics.wouldRefuse.WithLabelValues(ListenerPublic, route, code).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// report fetches GET /report from the admin listener.
func (e *inboundEnv) report(t *testing.T) reportView {
	t.Helper()
	r := do(t, e.client, "GET", e.admin.URL+"/report", "", "")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET /report: status %d (%s)", r.StatusCode, r.body)
	}
	if pan := findPAN(r.body); pan != "" {
		t.Errorf("GET /report holds a card number: %s", r.body)
	}
	var v reportView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("GET /report: %v in %s", err, r.body)
	}
	return v
}

// rejectOffset is the byte offset reject mode's refusal of body names on
// the checkout route: what report mode must record.
func rejectOffset(t *testing.T, body string) (string, int) {
	t.Helper()
	rw, err := rewrite.New(rewrite.Config{Guard: rewrite.GuardReject, ReadAll: true, Ignore: []string{"order.id"},
		Fields: []rewrite.Field{{JSON: "card.number"}, {JSON: "card.cvc", Spec: 1}, {JSON: "items.#.card.number", Spec: 2}, {Form: "card[number]", Spec: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = rw.Rewrite([]byte(body), "application/json", dryReplace)
	var re *rewrite.Error
	if !errors.As(err, &re) || re.Code != rewrite.CodeCardNumberDetected {
		t.Fatalf("reject mode: %v, want card_number_detected", err)
	}
	return re.Path, re.Offset
}

// TestReportForward: in report mode a request reject mode would refuse
// reaches the app unchanged (the route's fields still tokenized), and the
// decision shows in the metric, the log and GET /report with reject mode's
// code, path and offset, never the number.
func TestReportForward(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Guard.Mode = rewrite.GuardReport }})
	body := `{"card":{"number":"` + panVisa + `"},"note":"pay with ` + panMC + `"}`
	path, offset := rejectOffset(t, body)

	n := e.up.count()
	r := e.send("POST", "/checkout", "application/json", []byte(body))
	if r.StatusCode != http.StatusOK || e.up.count() != n+1 {
		t.Fatalf("status %d (%s), upstream got %d requests; want 200 and the request forwarded", r.StatusCode, r.body, e.up.count()-n)
	}
	got := string(e.up.since(n)[0].Body)
	if strings.Contains(got, panVisa) || !strings.Contains(got, `"note":"pay with `+panMC+`"`) {
		t.Errorf("the upstream received %s; want card.number tokenized and the note as sent", got)
	}
	if c := e.wouldRefuseCount(t, "checkout", "card_number_detected"); c != 1 {
		t.Errorf("tok_would_refuse_total{route=checkout,code=card_number_detected} = %v, want 1", c)
	}
	var line map[string]any
	for l := range strings.SplitSeq(e.log.String(), "\n") {
		if strings.Contains(l, "report mode") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line["level"] != "WARN" || line["route"] != "checkout" || line["code"] != "card_number_detected" || line["path"] != path || line["offset"] != float64(offset) || line["where"] != "body" {
		t.Errorf("log line %v; want WARN route checkout, code card_number_detected, where body, path %q, offset %d", line, path, offset)
	}

	// A card in a header, then one in the query, on a path without a
	// route; then both in one request, which reject mode refuses once, for
	// the first it reads (the header).
	n = e.up.count()
	if r := e.send("GET", "/account", "", nil, "X-Card-Number", panVisa); r.StatusCode != http.StatusOK || e.up.count() != n+1 {
		t.Fatalf("status %d (%s); want 200 and the request forwarded", r.StatusCode, r.body)
	}
	if r := e.send("GET", "/account?ref="+panMC, "", nil); r.StatusCode != http.StatusOK || e.up.count() != n+2 {
		t.Fatalf("status %d (%s); want 200 and the request forwarded", r.StatusCode, r.body)
	}
	if r := e.send("GET", "/account?ref="+panMC, "", nil, "X-Card-Number", panVisa); r.StatusCode != http.StatusOK || e.up.count() != n+3 {
		t.Fatalf("status %d (%s); want 200 and the request forwarded", r.StatusCode, r.body)
	}
	if u := e.up.since(n)[2]; u.Header.Get("X-Card-Number") != panVisa || u.RawQuery != "ref="+panMC {
		t.Errorf("the upstream received header %q, query %q; want both as sent", u.Header.Get("X-Card-Number"), u.RawQuery)
	}
	if c := e.wouldRefuseCount(t, noRouteLabel, "card_number_detected"); c != 3 {
		t.Errorf("tok_would_refuse_total{route=-} = %v, want 3 (one per request)", c)
	}

	v := e.report(t)
	want := []reportCount{{ListenerPublic, noRouteLabel, "card_number_detected", 3}, {ListenerPublic, "checkout", "card_number_detected", 1}}
	if len(v.Total) != 2 || v.Total[0] != want[0] || v.Total[1] != want[1] {
		t.Errorf("GET /report total = %+v, want %+v", v.Total, want)
	}
	if len(v.Minutes) > 2 || len(v.Recent) != 4 {
		t.Fatalf("GET /report: %d minutes and %d recent, want 1 (or 2, across a minute) and 4: %+v", len(v.Minutes), len(v.Recent), v)
	}
	if d := v.Recent[3]; d.Route != "checkout" || d.Where != "body" || d.Path != path || d.Offset != offset {
		t.Errorf("oldest decision %+v; want checkout body %q at %d", d, path, offset)
	}
	if d := v.Recent[2]; d.Where != "request" || d.Path != "header X-Card-Number" {
		t.Errorf("decision %+v; want the header", d)
	}
	if d := v.Recent[1]; d.Where != "query" || d.Path != "ref" {
		t.Errorf("decision %+v; want the query key ref", d)
	}
	if d := v.Recent[0]; d.Where != "request" {
		t.Errorf("newest decision %+v; want the header, which reject mode reads first", d)
	}

	// A request reject mode passes is not recorded.
	n = e.up.count()
	e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"}}`)), n)
	if got := e.report(t); len(got.Recent) != 4 {
		t.Errorf("GET /report lists %d decisions after a clean request, want still 4", len(got.Recent))
	}
	// A request refused anyway (a field that is not a card number) is a
	// refusal, not a decision report mode let through: not recorded.
	n = e.up.count()
	e.refused(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"x"},"note":"`+panMC+`"}`)),
		n, http.StatusUnprocessableEntity, CodeInvalidCardNumber)
	if c := e.wouldRefuseCount(t, "checkout", "card_number_detected"); c != 1 {
		t.Errorf("tok_would_refuse_total{route=checkout} = %v after a refused request, want still 1", c)
	}
}

// TestReportTokenize: report_then tokenize acts as tokenize mode and
// records what reject mode would have refused: the card in the body is
// tokenized and recorded, a card in a header refused (and so not recorded:
// nothing was let through).
func TestReportTokenize(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Guard.Mode, o.Guard.ReportThen = rewrite.GuardReport, ReportTokenize
	}})
	n := e.up.count()
	e.forwarded(t, e.send("POST", "/checkout", "application/json", []byte(`{"card":{"number":"`+panVisa+`"},"note":"`+panMC+`"}`)), n)
	if c := e.wouldRefuseCount(t, "checkout", "card_number_detected"); c != 1 {
		t.Errorf("tok_would_refuse_total = %v, want 1", c)
	}
	n = e.up.count()
	e.refused(t, e.send("GET", "/", "", nil, "X-Card-Number", panVisa), n, http.StatusUnprocessableEntity, "card_number_detected")
	if c := e.wouldRefuseCount(t, noRouteLabel, "card_number_detected"); c != 0 {
		t.Errorf("tok_would_refuse_total{route=-} = %v, want 0: the header is refused", c)
	}
}

// TestReportOneRoute: one route in report mode while the rest reject.
func TestReportOneRoute(t *testing.T) {
	t.Parallel()
	report := rewrite.GuardReport
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) { o.Routes[0].Guard = &report }})
	body := []byte(`{"card":{"number":"` + panVisa + `"},"note":"` + panMC + `"}`)
	n := e.up.count()
	if r := e.send("POST", "/checkout", "application/json", body); r.StatusCode != http.StatusOK || e.up.count() != n+1 {
		t.Fatalf("checkout: status %d (%s); want 200 and the request forwarded", r.StatusCode, r.body)
	}
	n = e.up.count()
	e.refused(t, e.send("POST", "/profile", "application/json", body), n, http.StatusUnprocessableEntity, "card_number_detected")
	v := e.report(t)
	if len(v.Total) != 1 || v.Total[0] != (reportCount{ListenerPublic, "checkout", "card_number_detected", 1}) {
		t.Errorf("GET /report total = %+v, want checkout once", v.Total)
	}
}

// TestReportAdminOnly: GET /report is an admin endpoint: cross-site
// requests are refused like the other admin operations'.
func TestReportAdminOnly(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t, inboundConfig{})
	r := do(t, e.client, "GET", e.admin.URL+"/report", "", "", "Sec-Fetch-Site", "cross-site")
	wantError(t, r, http.StatusForbidden, CodeCrossSite)
	if r := do(t, e.client, "GET", e.public.URL+"/report", "", ""); strings.Contains(string(r.body), `"recent"`) {
		t.Errorf("the public listener answers /report: %s", r.body)
	}
}

// TestReportWindow: GET /report counts the last hour by minute; a decision
// older than that leaves the counts but stays among the latest.
func TestReportWindow(t *testing.T) {
	rp := newReports()
	t0 := time.Date(2026, 12, 5, 10, 0, 30, 0, time.UTC)
	rp.add(Decision{Time: t0, Route: "checkout", Code: "card_number_detected"})
	rp.add(Decision{Time: t0.Add(time.Minute), Route: "checkout", Code: "card_number_detected"})
	rp.add(Decision{Time: t0.Add(time.Minute), Route: "-", Code: "card_number_detected"})
	v := rp.view(t0.Add(2 * time.Minute))
	if len(v.Minutes) != 2 || len(v.Total) != 2 || v.Total[1] != (reportCount{"", "checkout", "card_number_detected", 2}) {
		t.Errorf("view = %+v, want 2 minutes and checkout counted twice", v)
	}
	v = rp.view(t0.Add(60 * time.Minute))
	if len(v.Minutes) != 1 || len(v.Total) != 2 || v.Total[1].Count != 1 || len(v.Recent) != 3 {
		t.Errorf("an hour on: view = %+v, want the first minute gone from the counts, all 3 still recent", v)
	}
	if v := rp.view(t0.Add(3 * time.Hour)); len(v.Total) != 0 || len(v.Minutes) != 0 || len(v.Recent) != 3 {
		t.Errorf("three hours on: view = %+v, want no counts, 3 recent", v)
	}
	// A slot reused an hour later counts afresh.
	rp.add(Decision{Time: t0.Add(time.Hour), Route: "checkout", Code: "card_number_detected"})
	if v := rp.view(t0.Add(time.Hour)); len(v.Minutes) != 2 || len(v.Minutes[1].Counts) != 1 || v.Minutes[1].Counts[0] != (reportCount{"", "checkout", "card_number_detected", 1}) {
		t.Errorf("reused minute: view = %+v, want its minute to count checkout once", v)
	}
	for i := range reportRecent + 5 {
		rp.add(Decision{Time: t0.Add(time.Hour), Route: "r", Code: "c", Offset: i})
	}
	if got := rp.since(rp.count() - 2); len(got) != 2 || got[1].Offset != reportRecent+4 {
		t.Errorf("since = %+v, want the last two", got)
	}
	if v := rp.view(t0.Add(time.Hour)); len(v.Recent) != reportRecent || v.Recent[0].Offset != reportRecent+4 {
		t.Errorf("recent holds %d, newest %+v; want %d, newest first", len(v.Recent), v.Recent[0], reportRecent)
	}
}
