package examples

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestREADMEImportExportRunsAsScript runs the README's "Moving cards in
// and out" section as a script, as written, in a copy of the module: the
// import maps every good line and names the bad one, the CSV import gives
// a card the token the JSON Lines import gave it, and the export holds
// every card once. Skipped with -short or without bash.
func TestREADMEImportExportRunsAsScript(t *testing.T) {
	skipUnlessScriptable(t, []string{"bash", "go"}, nil)
	out := runScript(t, "set -e\n"+strings.Join(shBlocks(t, readREADME(t), "## Moving cards in and out: tok import and tok export"), "\n"), 4*time.Minute)
	for _, want := range []string{
		"imported 4 cards from .run/cards.jsonl (format pan): 3 new tokens, 1 already in the vault",
		".run/cards.jsonl:4: not a card number: the Luhn check fails",
		"exit 1",
		`{"line":4,"id":"cust_1004","error":"not a card number: the Luhn check fails"}`,
		"imported 2 cards from .run/cards.csv (field checkout:json:card.number): 1 new tokens, 1 already in the vault",
		"exported 4 records to .run/export.jsonl",
		`"tok_export":1`,
		`"masked_pan":"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the script's output lacks %s:\n%s", want, out)
		}
	}
	// cust_1001 is on a line of both files: one card, one token.
	tokens := regexp.MustCompile(`\{"id":"cust_1001","token":"(\d+)","line":\d\}`).FindAllStringSubmatch(out, -1)
	if len(tokens) != 2 || tokens[0][1] != tokens[1][1] {
		t.Errorf("cust_1001's tokens in the two mappings: %q, want two equal", tokens)
	}
	for _, card := range []string{"4111 1111 1111 1111", "4111111111111111", "5555-5555-5555-4444", "378282246310005", "6011 1111 1111 1117"} {
		if strings.Contains(out, card) {
			t.Errorf("a card number (%s) is in the output", card)
		}
	}
}
