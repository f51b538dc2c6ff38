package rewrite

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// TestGolden rewrites realistic bodies and compares the result with
// testdata/golden/NAME.golden byte for byte. Run with -update to
// regenerate them after an intended change, then review the diff.
func TestGolden(t *testing.T) {
	reveal := func(vals []Value) ([]string, error) {
		m := map[string]string{"4111119876541111": "4111111111111111", "tok_3xv8JH2aKp0qZ7rT5mWn9c": "737"}
		out := make([]string, len(vals))
		for i, v := range vals {
			out[i] = m[v.Text]
		}
		return out, nil
	}
	for _, tc := range []struct {
		file, ct string
		cfg      Config
		replace  ReplaceFunc
	}{
		{"checkout.json", ctJSON, Config{Fields: []Field{{JSON: "card.number"}, {JSON: "card.cvc", Spec: 1}, {JSON: "items.#.card.number"}}}, nines},
		{"stripe.form", ctForm, Config{Fields: []Field{{Form: "card[number]"}, {Form: "card[cvc]", Spec: 1}}}, nines},
		{"egress.json", ctJSON, Config{Fields: []Field{{JSON: "source.card.number"}, {JSON: "source.card.cvc", Spec: 1}}}, reveal},
		{"guard.json", ctJSON, Config{Guard: GuardTokenize}, nines},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "golden", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			r, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Rewrite(in, tc.ct, tc.replace)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			golden := filepath.Join("testdata", "golden", tc.file+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("Rewrite(%s) differs from %s:\n got %s\nwant %s", tc.file, golden, got, want)
			}
		})
	}
}
