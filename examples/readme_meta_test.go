package examples

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMECardMetadataRunsAsScript runs the README's "Card metadata"
// section as a script, as written, in a copy of the module: the anonymous
// /handle gives the card without a fingerprint, the client's /handle and
// /@me give the same fingerprint, and the shop's order holds tok's
// Tok-Card-* headers with it, not the shopper's forged brand. Skipped
// with -short, without bash, curl or openssl, or when one of the section's
// ports is taken.
func TestREADMECardMetadataRunsAsScript(t *testing.T) {
	skipUnlessScriptable(t, []string{"bash", "curl", "openssl", "go"}, []string{"8090", "5001", "9091", "3001"})
	out := runScript(t, "set -e\n"+strings.Join(shBlocks(t, readREADME(t), "## Card metadata"), "\n"), 4*time.Minute)
	if !strings.Contains(out, `"card":{"brand":"visa","prefix":"411111","last4":"1111","length":16,"luhn":true}}`) {
		t.Errorf("the anonymous /handle gave no card, or one with a fingerprint:\n%s", out)
	}
	fps := regexp.MustCompile(`"fingerprint":"([0-9a-f]{64})"`).FindAllStringSubmatch(out, -1)
	if len(fps) != 2 || fps[0][1] != fps[1][1] {
		t.Fatalf("the client's /handle and /@me fingerprints: %q, want two equal:\n%s", fps, out)
	}
	for _, want := range []string{
		`"Tok-Card-Brand": "visa"`,
		`"Tok-Card-Field": "json:card.number"`,
		`"Tok-Card-Fingerprint": "` + fps[0][1] + `"`,
		`"Tok-Card-Last4": "1111"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the shop's order lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "amex") {
		t.Errorf("the shopper's forged Tok-Card-Brand reached the shop:\n%s", out)
	}
}
