package examples

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// TestREADMEReportModeRunsAsScript runs the README's "Rolling out a rule:
// report mode" section as a script, as written, in a copy of the module:
// tok check warns, the checkout route forwards what reject would refuse,
// another path is refused, and GET /report and /metrics show the decision
// with its path and offset and no card number. Skipped as
// TestREADMESectionsRunAsScript is.
func TestREADMEReportModeRunsAsScript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tok and the shop and runs the README's section; skipped with -short")
	}
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on this machine", tool)
		}
	}
	for _, p := range []string{"8080", "9090", "5000", "3000"} {
		if !portFree(p) {
			t.Skipf("port %s is taken; the README's section uses it", p)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script := "set -e\n" + shBlocks(t, string(readme), "## Rolling out a rule: report mode")[0]
	dir := copyModule(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = env(nil)
	tokbin.SetProcAttr(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's section as a script: %v\n%s", err, out)
	}
	for _, want := range []string{
		"warning: inbound[0] (checkout) is in report mode: it forwards what it would refuse",
		`"order_id":`,                    // the shop took the checkout
		`"error":"card_number_detected"`, // /profile still rejects
		`"total":[{"route":"checkout","code":"card_number_detected","count":1}]`,
		`"where":"body","path":"note","offset":49}`,
		`tok_would_refuse_total{code="card_number_detected",listener="public",route="checkout"} 1`,
		`"level":"WARN","msg":"report mode: reject mode would refuse this request","route":"checkout"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the script's output lacks %s:\n%s", want, out)
		}
	}
	// The log and GET /report hold no card number; the shop, in report
	// mode, received the note's as sent: that is the risk the README names.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, `"msg":"report mode`) || strings.Contains(line, `"recent":`) {
			if strings.Contains(line, "5555555555554444") || strings.Contains(line, "4111111111111111") {
				t.Errorf("a card number in %s", line)
			}
		}
	}
	for _, p := range []string{"8080", "9090", "3000"} {
		if !portFree(p) {
			t.Errorf("port %s is still taken after the script stopped what it started", p)
		}
	}
}
