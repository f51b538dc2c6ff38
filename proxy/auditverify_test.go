package proxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditChain: the audit log verifies, continues across a restart, and
// any edit, deletion, insertion or reordering is found at its line.
func TestAuditChain(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	for range 3 {
		do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	}
	first := e.audit.String()
	if n, err := VerifyAudit(strings.NewReader(first)); err != nil || n != 5 {
		t.Fatalf("VerifyAudit = %d, %v; want 5 lines (handle, login, 3 reveals), nil", n, err)
	}

	// A restarted tok continues the chain from the file's last line.
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	last, err := LastAuditLine(path)
	if err != nil || len(last) == 0 {
		t.Fatalf("LastAuditLine = %q, %v", last, err)
	}
	e2 := newTestEnv(t, nil, func(o *Options) { o.AuditLast = last })
	c2 := e2.login("cih")
	do(t, c2, "GET", e2.auth.URL+"/@me?token=nope", "", "")
	all := first + e2.audit.String()
	if n, err := VerifyAudit(strings.NewReader(all)); err != nil || n != 7 {
		t.Fatalf("VerifyAudit(across restart) = %d, %v; want 7, nil", n, err)
	}

	lines := strings.SplitAfter(strings.TrimSuffix(all, "\n"), "\n")
	tampered := map[string][]string{
		"edited":    replaceAt(lines, 2, strings.Replace(lines[2], `"outcome":"ok"`, `"outcome":"no"`, 1)),
		"deleted":   append(append([]string{}, lines[:2]...), lines[3:]...),
		"inserted":  append(append(append([]string{}, lines[:2]...), lines[1]), lines[2:]...),
		"reordered": append(append(append([]string{}, lines[:1]...), lines[2], lines[1]), lines[3:]...),
		"garbage":   replaceAt(lines, 3, "not json\n"),
	}
	for name, ls := range tampered {
		_, err := VerifyAudit(strings.NewReader(strings.Join(ls, "")))
		var br *AuditBreak
		if !errors.As(err, &br) {
			t.Errorf("%s: VerifyAudit = %v, want an AuditBreak", name, err)
			continue
		}
		if br.Line < 2 || br.Line > 4 {
			t.Errorf("%s: break reported at line %d, want the tampered place (2-4)", name, br.Line)
		}
	}
}

func replaceAt(ls []string, i int, s string) []string {
	out := append([]string{}, ls...)
	out[i] = s
	return out
}

func TestLastAuditLine(t *testing.T) {
	dir := t.TempDir()
	if l, err := LastAuditLine(filepath.Join(dir, "missing")); l != nil || err != nil {
		t.Errorf("missing file: %q, %v; want nil, nil", l, err)
	}
	p := filepath.Join(dir, "a")
	os.WriteFile(p, []byte("one\ntwo\n"), 0o600)
	if l, _ := LastAuditLine(p); string(l) != "two" {
		t.Errorf("LastAuditLine = %q, want two", l)
	}
	os.WriteFile(p, nil, 0o600)
	if l, _ := LastAuditLine(p); l != nil {
		t.Errorf("empty file: %q", l)
	}
}
