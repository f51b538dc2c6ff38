package examples

import (
	"context"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// readmePorts are the fixed ports the README's proxy and whole-loop sections
// use: tok's public, egress, admin and auth listeners, the shop, the provider.
var readmePorts = []string{"8080", "8081", "9090", "5000", "3000", "4000"}

// TestREADMESectionsRunAsScript runs the README's "The proxy" and "The
// whole loop" sections as a script, as written (they must run
// from a script too, not only in an interactive shell), in a copy of the
// module: every command succeeds, the outputs the README promises appear,
// and once the script has stopped what it started, nothing listens on the
// ports any more (a killed backgrounded `go run` used to leave its child
// holding them). Skipped with -short, without bash, curl or openssl, or
// when one of the README's fixed ports is taken.
func TestREADMESectionsRunAsScript(t *testing.T) {
	skipUnlessScriptable(t, []string{"bash", "curl", "openssl", "go"}, readmePorts)
	readme := readREADME(t)
	proxy := shBlocks(t, readme, "## The proxy: tok in front of a shop")
	loop := shBlocks(t, readme, "## The whole loop")
	// The loop section's first line tells how to stop the proxy section's
	// processes; that is the one command between the two blocks.
	stop := regexp.MustCompile("Stop the previous section's shop and tok first: `([^`]+)`").FindStringSubmatch(readme)
	if stop == nil {
		t.Fatal("the README's whole-loop section no longer says how to stop the previous section")
	}
	out := runScript(t, "set -e\n"+proxy[0]+"\n"+stop[1]+"\n"+loop[0], 4*time.Minute)
	for _, want := range []string{
		`"card_number_detected"`, // the proxy section's refusal
		`"paid": true`,           // the loop: the shop charged through tok
		`"cvc": "737"`,           // the provider got the CVC the shopper typed
		`"not_a_token"`,          // egress refuses a raw card
		`"unbound_value"`,        // a CVC token without its card reveals nothing
		`"event":"egress_reveal"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the script's output lacks %s:\n%s", want, out)
		}
	}
	for _, p := range readmePorts {
		if !portFree(p) {
			t.Errorf("port %s is still taken after the script stopped what it started", p)
		}
	}
}

// skipUnlessScriptable skips a test that runs a README section as a
// script under -short, without one of tools, or when one of the section's
// fixed ports is taken.
func skipUnlessScriptable(t *testing.T, tools, ports []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds programs and runs a README section as a script; skipped with -short")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on this machine", tool)
		}
	}
	for _, p := range ports {
		if !portFree(p) {
			t.Skipf("port %s is taken; the README's section uses it", p)
		}
	}
}

// readREADME returns the repository's README.
func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runScript runs script with bash in a copy of the module (see
// copyModule), as a fresh checkout would, and returns its combined output;
// a failing script fails the test with that output.
func runScript(t *testing.T, script string, timeout time.Duration) string {
	t.Helper()
	dir := copyModule(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = env(nil)
	tokbin.SetProcAttr(cmd)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's section as a script: %v\n%s", err, b)
	}
	return string(b)
}

// shBlocks returns the ```sh blocks of the README section that starts with
// heading.
func shBlocks(t *testing.T, readme, heading string) []string {
	t.Helper()
	start := strings.Index(readme, heading)
	if start < 0 {
		t.Fatalf("the README has no section %q", heading)
	}
	end := strings.Index(readme[start+len(heading):], "\n## ")
	section := readme[start:]
	if end >= 0 {
		section = readme[start : start+len(heading)+end]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) == 0 {
		t.Fatalf("the README's section %q has no sh block", heading)
	}
	return blocks
}

// copyModule copies the module's source (no .git, data or build output)
// into a temporary directory, where the README's commands can write data/
// and .run/ as in a fresh checkout.
func copyModule(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		switch {
		case d.IsDir() && (rel == ".git" || rel == "data" || rel == ".run" || d.Name() == "node_modules"):
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// portFree reports whether nothing listens on 127.0.0.1:port.
func portFree(port string) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		return false
	}
	l.Close()
	return true
}
