package rewrite

import "testing"

// TestJSONSelectorEscapes: keys holding "." or "[" are named with a
// backslash, and an escaped key matches only itself.
func TestJSONSelectorEscapes(t *testing.T) {
	rw, err := New(Config{Fields: []Field{{JSON: `metadata.card\.number`}, {JSON: `a\[0\].pan`}, {JSON: `x.\#`}}, Guard: GuardOff})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"metadata":{"card.number":"A","card":{"number":"B"}},"a[0]":{"pan":"C"},"a":[{"pan":"D"}],"x":{"#":"E"}}`
	var got []string
	_, err = rw.Rewrite([]byte(body), "application/json", func(vals []Value) ([]string, error) {
		out := make([]string, len(vals))
		for i, v := range vals {
			got = append(got, v.Text)
			out[i] = v.Text
		}
		return out, nil
	})
	if err != nil || len(got) != 3 || got[0] != "A" || got[1] != "C" || got[2] != "E" {
		t.Errorf("values found = %q, %v; want A, C, E", got, err)
	}
	for _, bad := range []string{`a\x`, `a\`, `a.\`} {
		if ValidateJSONSelector(bad) == nil {
			t.Errorf("ValidateJSONSelector(%q) = nil, want an error", bad)
		}
	}
}
