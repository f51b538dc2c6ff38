package examples

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMERevealPolicyRunsAsScript runs the README's "Per-token reveal
// policy" section as a script, as written, in a copy of the module: the
// token pays through psp once, once more after tok restarts (and /@me
// shows the spent reveal in between), and is then refused
// token_reveals_exhausted on psp and token_reveal_not_allowed on refunds,
// both audited; the provider is paid exactly twice. Skipped with -short,
// without bash, curl or openssl, or when one of the section's ports is
// taken.
func TestREADMERevealPolicyRunsAsScript(t *testing.T) {
	skipUnlessScriptable(t, []string{"bash", "curl", "openssl", "go"}, []string{"8094", "8095", "5004", "9094", "3004", "4004"})
	out := runScript(t, "set -e\n"+strings.Join(shBlocks(t, readREADME(t), "## Per-token reveal policy"), "\n"), 4*time.Minute)
	if n := strings.Count(out, `"paid": true`); n != 2 {
		t.Errorf("%d payments went through, want 2:\n%s", n, out)
	}
	if !regexp.MustCompile(`"reveal_policy":\{"reveal_to":\["psp"\],"max_reveals":2,"reveals":1,"reveal_until":"[0-9TZ:.-]+"\}`).MatchString(out) {
		t.Errorf("/@me after the restart does not show one reveal spent:\n%s", out)
	}
	for _, want := range []string{`{"error":"token_reveals_exhausted"`, `{"error":"token_reveal_not_allowed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the script's output lacks %q:\n%s", want, out)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^2$`).FindAllString(out, -1)); n != 2 {
		t.Errorf("want 2 refusals audited and 2 charges at the provider:\n%s", out)
	}
}
