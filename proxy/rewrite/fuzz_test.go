package rewrite

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

var fuzzFields = []Field{
	{JSON: "card.number"},
	{JSON: "card.cvc", Spec: 1},
	{JSON: "items.#.card.number"},
	{Form: "card[number]"},
	{Form: "card[cvc]", Spec: 1},
}

// FuzzRewriteJSON checks, for any body: no panic; a body Rewrite accepts
// was valid JSON and the output is too; no card-like number survives
// anywhere (guard in tokenize mode); bytes outside the edited values are
// unchanged; errors carry no long digit run.
func FuzzRewriteJSON(f *testing.F) {
	for _, s := range []string{
		`{"card":{"number":"4111111111111111","cvc":"123"}}`,
		`{"items":[{"card":{"number":5555555555554444}},{"card":{"number":"4111 1111 1111 1111"}}]}`,
		`{"\u0063ard":{"NUMBER":"4111\u00311111111111111"},"n":"my card 6011-1111-1111-1117"}`,
		`[4.111111111111111e15,"\ud83d\ude00",{"4111111111111111":null}]`,
	} {
		f.Add([]byte(s))
	}
	r, err := New(Config{Fields: fuzzFields, Guard: GuardTokenize, MaxDepth: 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := r.Rewrite(body, ctJSON, nines)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if len(body) == 0 {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid json %q", body)
		}
		if !json.Valid(out) {
			t.Fatalf("output %q of %q is not valid json", out, body)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode output: %v", err)
		}
		checkNoCard(t, v)
		var c collector
		if err := r.collectJSON(&c, body); err != nil {
			t.Fatalf("second walk: %v", err)
		}
		checkUnchangedOutside(t, body, out, c.edits, func(b []byte, i int) int {
			if b[i] == '"' {
				end, _, err := scanString(b, i)
				if err != nil {
					t.Fatalf("replacement at %d is not a json string", i)
				}
				return end
			}
			end, ok := scanNumber(b, i)
			if !ok {
				t.Fatalf("replacement at %d is not a json number", i)
			}
			return end
		})
	})
}

// FuzzRewriteForm is FuzzRewriteJSON for form bodies.
func FuzzRewriteForm(f *testing.F) {
	for _, s := range []string{
		"card[number]=4111111111111111&card[cvc]=123&amount=100",
		"card%5Bnumber%5D=4111+1111+1111+1111&note=6011-1111-1111-1117",
		"a=%34111111111111111&4111111111111111=x&card[number][]=1",
	} {
		f.Add(s)
	}
	r, err := New(Config{Fields: fuzzFields, Guard: GuardTokenize})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		out, err := r.Rewrite([]byte(body), ctForm, nines)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		pairs, perr := parseForm(out, true)
		if perr != nil {
			t.Fatalf("output %q of %q does not parse: %v", out, body, perr)
		}
		for _, p := range pairs {
			if len(findCards(p.key)) > 0 || len(findCards(p.val)) > 0 {
				t.Fatalf("card-like number survives in %q", out)
			}
		}
		var c collector
		if err := r.collectForm(&c, []byte(body), true); err != nil {
			t.Fatalf("second walk: %v", err)
		}
		checkUnchangedOutside(t, []byte(body), out, c.edits, func(b []byte, i int) int {
			for i < len(b) && b[i] != '&' && b[i] != '=' {
				i++
			}
			return i
		})
	})
}

func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not an *Error", err)
	}
	if longDigits.MatchString(err.Error()) {
		t.Fatalf("error %q contains a long digit run", err)
	}
}

// checkUnchangedOutside checks that out is body with only the edit spans
// replaced: the bytes between edits must reappear in order, and each
// replacement must be one token (its end found by tokenEnd).
func checkUnchangedOutside(t *testing.T, body, out []byte, edits []edit, tokenEnd func([]byte, int) int) {
	t.Helper()
	edits = slices.Clone(edits)
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	prev, pos := 0, 0
	for _, e := range edits {
		gap := body[prev:e.start]
		if !bytes.HasPrefix(out[pos:], gap) {
			t.Fatalf("bytes before offset %d changed:\n in %q\nout %q", e.start, body, out)
		}
		pos += len(gap)
		if pos >= len(out) {
			t.Fatalf("output ends early: %q", out)
		}
		pos = tokenEnd(out, pos)
		prev = e.end
	}
	if !bytes.Equal(out[pos:], body[prev:]) {
		t.Fatalf("tail changed:\n in %q\nout %q", body, out)
	}
}

// checkNoCard walks a decoded document for card-like numbers.
func checkNoCard(t *testing.T, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if len(findCards(k)) > 0 {
				t.Fatalf("card-like key survives")
			}
			checkNoCard(t, e)
		}
	case []any:
		for _, e := range x {
			checkNoCard(t, e)
		}
	case string:
		if len(findCards(x)) > 0 || asciiCard(x) {
			t.Fatalf("card-like number survives in %q", x)
		}
	case json.Number:
		if numberCard(string(x)) != "" {
			t.Fatalf("card-like number survives: %s", x)
		}
	}
}

// asciiCard is an independent, simpler oracle: any maximal run of ASCII
// digits that is a card number.
func asciiCard(s string) bool {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j > i {
			if IsCardNumber(s[i:j]) {
				return true
			}
			i = j
			continue
		}
		i++
	}
	return false
}
