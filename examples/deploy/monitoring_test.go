package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// The monitoring files under test, relative to this directory.
const (
	alertRules = "prometheus/tok-alerts.yaml"
	dashboard  = "grafana/tok-dashboard.json"
	readme     = "../../README.md"
)

// targetLabels are the labels Prometheus attaches to every series of a
// target (job, instance) and the one the rules ask operators to set on
// targets whose audit log is stdout: they are never in tok's exposition.
var targetLabels = []string{"job", "instance", "audit_log"}

// enumerated are the labels whose every value tok exports from the start
// (series present at 0, such as each route's latency histogram): a matcher
// on them must match a value tok has on some metric.
var enumerated = []string{"route", "budget", "path"}

func TestMain(m *testing.M) {
	code := m.Run()
	tokbin.RemoveCached()
	os.Exit(code)
}

// query is one PromQL expression of the rules or the dashboard, with
// where it is.
type query struct{ where, expr string }

func ruleQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	var qs []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			qs = append(qs, query{alertRules + " " + r.Alert, r.Expr})
		}
	}
	if len(qs) == 0 {
		t.Fatalf("%s has no rules", alertRules)
	}
	return qs
}

// grafanaDashboard is the part of a Grafana dashboard model the test
// reads.
type grafanaDashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

func readDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	return d
}

// templateValues stand for the dashboard's variables when its queries are
// read as plain PromQL, as Grafana substitutes them.
var templateValues = strings.NewReplacer("$__rate_interval", "5m", "$job", "tok", "$instance", ".+")

func dashboardQueries(t *testing.T) []query {
	t.Helper()
	var qs []query
	for _, p := range readDashboard(t).Panels {
		for _, tg := range p.Targets {
			qs = append(qs, query{fmt.Sprintf("%s panel %q %s", dashboard, p.Title, tg.RefID), templateValues.Replace(tg.Expr)})
		}
	}
	return qs
}

// TestDashboardStructure checks what Grafana needs of each panel (Grafana
// itself is not packaged for Debian, so nothing loads the file in CI):
// a Prometheus data source from the dashboard's variable, queries with a
// refId and an expression, a place on the 24-column grid, and only
// variables the dashboard defines.
func TestDashboardStructure(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 {
		t.Errorf("title %q, uid %q, schemaVersion %d: all are required", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]bool{"__rate_interval": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the panels name ${datasource}")
	}
	ids := map[int]bool{}
	queries := 0
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v is off the 24-column grid", p.Title, g)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %q: want a unique refId and an expr (%q)", p.Title, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
			for _, m := range regexp.MustCompile(`\$\{?(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !vars[m[1]] {
					t.Errorf("panel %q: %s uses $%s, which the dashboard does not define", p.Title, tg.RefID, m[1])
				}
			}
			queries++
		}
	}
	if queries == 0 {
		t.Fatal("the dashboard has no queries")
	}
}

// TestDashboardQueriesParse hands every dashboard query, its variables
// substituted, to promtool as a recording rule: Prometheus's own parser.
func TestDashboardQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (.ci/run installs it: Debian package prometheus)")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	qs := dashboardQueries(t)
	for i, q := range qs {
		rules = append(rules, rule{fmt.Sprintf("tok_dashboard:query%d", i), q.expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput(); err != nil {
		// promtool names the rules by index: say which panel each is.
		for i, q := range qs {
			t.Logf("tok_dashboard:query%d is %s", i, q.where)
		}
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

// TestRunbooksExist checks that every runbook_url of the alert rules
// points at a section of the repository's README.
func TestRunbooksExist(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok && strings.HasPrefix(strings.TrimLeft(h, "#"), " ") {
			anchors[githubAnchor(strings.TrimSpace(strings.TrimLeft(h, "#")))] = true
		}
	}
	urls := regexp.MustCompile(`runbook_url: "([^"]*)"`).FindAllStringSubmatch(mustRead(t, alertRules), -1)
	if len(urls) == 0 {
		t.Fatal("no runbook_url in the rules")
	}
	for _, m := range urls {
		_, anchor, ok := strings.Cut(m[1], "/README.md#")
		if !ok || !anchors[anchor] {
			t.Errorf("runbook_url %s: no README section has the anchor %q", m[1], anchor)
		}
	}
}

