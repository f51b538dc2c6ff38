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
		in := map[string]bool{}
		indec := json.NewDecoder(bytes.NewReader(body))
		indec.UseNumber()
		var inv any
		if err := indec.Decode(&inv); err != nil {
			t.Fatalf("decode input: %v", err)
		}
		collectCards(inv, in)
		checkNoCard(t, v, in)
		var c collector
		if err := decodeJSON(body, r.maxDepth); err != nil {
			t.Fatalf("second decode: %v", err)
		}
		if err := r.locateJSON(&c, body); err != nil {
			t.Fatalf("second walk: %v", err)
		}
		c.scan()
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
		inPairs, ierr := parseForm([]byte(body), true)
		if ierr != nil {
			t.Fatalf("accepted %q, which does not parse: %v", body, ierr)
		}
		in := map[string]bool{}
		for _, p := range inPairs {
			cardWindows(p.key, func(d string) { in[d] = true })
			cardWindows(p.val, func(d string) { in[d] = true })
		}
		for _, p := range pairs {
			for _, s := range []string{p.key, p.val} {
				cardWindows(s, func(d string) {
					if in[d] {
						t.Fatalf("a card number of the input survives in %q", out)
					}
				})
			}
		}
		var c collector
		pairs2, perr := parseForm([]byte(body), true)
		if perr != nil {
			t.Fatalf("second parse: %v", perr)
		}
		if err := r.locateForm(&c, pairs2, true); err != nil {
			t.Fatalf("second walk: %v", err)
		}
		c.scan()
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

// checkNoCard walks a decoded output document for the card numbers of the
// input (see collectCards). It looks for the input's numbers rather than
// for anything card-like: a token put where one group of digits was can
// make, with a neighbouring group that is not card data, a new digit run
// that passes the Luhn check ("466161 6461614110110": the 13-digit card is
// tokenized, and "466161" with the token may form 19 Luhn-valid digits).
// That run carries none of the card's hidden digits and is not a leak.
func checkNoCard(t *testing.T, v any, in map[string]bool) {
	t.Helper()
	found := func(d string) {
		if in[d] {
			t.Fatalf("a card number of the input survives")
		}
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			cardWindows(k, found)
			checkNoCard(t, e, in)
		}
	case []any:
		for _, e := range x {
			checkNoCard(t, e, in)
		}
	case string:
		cardWindows(x, found)
	case json.Number:
		if d := numberCard(string(x)); d != "" {
			found(d)
		}
	}
}

// collectCards adds to set every card number in a decoded document, as
// cardWindows finds them in keys and strings and numberCard in numbers.
func collectCards(v any, set map[string]bool) {
	add := func(d string) { set[d] = true }
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			cardWindows(k, add)
			collectCards(e, set)
		}
	case []any:
		for _, e := range x {
			collectCards(e, set)
		}
	case string:
		cardWindows(x, add)
	case json.Number:
		if d := numberCard(string(x)); d != "" {
			add(d)
		}
	}
}

// cardWindows is an oracle wider than findCards: it calls found with the
// digits of every window of whole digit groups (groups joined by up to
// maxSeparators separators, digits of any script) that is a card number,
// not only the windows findCards picks, and of every maximal run of ASCII
// digits that is one.
func cardWindows(s string, found func(digits string)) {
	var run []string // the digit groups of the current run
	var cur []byte
	seps := 0
	flush := func() {
		for i := range run {
			d := ""
			for j := i; j < len(run) && len(d) < maxCardDigits; j++ {
				d += run[j]
				if IsCardNumber(d) {
					found(d)
				}
			}
		}
		run = run[:0]
	}
	for _, r := range s {
		if v, ok := digitValue(r); ok {
			cur = append(cur, '0'+v)
			seps = 0
			continue
		}
		if len(cur) > 0 {
			run, cur = append(run, string(cur)), cur[:0]
		}
		if isSeparator(r) && len(run) > 0 && seps < maxSeparators {
			seps++
			continue
		}
		flush()
		seps = 0
	}
	if len(cur) > 0 {
		run = append(run, string(cur))
	}
	flush()
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j > i {
			if IsCardNumber(s[i:j]) {
				found(s[i:j])
			}
			i = j
			continue
		}
		i++
	}
}

// FuzzReadings checks, for any body under any of the declared types the
// inbound proxy sees: no panic; errors are *Error without long digit runs;
// and what Rewrite lets through (guard in tokenize mode, every reading on)
// holds no card-like number read as raw text, lenient JSON, a form or UTF-16.
func FuzzReadings(f *testing.F) {
	for _, s := range []string{
		`"\u0034\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031\u0031"`,
		`4.111111111111111E+15`,
		`/**/{"n":"\u0034111111111111111"}`,
		"n=4111+1111+1111+1111&phone=%2B49+151+23456787",
		"--B\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\nNDExMTExMTExMTExMTExMQ==\r\n--B--\r\n",
		"IBAN DK50 0040 0440 1162 43, call +49 151 23456787, card 4111 1111 1111 1111",
	} {
		for ct := range 5 {
			f.Add([]byte(s), uint8(ct))
		}
	}
	r, err := New(Config{Guard: GuardTokenize, ReadAll: true, MaxDepth: 16})
	if err != nil {
		f.Fatal(err)
	}
	types := []string{ctJSON, ctForm, "", "text/plain", "multipart/form-data; boundary=B"}
	f.Fuzz(func(t *testing.T, body []byte, ct uint8) {
		out, err := r.Rewrite(body, types[int(ct)%len(types)], nines)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if runs := findCards(string(out)); len(runs) > 0 {
			t.Fatalf("output %q of %q holds a card-like number as raw text", out, body)
		}
		if err := textReadings(out); err != nil {
			t.Fatalf("output %q of %q holds a card-like number: %v", out, body, err)
		}
	})
}
