package examples

import (
	"strings"
	"testing"
	"time"
)

// TestREADMEReportModeRunsAsScript runs the README's "Rolling out a rule:
// report mode" section as a script, as written, in a copy of the module:
// tok check warns, the checkout route forwards what reject would refuse,
// another path is refused, and GET /report and /metrics show the decision
// with its path and offset and no card number. Skipped as
// TestREADMESectionsRunAsScript is.
func TestREADMEReportModeRunsAsScript(t *testing.T) {
	skipUnlessScriptable(t, []string{"bash", "curl", "go"}, []string{"8080", "9090", "5000", "3000"})
	out := runScript(t, "set -e\n"+shBlocks(t, readREADME(t), "## Rolling out a rule: report mode")[0], 3*time.Minute)
	for _, want := range []string{
		"warning: inbound[0] (checkout) is in report mode: it forwards what it would refuse",
		`"order_id":`,                    // the shop took the checkout
		`"error":"card_number_detected"`, // /profile still rejects
		`"total":[{"listener":"public","route":"checkout","code":"card_number_detected","count":1}]`,
		`"where":"body","path":"note","offset":49}`,
		`tok_would_refuse_total{code="card_number_detected",listener="public",route="checkout"} 1`,
		`"level":"WARN","msg":"report mode: reject mode would refuse this request","listener":"public","route":"checkout"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the script's output lacks %s:\n%s", want, out)
		}
	}
	// The log and GET /report hold no card number; the shop, in report
	// mode, received the note's as sent: that is the risk the README names.
	for _, line := range strings.Split(out, "\n") {
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
