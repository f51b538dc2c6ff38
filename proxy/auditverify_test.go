package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	key := AuditKey(e.vault.Keyring())
	first := e.audit.String()
	if rep, err := VerifyAudit(strings.NewReader(first), key, false); err != nil || rep.Lines != 5 || rep.LastSeq != 5 {
		t.Fatalf("VerifyAudit = %+v, %v; want 5 lines (handle, login, 3 reveals), nil", rep, err)
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
	e2 := newTestEnvKeys(t, nil, e.vault.Keyring(), func(o *Options) { o.AuditLast = last })
	c2 := e2.login("cih")
	do(t, c2, "GET", e2.auth.URL+"/@me?token=nope", "", "")
	all := first + e2.audit.String()
	if rep, err := VerifyAudit(strings.NewReader(all), key, false); err != nil || rep.Lines != 7 {
		t.Fatalf("VerifyAudit(across restart) = %+v, %v; want 7, nil", rep, err)
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
		_, err := VerifyAudit(strings.NewReader(strings.Join(ls, "")), key, false)
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

// TestAuditChainKeyed: deleting a reveal line and recomputing seq and prev
// for every line after it (with the keyless SHA-256 chain, or with a mac
// under a guessed key) no longer verifies (issue 19); old unkeyed logs
// verify only with allowUnkeyed, and a keyed log needs the key.
func TestAuditChainKeyed(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	for range 3 {
		do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	}
	key := AuditKey(e.vault.Keyring())
	lines := strings.Split(strings.TrimSuffix(e.audit.String(), "\n"), "\n")
	// Drop line 3 (a reveal) and rebuild the chain after it, as an
	// attacker who can write the log but not read the keyring would.
	forged := append([]string{}, lines[:2]...)
	for _, mode := range []string{"unkeyed", "wrong key"} {
		out := append([]string{}, forged...)
		prevLine := []byte(out[1])
		for _, l := range lines[3:] {
			var ev auditEvent
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			ev.Seq--
			link := chainLink(prevLine)
			ev.Prev = hex.EncodeToString(link[:])
			ev.Mac = ""
			b, _ := json.Marshal(ev)
			if mode == "wrong key" {
				b = append(b[:len(b)-1], []byte(`,"mac":"`+hex.EncodeToString(lineMac([]byte("guess"), b))+`"}`)...)
			}
			out = append(out, string(b))
			prevLine = b
		}
		log := strings.Join(out, "\n") + "\n"
		for _, allow := range []bool{false, true} {
			var br *AuditBreak
			if _, err := VerifyAudit(strings.NewReader(log), key, allow); !errors.As(err, &br) || br.Line != 3 {
				t.Errorf("%s forgery, allowUnkeyed %v: VerifyAudit = %v; want a break at line 3", mode, allow, err)
			}
		}
	}
	if _, err := VerifyAudit(strings.NewReader(e.audit.String()), nil, false); !errors.Is(err, ErrAuditKeyNeeded) {
		t.Errorf("VerifyAudit(keyed log, no key) = %v, want ErrAuditKeyNeeded", err)
	}
	// An old, unkeyed log, continued by a keyed tok.
	var old []string
	prev := make([]byte, 32)
	for i := 1; i <= 2; i++ {
		l := fmt.Sprintf(`{"event":"login","client":"cih","source":"127.0.0.1","outcome":"ok","seq":%d,"prev":"%x"}`, i, prev)
		sum := sha256.Sum256([]byte(l))
		prev = sum[:]
		old = append(old, l)
	}
	e2 := newTestEnvKeys(t, nil, e.vault.Keyring(), func(o *Options) { o.AuditLast = []byte(old[1]) })
	e2.login("cih")
	mixed := strings.Join(old, "\n") + "\n" + e2.audit.String()
	if _, err := VerifyAudit(strings.NewReader(mixed), key, false); err == nil {
		t.Error("VerifyAudit(unkeyed start) passed without allowUnkeyed")
	}
	rep, err := VerifyAudit(strings.NewReader(mixed), key, true)
	if err != nil || rep.Unkeyed != 2 || rep.Lines != 3 || rep.LastSeq != 3 {
		t.Errorf("VerifyAudit(unkeyed start, allowed) = %+v, %v; want 3 lines, 2 unkeyed", rep, err)
	}
	// Unkeyed after keyed: a downgrade.
	down := mixed + fmt.Sprintf(`{"event":"login","source":"x","outcome":"ok","seq":4,"prev":"%s"}`, rep.Head) + "\n"
	if _, err := VerifyAudit(strings.NewReader(down), key, true); err == nil {
		t.Error("VerifyAudit accepted an unkeyed line after keyed ones")
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
	os.WriteFile(p, []byte(`{"seq":1}`+"\n"+`{"seq":2}`+"\n"), 0o600)
	if l, _ := LastAuditLine(p); string(l) != `{"seq":2}` {
		t.Errorf("LastAuditLine = %q, want the second line", l)
	}
	os.WriteFile(p, nil, 0o600)
	if l, _ := LastAuditLine(p); l != nil {
		t.Errorf("empty file: %q", l)
	}
}

// TestReadAuditTail: the last audit line, and the torn region after it
// that a cut write left (issue 13).
func TestReadAuditTail(t *testing.T) {
	const one, two = `{"seq":1}`, `{"seq":2}`
	for _, tc := range []struct {
		name, file   string
		last, torn   string
		unterminated bool
	}{
		{"empty", "", "", "", false},
		{"whole", one + "\n" + two + "\n", two, "", false},
		{"torn tail", one + "\n" + two + "\n" + `{"seq":3,"ev`, two, `{"seq":3,"ev`, false},
		{"torn lines", one + "\n" + `{"se` + "\n" + `{"seq":3,"ev`, one, `{"se` + "\n" + `{"seq":3,"ev`, false},
		{"torn, then a newline", one + "\n" + `{"se` + "\n", one, `{"se` + "\n", false},
		{"no newline", one + "\n" + two, two, "", true},
		{"all torn", `{"se`, "", `{"se`, false},
		// An edited (but JSON) last line is Last, for verify to find.
		{"edited last", one + "\n" + `{"seq":9,"edited":true}` + "\n", `{"seq":9,"edited":true}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			os.WriteFile(p, []byte(tc.file), 0o600)
			tail, err := ReadAuditTail(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(tail.Last) != tc.last || string(tail.Torn) != tc.torn || tail.Unterminated != tc.unterminated {
				t.Errorf("ReadAuditTail = last %q, torn %q, unterminated %v; want %q, %q, %v",
					tail.Last, tail.Torn, tail.Unterminated, tc.last, tc.torn, tc.unterminated)
			}
		})
	}
}
