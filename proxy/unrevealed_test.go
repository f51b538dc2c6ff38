package proxy

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/tokproxy/tok/proxy/rewrite"
)

// The unrevealed-token check skips the fields the route revealed by their
// path: its walk must spell a path as the rewriter does, arrays included.
func TestUnrevealedPathsMatchRewriter(t *testing.T) {
	rewriter, err := rewrite.New(rewrite.Config{Fields: []rewrite.Field{{JSON: "items.#.card.number"}, {JSON: "a\\.b.c"}}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"items":[{"card":{"number":"1"}},{"card":{"number":"2"}}],"a.b":{"c":"3"}}`)
	field := map[string]bool{}
	if _, err := rewriter.Rewrite(body, "application/json", func(vals []rewrite.Value) ([]string, error) {
		out := make([]string, len(vals))
		for i, v := range vals {
			field[v.Path], out[i] = true, v.Text
		}
		return out, nil
	}); err != nil {
		t.Fatal(err)
	}
	var walked []string
	walkJSONLeaves(gjson.ParseBytes(body), "", func(p, _ string) bool { walked = append(walked, p); return true })
	if len(walked) != 3 {
		t.Fatalf("walked %q, want 3 leaves", walked)
	}
	for _, p := range walked {
		if !field[p] {
			t.Errorf("walk path %q is not a path the rewriter gave (%v)", p, field)
		}
	}
}
