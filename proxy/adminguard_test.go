package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/proxy/audit"
	"github.com/tokproxy/tok/proxy/auth"
)

// TestAdminCrossSite: a browser on the tok host cannot POST /rekey, start
// a CPU profile or fetch a backup from a page of another site:
// Sec-Fetch-Site other than same-origin/none, a foreign Origin, or a POST
// without X-Tok-Admin is refused with 403 before the endpoint runs, and
// every refusal is audited.
func TestAdminCrossSite(t *testing.T) {
	var backups atomic.Int32
	e := newTestEnv(t, nil, func(o *Options) {
		o.Backup = func(_ context.Context, w io.Writer) (int64, error) {
			backups.Add(1)
			n, err := w.Write([]byte("vault"))
			return int64(n), err
		}
	})
	admin := e.admin.URL
	tests := []struct {
		name, method, path string
		hdr                []string
		code               string
	}{
		{"rekey, cross-site fetch", "POST", "/rekey", []string{"Sec-Fetch-Site", "cross-site", AdminHeader, "1"}, "cross_site"},
		{"rekey, same-site page", "POST", "/rekey", []string{"Sec-Fetch-Site", "same-site", AdminHeader, "1"}, "cross_site"},
		{"rekey, foreign origin", "POST", "/rekey", []string{"Origin", "http://attacker.example", AdminHeader, "1"}, "cross_site"},
		{"rekey, null origin", "POST", "/rekey", []string{"Origin", "null", AdminHeader, "1"}, "cross_site"},
		{"rekey, simple form (no header)", "POST", "/rekey", nil, "admin_header_missing"},
		{"rekey, header not 1", "POST", "/rekey", []string{AdminHeader, "yes"}, "admin_header_missing"},
		{"retire, no header", "POST", "/keys/retire?version=1", nil, "admin_header_missing"},
		{"cpu profile, cross-site img", "GET", "/debug/pprof/profile?seconds=30", []string{"Sec-Fetch-Site", "cross-site"}, "cross_site"},
		{"trace, foreign origin", "GET", "/debug/pprof/trace?seconds=30", []string{"Origin", "http://attacker.example"}, "cross_site"},
		{"backup, cross-site", "GET", "/backup", []string{"Sec-Fetch-Site", "cross-site"}, "cross_site"},
		{"keys, cross-site", "GET", "/keys", []string{"Sec-Fetch-Site", "cross-site"}, "cross_site"},
	}
	for _, tt := range tests {
		before := strings.Count(e.audit.String(), "\n")
		r := do(t, nil, tt.method, admin+tt.path, "", "", tt.hdr...)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.body), tt.code) {
			t.Errorf("%s: %s %s = %d %s; want 403 %s", tt.name, tt.method, tt.path, r.StatusCode, r.body, tt.code)
		}
		lines := strings.Split(strings.TrimSuffix(e.audit.String(), "\n"), "\n")
		if len(lines) != before+1 || !strings.Contains(lines[len(lines)-1], `"outcome":"`+tt.code+`"`) {
			t.Errorf("%s: refusal not audited; audit log:\n%s", tt.name, e.audit.String())
		}
	}
	if st := do(t, nil, "GET", admin+"/rekey", "", "").json(t); st["running"] != false || st["resealed"] != float64(0) {
		t.Errorf("a refused POST /rekey started a rekey: %v", st)
	}
	if backups.Load() != 0 {
		t.Errorf("a refused GET /backup ran the backup")
	}

	// What an operator's curl or the CLI sends passes: no Origin, no
	// Sec-Fetch-Site (or none/same-origin), the header on POST.
	for _, hdr := range [][]string{nil, {"Sec-Fetch-Site", "none"}, {"Sec-Fetch-Site", "same-origin", "Origin", admin}} {
		if r := do(t, nil, "GET", admin+"/backup", "", "", hdr...); r.StatusCode != http.StatusOK || string(r.body) != "vault" {
			t.Errorf("GET /backup with %q = %d %s, want 200", hdr, r.StatusCode, r.body)
		}
	}
	if r := do(t, nil, "POST", admin+"/rekey", "", "", AdminHeader, "1"); r.StatusCode != http.StatusAccepted {
		t.Errorf("POST /rekey with %s: 1 = %d %s, want 202", AdminHeader, r.StatusCode, r.body)
	}
}

// TestAdminAudit: GET /backup, GET /keys and POST /keys/retire each write
// an audit line (PCI DSS 10.2.1), and a backup is refused when its line
// cannot be written (fail closed: the vault does not leave the host
// unrecorded).
func TestAdminAudit(t *testing.T) {
	var backups atomic.Int32
	e := newTestEnv(t, nil, func(o *Options) {
		o.Backup = func(_ context.Context, w io.Writer) (int64, error) {
			backups.Add(1)
			n, err := w.Write([]byte("vault"))
			return int64(n), err
		}
	})
	do(t, nil, "GET", e.admin.URL+"/backup", "", "")
	do(t, nil, "GET", e.admin.URL+"/keys", "", "")
	do(t, nil, "POST", e.admin.URL+"/keys/retire?version=7", "", "", AdminHeader, "1")
	log := e.audit.String()
	for _, want := range []string{
		`"event":"backup","endpoint":"GET /backup","source":"127.0.0.1","outcome":"started"`,
		`"event":"backup","endpoint":"GET /backup","source":"127.0.0.1","outcome":"ok"`,
		`"event":"keys","endpoint":"GET /keys","source":"127.0.0.1","outcome":"ok"`,
		`"event":"keys_retire","endpoint":"POST /keys/retire","source":"127.0.0.1","outcome":"ok"`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
	if rep, err := audit.Verify(strings.NewReader(log), audit.Key(e.vault.Keyring()), false); err != nil || rep.Lines != 4 {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}

	e.audit.breakWrites()
	before := backups.Load()
	wantError(t, do(t, nil, "GET", e.admin.URL+"/backup", "", ""), http.StatusServiceUnavailable, "audit_unavailable")
	if backups.Load() != before {
		t.Error("the backup ran although its audit line could not be written")
	}
}

// TestMeUnauthenticatedAudited: /@me with no session cookie or a bogus
// one answers 401 and writes an audit line without the cookie's value.
func TestMeUnauthenticatedAudited(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	wantError(t, do(t, nil, "GET", e.auth.URL+"/@me?token="+tok, "", ""), http.StatusUnauthorized, "unauthenticated")
	const bogus = "bogus-session-value-0123456789"
	wantError(t, do(t, nil, "POST", e.auth.URL+"/@me", "application/json", `{"token":"`+tok+`"}`, "Cookie", auth.CookieName+"="+bogus),
		http.StatusUnauthorized, "unauthenticated")
	log := e.audit.String()
	if n := strings.Count(log, `"event":"session"`); n != 2 {
		t.Errorf("audit has %d session refusals, want 2:\n%s", n, log)
	}
	for _, want := range []string{`"endpoint":"GET /@me","source":"127.0.0.1","outcome":"unauthenticated"`, `"endpoint":"POST /@me"`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
	if strings.Contains(log, bogus) || strings.Contains(log, seedPAN) {
		t.Errorf("audit log holds the cookie value or the PAN:\n%s", log)
	}
}