// githubAnchor is the id GitHub gives a Markdown heading: lower case,
// punctuation dropped, spaces as hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func mustRead(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMonitoringNamesTokExports runs tok, makes it serve each kind of
// request the rules and the dashboard watch, scrapes its /metrics, and
// checks that every metric the queries name is one tok exports, with the
// labels they match on: a renamed metric or label fails here rather than
// leaving an alert that never fires.
func TestMonitoringNamesTokExports(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs tok")
	}
	fams := scrapeExercisedTok(t)
	queries := append(ruleQueries(t), dashboardQueries(t)...)
	selector := regexp.MustCompile(`\b(tok_\w+)(?:\{([^}]*)\})?`)
	matcher := regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	known := enumeratedValues(fams)
	used := map[string]bool{}
	for _, q := range queries {
		sels := selector.FindAllStringSubmatch(q.expr, -1)
		if len(sels) == 0 {
			if !strings.Contains(q.expr, "up{") && !strings.HasPrefix(q.expr, "vector(") {
				t.Errorf("%s: names no tok metric: %s", q.where, q.expr)
			}
			continue
		}
		for _, s := range sels {
			fam, ok := family(fams, s[1])
			if !ok {
				t.Errorf("%s: tok exports no metric %s", q.where, s[1])
				continue
			}
			used[fam.GetName()] = true
			for _, m := range matcher.FindAllStringSubmatch(s[2], -1) {
				checkMatcher(t, q.where, fam, known, m[1], m[2], m[3])
			}
		}
	}
	t.Logf("%d queries name %d of tok's metric families", len(queries), len(used))
}

// family finds the metric family a series name belongs to: itself, or a
// histogram's for its _bucket, _sum and _count series.
func family(fams map[string]*dto.MetricFamily, name string) (*dto.MetricFamily, bool) {
	if f, ok := fams[name]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := fams[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || suffix != "_bucket" && f.GetType() == dto.MetricType_SUMMARY) {
				return f, true
			}
		}
	}
	return nil, false
}

// enumeratedValues collects the values of the enumerated labels over all
// of tok's metrics.
func enumeratedValues(fams map[string]*dto.MetricFamily) map[string]map[string]bool {
	known := map[string]map[string]bool{}
	for _, l := range enumerated {
		known[l] = map[string]bool{}
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if vs, ok := known[lp.GetName()]; ok {
					vs[lp.GetValue()] = true
				}
			}
		}
	}
	return known
}

// checkMatcher checks one label matcher against the family: the label
// exists, and on an enumerated label every alternative of the value
// matches one that tok exports.
func checkMatcher(t *testing.T, where string, fam *dto.MetricFamily, known map[string]map[string]bool, label, op, value string) {
	t.Helper()
	if slices.Contains(targetLabels, label) {
		return
	}
	has := slices.ContainsFunc(fam.GetMetric(), func(m *dto.Metric) bool {
		return slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool { return lp.GetName() == label })
	})
	if !has {
		t.Errorf("%s: %s has no label %q", where, fam.GetName(), label)
		return
	}
	values := known[label]
	if values == nil || op == "!=" || op == "!~" {
		return
	}
	alternatives := []string{value}
	if op == "=~" {
		alternatives = strings.Split(value, "|")
	}
	for _, alt := range alternatives {
		re, err := regexp.Compile("^(?:" + alt + ")$")
		if op == "=" {
			re = regexp.MustCompile("^" + regexp.QuoteMeta(alt) + "$")
		}
		if err != nil {
			t.Errorf("%s: %s %s %q: %v", where, label, op, value, err)
			continue
		}
		found := false
		for v := range values {
			found = found || re.MatchString(v)
		}
		if !found {
			t.Errorf("%s: %s{%s%s%q}: no %s of tok's matches %q (it has %v)", where, fam.GetName(), label, op, value, label, alt, slices.Sorted(maps.Keys(values)))
		}
	}
}

