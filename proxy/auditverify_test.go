package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokproxy/tok/proxy/audit"
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
	key := audit.Key(e.vault.Keyring())
	first := e.audit.String()
	if rep, err := audit.Verify(strings.NewReader(first), key, false); err != nil || rep.Lines != 5 || rep.LastSeq != 5 {
		t.Fatalf("VerifyAudit = %+v, %v; want 5 lines (handle, login, 3 reveals), nil", rep, err)
	}

	// A restarted tok continues the chain from the file's last line.
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	last, err := audit.LastLine(path)
	if err != nil || len(last) == 0 {
		t.Fatalf("LastAuditLine = %q, %v", last, err)
	}
	e2 := newTestEnvKeys(t, nil, e.vault.Keyring(), func(o *Options) { o.AuditLast = last })
	c2 := e2.login("cih")
	do(t, c2, "GET", e2.auth.URL+"/@me?token=nope", "", "")
	all := first + e2.audit.String()
	if rep, err := audit.Verify(strings.NewReader(all), key, false); err != nil || rep.Lines != 7 {
		t.Fatalf("audit.Verify(across restart) = %+v, %v; want 7, nil", rep, err)
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
		_, err := audit.Verify(strings.NewReader(strings.Join(ls, "")), key, false)
		var br *audit.Break
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
// under a guessed key) no longer verifies; old unkeyed logs
// verify only with allowUnkeyed, and a keyed log needs the key.
func TestAuditChainKeyed(t *testing.T) {
	e := newTestEnv(t, nil)
	tok := e.handle(seedPAN)
	c := e.login("cih")
	for range 3 {
		do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", "")
	}
	key := audit.Key(e.vault.Keyring())
	lines := strings.Split(strings.TrimSuffix(e.audit.String(), "\n"), "\n")
	// Drop line 3 (a reveal) and rebuild the chain after it, as an
	// attacker who can write the log but not read the keyring would.
	forged := append([]string{}, lines[:2]...)
	for _, mode := range []string{"unkeyed", "wrong key"} {
		out := append([]string{}, forged...)
		prevLine := []byte(out[1])
		for _, l := range lines[3:] {
			var ev audit.Event
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			ev.Seq--
			ev.Prev = hex.EncodeToString(chainLink(prevLine))
			ev.Mac = ""
			b, _ := json.Marshal(ev)
			if mode == "wrong key" {
				b = append(b[:len(b)-1], []byte(`,"mac":"`+hex.EncodeToString(hmacSHA256([]byte("guess"), b))+`"}`)...)
			}
			out = append(out, string(b))
			prevLine = b
		}
		log := strings.Join(out, "\n") + "\n"
		for _, allow := range []bool{false, true} {
			var br *audit.Break
			if _, err := audit.Verify(strings.NewReader(log), key, allow); !errors.As(err, &br) || br.Line != 3 {
				t.Errorf("%s forgery, allowUnkeyed %v: VerifyAudit = %v; want a break at line 3", mode, allow, err)
			}
		}
	}
	if _, err := audit.Verify(strings.NewReader(e.audit.String()), nil, false); !errors.Is(err, audit.ErrKeyNeeded) {
		t.Errorf("audit.Verify(keyed log, no key) = %v, want audit.ErrKeyNeeded", err)
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
	if _, err := audit.Verify(strings.NewReader(mixed), key, false); err == nil {
		t.Error("audit.Verify(unkeyed start) passed without allowUnkeyed")
	}
	rep, err := audit.Verify(strings.NewReader(mixed), key, true)
	if err != nil || rep.Unkeyed != 2 || rep.Lines != 3 || rep.LastSeq != 3 {
		t.Errorf("audit.Verify(unkeyed start, allowed) = %+v, %v; want 3 lines, 2 unkeyed", rep, err)
	}
	// Unkeyed after keyed: a downgrade.
	down := mixed + fmt.Sprintf(`{"event":"login","source":"x","outcome":"ok","seq":4,"prev":"%s"}`, rep.Head) + "\n"
	if _, err := audit.Verify(strings.NewReader(down), key, true); err == nil {
		t.Error("VerifyAudit accepted an unkeyed line after keyed ones")
	}
}

func replaceAt(ls []string, i int, s string) []string {
	out := append([]string{}, ls...)
	out[i] = s
	return out
}

// chainLink is what a forger computes for the prev of the line after
// line: its mac if it has one, else its SHA-256.
func chainLink(line []byte) []byte {
	var ev audit.Event
	if json.Unmarshal(line, &ev) == nil && ev.Mac != "" {
		mac, _ := hex.DecodeString(ev.Mac)
		return mac
	}
	sum := sha256.Sum256(line)
	return sum[:]
}

func hmacSHA256(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)
}
