package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/examples/internal/tokbin"
	"github.com/tokproxy/tok/vault"
)

// tokBin is the tok binary built once for every test.
var tokBin string

func TestMain(m *testing.M) {
	var err error
	if tokBin, err = tokbin.Cached(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		tokbin.RemoveCached()
		os.Exit(1)
	}
	code := m.Run()
	tokbin.RemoveCached()
	os.Exit(code)
}

// newKeyring writes a fresh keyring into dir with "tok keys new" and
// returns its path.
func newKeyring(t *testing.T, dir string) string {
	t.Helper()
	keyring := filepath.Join(dir, "keyring.yaml")
	if code, _, errOut := tok(t, dir, "", "keys", "new", "-o", keyring); code != 0 {
		t.Fatalf("keys new: %s", errOut)
	}
	return keyring
}

// tok runs the binary in dir with stdin and returns its exit code and output.
func tok(t *testing.T, dir, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(tokBin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = tokbin.Env()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run tok %v: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// writeBoltConfig writes dir/tok.yaml for a tok on the keyring file
// keyring and dir/tok.db, every listener but egress on a free loopback port
// and the audit log on stdout, followed by extra YAML, and returns its path.
func writeBoltConfig(t *testing.T, dir, keyring, extra string) string {
	t.Helper()
	return writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: "-"}
`, filepath.Join(dir, "tok.db"), keyring)+extra)
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "listen: {public: \":18080\"}\nlimits: {max_body: 2MiB}\n")
	bad := writeFile(t, dir, "bad.yaml", "listen:\n  public: nope\nlimits: {max_body: 1GiB}\nguard: {mode: loud, extra: 1}\n")

	code, out, _ := tok(t, dir, "", "check", "-config", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check good.yaml: exit %d, stdout %q; want 0 and ok", code, out)
	}
	code, out, _ = tok(t, dir, "", "check", "-config", bad)
	if code != 1 {
		t.Errorf("check bad.yaml: exit %d, want 1", code)
	}
	for _, want := range []string{
		bad + ":2: listen.public:",
		bad + ":3: limits.max_body:",
		bad + ":4: guard.mode:",
		bad + ":4: guard.extra: unknown key",
		"4 problem(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check bad.yaml output lacks %q:\n%s", want, out)
		}
	}
	// Without -config, check reads ./tok.yaml.
	writeFile(t, dir, "tok.yaml", "audit: {path: \"-\"}\n")
	if code, out, _ := tok(t, dir, "", "check"); code != 0 || !strings.Contains(out, "tok.yaml: ok") {
		t.Errorf("check (default file): exit %d, stdout %q", code, out)
	}
	if code, _, errOut := tok(t, dir, "", "check", "-config", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("check missing file: exit %d, stderr %q; want 1", code, errOut)
	}
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keyring.yaml")
	if code, _, errOut := tok(t, dir, "", "keys", "new", "-o", path); code != 0 {
		t.Fatalf("keys new: exit %d: %s", code, errOut)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode = %#o, want 0600", st.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if _, err := vault.ParseKeyringFile(before); err != nil {
		t.Fatalf("keys new wrote an unreadable keyring: %v", err)
	}
	if code, _, _ := tok(t, dir, "", "keys", "new", "-o", path); code != 1 {
		t.Errorf("keys new over an existing file: exit %d, want 1", code)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("keys new overwrote an existing keyring")
	}

	for want := 2; want <= 3; want++ {
		code, out, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", path)
		if code != 0 || strings.TrimSpace(out) != fmt.Sprint(want) {
			t.Fatalf("keys rotate: exit %d, stdout %q, stderr %q; want %d", code, out, errOut, want)
		}
	}
	b, _ := os.ReadFile(path)
	f, err := vault.ParseKeyringFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Primary != 3 || len(f.DataKeys) != 3 {
		t.Errorf("after two rotations: primary %d, %d data keys; want 3 and 3", f.Primary, len(f.DataKeys))
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("rotated keyring mode = %#o, want 0600", st.Mode().Perm())
	}
	// Output never holds a key.
	for _, k := range f.DataKeys {
		if _, out, errOut := tok(t, dir, "", "keys", "rotate", "-keyring", path); strings.Contains(out+errOut, k) {
			t.Error("keys rotate printed a key")
		}
		break
	}
	if code, _, _ := tok(t, dir, "", "keys", "rotate", "-keyring", filepath.Join(dir, "none.yaml")); code != 1 {
		t.Errorf("keys rotate of a missing file: exit %d, want 1", code)
	}
	if code, _, _ := tok(t, dir, "", "keys", "new"); code != 2 {
		t.Errorf("keys new without -o: exit %d, want 2", code)
	}
}

func TestSecretHash(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := tok(t, dir, "correct horse\n", "secret", "hash")
	if code != 0 {
		t.Fatalf("secret hash: exit %d: %s", code, errOut)
	}
	hash := strings.TrimSpace(out)
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")); err != nil {
		t.Errorf("hash %q does not verify the secret (newline stripped?): %v", hash, err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != 12 {
		t.Errorf("bcrypt cost = %d, want 12", cost)
	}
	if strings.Contains(out+errOut, "correct horse") {
		t.Error("secret hash echoed the secret")
	}
	for name, in := range map[string]string{
		"empty":      "",
		"blank line": "\n",
		"two lines":  "a\nb\n",
		"too long":   strings.Repeat("x", 73) + "\n",
	} {
		if code, out, _ := tok(t, dir, in, "secret", "hash"); code != 1 || out != "" {
			t.Errorf("secret hash with %s input: exit %d, stdout %q; want 1 and nothing", name, code, out)
		}
	}
}

func TestVersionAndUsage(t *testing.T) {
	dir := t.TempDir()
	if code, out, _ := tok(t, dir, "", "version"); code != 0 || !strings.HasPrefix(out, "tok ") {
		t.Errorf("version: exit %d, stdout %q", code, out)
	}
	for _, args := range [][]string{
		{"frobnicate"},
		{"serve", "-nope"},
		{"-nope"},
		{"check", "-config"},
		{"check", "extra-arg"},
		{"keys"},
		{"keys", "delete"},
		{"secret"},
		{"secret", "show"},
		{"version", "-v"},
	} {
		code, out, errOut := tok(t, dir, "", args...)
		if code != 2 || !strings.Contains(errOut, "usage:") || out != "" {
			t.Errorf("tok %v: exit %d, stdout %q; want 2 and usage on stderr", args, code, out)
		}
	}
}

// server is a tok serve process started by startTok.
type server struct {
	p     *tokbin.Proc
	addrs map[string]string // listener name → address
	// logs receives tok's log lines, decoded, until it exits; a test that
	// waits for one reads it.
	logs chan map[string]any
	quit chan struct{} // closed at the end of the test: stop feeding logs
	// lastRetryAfter is the Retry-After of the last answer to s.do.
	lastRetryAfter string
}

// startTok runs "tok serve -config cfg" in dir with extra environment and
// waits until the public, auth and admin listeners report their addresses.
func startTok(t *testing.T, dir, cfg string, env ...string) *server {
	t.Helper()
	s := &server{addrs: map[string]string{}, logs: make(chan map[string]any, 100), quit: make(chan struct{})}
	p, err := tokbin.Start(tokbin.Cmd{Name: "tok", Bin: tokBin, Args: []string{"serve", "-config", cfg}, Dir: dir,
		Env: tokbin.Env(env...), Stdout: io.Discard, OnLine: s.feed})
	if err != nil {
		t.Fatal(err)
	}
	s.p = p
	t.Cleanup(func() { close(s.quit); p.Kill() })
	go func() { <-p.Exited(); close(s.logs) }()
	timeout := time.After(20 * time.Second)
	// Wait for these three by name: with an egress listener too, the first
	// three to log need not include them all.
	for s.addrs["public"] == "" || s.addrs["auth"] == "" || s.addrs["admin"] == "" {
		select {
		case m, ok := <-s.logs:
			if !ok {
				t.Fatal("tok exited before listening")
			}
			if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "NOT JSON") {
				t.Errorf("log line is not JSON: %s", msg)
			}
			if m["level"] == "ERROR" {
				t.Errorf("error log: %v", m)
			}
			if m["msg"] == "listening" {
				s.addrs[m["listener"].(string)], _ = m["addr"].(string)
			}
		case <-timeout:
			t.Fatal("tok did not start listening within 20s")
		}
	}
	return s
}

// feed decodes one log line of tok's onto s.logs.
func (s *server) feed(line []byte) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		m = map[string]any{"msg": "NOT JSON: " + string(line)}
	}
	select {
	case s.logs <- m:
	case <-s.quit:
	}
}

// stop sends SIGTERM and checks that tok drains and exits 0.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var sawStop bool
	for m := range s.logs {
		if m["msg"] == "tok stopped" && m["level"] == "INFO" {
			sawStop = true
		}
	}
	if err := s.p.Err(); err != nil {
		t.Errorf("tok after SIGTERM: %v, want exit 0", err)
	}
	if !sawStop {
		t.Error("no clean \"tok stopped\" log line after SIGTERM")
	}
}

func (s *server) get(t *testing.T, listener, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + s.addrs[listener] + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (s *server) handle(t *testing.T, pan string) string {
	t.Helper()
	resp, err := http.Post("http://"+s.addrs["public"]+"/handle", "application/json", strings.NewReader(`{"pan_number": "`+pan+`"}`))
	if err != nil {
		t.Fatalf("POST /handle: %v", err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" || out.Token == pan {
		t.Fatalf("POST /handle = %d, token %q, err %v", resp.StatusCode, out.Token, err)
	}
	return out.Token
}

const testPAN = "4111111111111111"

// TestServe runs tok on a bolt config with an inbound route in front of a
// recording upstream, and checks the wiring end to end: admin endpoints,
// /handle, the card field tokenized before the upstream, the audit log file,
// and a clean drain on SIGTERM.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	got := make(chan string, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
	}))
	defer upstream.Close()
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: %q}
audit: {path: %q}
upstream: %s
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
`, filepath.Join(dir, "tok.db"), keyring, filepath.Join(dir, "audit.log"), upstream.URL))

	s := startTok(t, dir, cfg)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code := s.get(t, "admin", path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
	}
	anon := s.handle(t, testPAN)
	checkout := func() string {
		t.Helper()
		resp, err := http.Post("http://"+s.addrs["public"]+"/checkout", "application/json", strings.NewReader(`{"card": {"number": "`+testPAN+`"}}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /checkout = %d, want 200", resp.StatusCode)
		}
		var sent struct{ Card struct{ Number string } }
		body := <-got
		if err := json.Unmarshal([]byte(body), &sent); err != nil || len(sent.Card.Number) != len(testPAN) || sent.Card.Number == testPAN {
			t.Fatalf("upstream received %q, want a token in place of the card", body)
		}
		return sent.Card.Number
	}
	tok1 := checkout()
	if anon == tok1 {
		t.Errorf("anonymous /handle gave the route's convergent token %s: it must mint its own", tok1)
	}
	s.stop(t)
	if st, err := os.Stat(filepath.Join(dir, "audit.log")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("audit log: %v, mode %v; want 0600", err, st)
	}
	// The bolt file survives the restart: the same PAN gets the same token.
	s = startTok(t, dir, cfg)
	if tok2 := checkout(); tok2 != tok1 {
		t.Errorf("after restart /checkout sent %s, want %s", tok2, tok1)
	}
	s.stop(t)
}

// TestServePostgres runs tok on PostgreSQL selected by TOK_POSTGRES_URL (the
// environment wins over vault.bolt) with the keyring in TOK_KEYRING.
func TestServePostgres(t *testing.T) {
	pg := os.Getenv("TOK_TEST_POSTGRES_URL")
	if pg == "" {
		t.Skip("TOK_TEST_POSTGRES_URL is unset: no PostgreSQL to test against")
	}
	// A schema of its own: the vault records its keyring's check values,
	// so a fresh keyring on a shared schema is refused.
	pg = pgSchema(t, pg, "tok_serve_")
	dir := t.TempDir()
	keyring, err := vault.NewKeyringFile().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, dir, "tok.yaml", fmt.Sprintf(`listen: {public: "127.0.0.1:0", auth: "127.0.0.1:0", admin: "127.0.0.1:0"}
vault: {bolt: %q, keyring: /nonexistent/keyring.yaml}
audit: {path: "-"}
`, filepath.Join(dir, "unused.db")))
	s := startTok(t, dir, cfg, "TOK_POSTGRES_URL="+pg, "TOK_KEYRING="+string(keyring))
	if code := s.get(t, "admin", "/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", code)
	}
	s.handle(t, testPAN)
	s.stop(t)
	if _, err := os.Stat(filepath.Join(dir, "unused.db")); !os.IsNotExist(err) {
		t.Errorf("bolt file created although TOK_POSTGRES_URL was set: %v", err)
	}
}