// scrapeExercisedTok starts tok on a PostgreSQL vault of its own with a
// quota, a client, an egress route and an inbound route in report mode;
// sends it tokenizations, a failed and a good login, a lookup, a lookup of
// a record damaged in the database, a checkout reject mode would refuse,
// GET /keys and GET /readyz; and returns its /metrics.
func scrapeExercisedTok(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pgURL := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pgURL == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is unset: the unreadable-record metric needs a record to damage in PostgreSQL")
	}
	db, pgURL := pgSchema(ctx, t, pgURL)
	bin, err := tokbin.Cached(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyring, err := tokbin.NewKeyring(ctx, bin, dir)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "monitoring-secret"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		t.Fatal(err)
	}
	// The app behind the report-mode route: it only has to answer.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	t.Cleanup(app.Close)
	cfg := filepath.Join(dir, "tok.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0", egress: "127.0.0.1:0"}
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    guard: report
    fields: [{json: card.number}]
guard: {mode: reject, report_then: tokenize}
vault: {postgres: %q, keyring: %q}
audit: {path: %q}
limits: {vault_bytes: 1GiB}
clients: [{name: ops, secret_hash: %q, reveal: true}]
egress:
  - name: psp
    match: {path: /psp/*}
    upstream: https://127.0.0.1:9
    egress_key: env:MONITORING_EGRESS_KEY
`, app.URL, pgURL, keyring, filepath.Join(dir, "audit.log"), hash), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := tokbin.Start(tokbin.Cmd{Bin: bin, Args: []string{"serve", "-config", cfg}, Dir: dir,
		Env: tokbin.Env("MONITORING_EGRESS_KEY=0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	p.StopAtEnd(t)
	if _, err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitListening(ctx, "public", "auth"); err != nil {
		t.Fatal(err)
	}
	public, auth, admin := "http://"+p.Addr("public"), "http://"+p.Addr("auth"), "http://"+p.Addr("admin")

	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	call := func(method, url, body string, want int) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, url, resp.StatusCode, b, want)
		}
		return b
	}
	handle := func(pan string) string {
		t.Helper()
		var handled struct{ Token string }
		if err := json.Unmarshal(call("POST", public+"/handle", `{"pan_number": "`+pan+`"}`, 200), &handled); err != nil || handled.Token == "" {
			t.Fatalf("POST /handle: token %q (%v)", handled.Token, err)
		}
		return handled.Token
	}
	good, damaged := handle("4111111111111111"), handle("5555555555554444")
	// One bit of the damaged token's ciphertext flipped: AES-GCM refuses it.
	tag, err := db.Exec(ctx, "UPDATE tokens SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1) WHERE token = $1", damaged)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("damaging %s's record: %v (%d rows)", damaged, err, tag.RowsAffected())
	}
	call("POST", auth+"/login", `{"bank_coordinates": "ops", "secret": "wrong"}`, http.StatusUnauthorized)
	call("POST", auth+"/login", `{"bank_coordinates": "ops", "secret": "`+secret+`"}`, 200)
	call("POST", auth+"/@me", `{"token": "`+good+`"}`, 200)
	call("POST", auth+"/@me", `{"token": "`+damaged+`"}`, http.StatusInternalServerError)
	// A card number outside the route's fields: reject mode would refuse
	// it, report mode counts it in tok_would_refuse_total and tokenizes it.
	call("POST", public+"/checkout", `{"card": {"number": "4111111111111111"}, "note": "my other card is 5555555555554444"}`, 200)
	call("GET", admin+"/keys", "", 200)
	call("GET", admin+"/readyz", "", 200)

	exposition := call("GET", admin+"/metrics", "", 200)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(exposition))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return fams
}

// pgSchema makes a schema of its own for one test, dropped at its end, and
// returns a connection to it and the URL that selects it.
func pgSchema(ctx context.Context, t *testing.T, url string) (*pgx.Conn, string) {
	t.Helper()
	var rnd [6]byte
	rand.Read(rnd[:])
	schema := "tok_monitoring_" + hex.EncodeToString(rnd[:])
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	url += sep + "search_path=" + schema
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	return conn, url
}
