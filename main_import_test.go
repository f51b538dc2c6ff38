package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tokproxy/tok/config"
	"github.com/tokproxy/tok/vault"
)

func TestJSONFields(t *testing.T) {
	for _, c := range []struct {
		line, id, card, bad string
	}{
		{`{"id":"cust_1","pan":"4111 1111 1111 1111"}`, "cust_1", "4111 1111 1111 1111", ""},
		{`{"card":"4111111111111111"}`, "", "4111111111111111", ""},
		{`{"id":17,"number":4111111111111111}`, "17", "4111111111111111", ""}, // a number's text, never a float64
		{`{"id":"a","pan_number":"4111111111111111","x":[1,2]}`, "a", "4111111111111111", ""},
		{`{"id":"a"}`, "a", "", "no card field"},
		{`{"pan":"4111111111111111","card":"4111111111111111"}`, "", "", "two card fields"},
		{`{"pan":true}`, "", "", "pan is not a string or a number"},
		{`{"id":{"x":1},"pan":"4111111111111111"}`, "", "", "id is not a string or a number"},
		{`4111111111111111`, "", "", "not a JSON object"},
		{`{"pan":"4111111111111111"`, "", "", "not a JSON object"},
	} {
		id, card, bad := jsonFields([]byte(c.line))
		if id != c.id || card != c.card || !strings.HasPrefix(bad, c.bad) || (c.bad == "") != (bad == "") {
			t.Errorf("jsonFields(%s) = %q, %q, %q; want %q, %q, %q", c.line, id, card, bad, c.id, c.card, c.bad)
		}
	}
}

func TestSplitCSV(t *testing.T) {
	for _, c := range []struct {
		line string
		want []string
		err  bool
	}{
		{`a,b,c`, []string{"a", "b", "c"}, false},
		{`a,,`, []string{"a", "", ""}, false},
		{`"a,1","say ""hi""",c`, []string{"a,1", `say "hi"`, "c"}, false},
		{`""`, []string{""}, false},
		{`x,"4111 1111"`, []string{"x", "4111 1111"}, false},
		{`"a`, nil, true},
		{`"a"b,c`, nil, true},
	} {
		got, err := splitCSV([]byte(c.line))
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("splitCSV(%s) = %q, %v; want %q, error %v", c.line, got, err, c.want, c.err)
		}
	}
}

func TestCheckCard(t *testing.T) {
	for _, c := range []struct {
		raw, pan, bad string
		luhn          bool
	}{
		{"4111-1111-1111-1111", "4111111111111111", "", true},
		{" 4111111111111111 ", "4111111111111111", "", true},
		{"4111111111111112", "", "not a card number: the Luhn check fails", true},
		{"4111111111111112", "4111111111111112", "", false},
		{"12345", "", "not a card number: 5 digits, want 12 to 19", true},
		{"41111111111111111111", "", "not a card number: 20 digits, want 12 to 19", true},
		{"4111x11111111111", "", "not a card number: non-digit character at offset 4", true},
	} {
		pan, bad := checkCard(c.raw, c.luhn)
		if pan != c.pan || bad != c.bad {
			t.Errorf("checkCard(%q, %v) = %q, %q; want %q, %q", c.raw, c.luhn, pan, bad, c.pan, c.bad)
		}
		if c.bad != "" && strings.Contains(bad, strings.TrimSpace(c.raw)) {
			t.Errorf("checkCard(%q): the reason %q holds the value", c.raw, bad)
		}
	}
}

// readAll returns every line lr reads.
func readAll(t *testing.T, lr *lineReader) []cardLine {
	t.Helper()
	var out []cardLine
	for {
		cl, err := lr.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cl)
	}
}

// The reader keeps byte offsets exactly (CRLF, blank lines, a last line
// without a newline), so that reading again from any line's End gives the
// lines after it, numbered as before.
func TestLineReaderOffsets(t *testing.T) {
	in := "{\"id\":\"a\",\"pan\":\"4111111111111111\"}\r\n\n  \n{\"id\":\"b\",\"pan\":\"5555555555554444\"}\n" +
		"{\"id\":\"c\",\"pan\":\"" + strings.Repeat("4", maxImportLine) + "\"}\n{\"id\":\"d\",\"pan\":\"378282246310005\"}"
	lr, err := newLineReader(strings.NewReader(in), inputJSONL, 0, 0, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	lines := readAll(t, lr)
	want := []struct {
		line int64
		id   string
		bad  bool
	}{{1, "a", false}, {4, "b", false}, {5, "", true}, {6, "d", false}}
	if len(lines) != len(want) {
		t.Fatalf("read %d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		if l := lines[i]; l.Line != w.line || l.ID != w.id || (l.Bad != "") != w.bad {
			t.Errorf("line %d = %+v, want %+v", i, l, w)
		}
	}
	if lines[2].Bad != "line longer than 65536 bytes" {
		t.Errorf("the long line: %q", lines[2].Bad)
	}
	if last := lines[len(lines)-1]; last.End != int64(len(in)) {
		t.Errorf("the last line ends at %d, want %d", last.End, len(in))
	}
	for i, l := range lines[:len(lines)-1] {
		lr, _ := newLineReader(strings.NewReader(in[l.End:]), inputJSONL, l.End, l.Line, nil, true)
		rest := readAll(t, lr)
		if !slices.Equal(rest, lines[i+1:]) {
			t.Errorf("read again from %d: %+v, want %+v", l.End, rest, lines[i+1:])
		}
	}
}

func TestLineReaderCSV(t *testing.T) {
	in := "\nPAN,Name,id\r\n4111111111111111,\"Doe, J\",c1\n4111111111111112,x,c2\n5555555555554444\n"
	header, off, line, err := readCSVHeader(strings.NewReader(in))
	if err != nil || off != int64(strings.Index(in, "4111")) || line != 2 {
		t.Fatalf("readCSVHeader = %q, %d, %d, %v", header, off, line, err)
	}
	lr, err := newLineReader(strings.NewReader(in[off:]), inputCSV, off, line, header, true)
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, lr)
	want := []cardLine{
		{Line: 3, End: int64(strings.Index(in, "4111111111111112")), ID: "c1", PAN: "4111111111111111"},
		{Line: 4, End: int64(strings.Index(in, "5555")), ID: "c2", Bad: "not a card number: the Luhn check fails"},
		{Line: 5, End: int64(len(in)), PAN: "5555555555554444"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("CSV lines = %+v\nwant %+v", got, want)
	}
	if _, err := newLineReader(strings.NewReader(""), inputCSV, 0, 0, []string{"id", "name"}, true); err == nil {
		t.Error("a CSV header without a card column was accepted")
	}
	if _, _, _, err := readCSVHeader(strings.NewReader("\n\n")); err == nil {
		t.Error("a CSV file without a header was accepted")
	}
}

func TestImportSpec(t *testing.T) {
	cfg := &config.Config{Inbound: []config.Route{{Name: "checkout", Fields: []config.Field{
		{JSON: "card.number", Keep: &config.Keep{First: new(8)}},
		{JSON: "card.cvc", Format: vault.FormatDigits, Store: config.StoreMemory, TTL: 60e9},
		{Form: "pan", Unique: true},
		{XML: "/o/pan", Format: vault.FormatOpaque},
	}}}}
	for _, c := range []struct {
		format, field string
		want          vault.Spec
		err           string
	}{
		{"pan", "", vault.Spec{}, ""},
		{"opaque", "", vault.Spec{Format: vault.FormatOpaque}, ""},
		{"digits", "", vault.Spec{}, "short values"},
		{"pan", "checkout:json:card.number", vault.Spec{KeepFirst: 8}, ""},
		{"pan", "checkout:card.number", vault.Spec{KeepFirst: 8}, ""},
		{"pan", "checkout:xml:/o/pan", vault.Spec{Format: vault.FormatOpaque}, ""},
		{"pan", "checkout:json:card.cvc", vault.Spec{}, "held in memory"},
		{"pan", "checkout:form:pan", vault.Spec{}, "convergent tokens only"},
		{"pan", "checkout:json:nope", vault.Spec{}, "has no field"},
		{"pan", "cart:json:card.number", vault.Spec{}, "no inbound route"},
		{"pan", "checkout", vault.Spec{}, "ROUTE:SELECTOR"},
	} {
		got, _, err := importSpec(cfg, c.format, c.field)
		if !reflect.DeepEqual(got, c.want) || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("importSpec(%q, %q) = %+v, %v; want %+v, error with %q", c.format, c.field, got, err, c.want, c.err)
		}
	}
}

func TestAppendMapLine(t *testing.T) {
	for _, c := range []struct {
		id, token string
		line      int64
		want      string
	}{
		{"cust_1", "4111119876541111", 1, `{"id":"cust_1","token":"4111119876541111","line":1}`},
		{"", "tok_abc", 7, `{"token":"tok_abc","line":7}`},
		{`a"b\c`, "1", 2, `{"id":"a\"b\\c","token":"1","line":2}`},
	} {
		if got := string(appendMapLine(nil, c.id, c.token, c.line)); got != c.want+"\n" {
			t.Errorf("appendMapLine(%q, %q, %d) = %s, want %s", c.id, c.token, c.line, got, c.want)
		}
	}
}

// A checkpoint refuses to resume into another input, another token
// domain, or an input shorter than where the import stopped; a mapping
// file without a checkpoint is never written over.
func TestImportRunRefusals(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "cards.jsonl")
	os.WriteFile(in, []byte(`{"pan":"4111111111111111"}`+"\n"), 0o600)
	opts := importOptions{in: in, out: filepath.Join(dir, "map.jsonl"), errorsPath: filepath.Join(dir, "map.jsonl.errors")}
	run, err := openImportRun(opts)
	if err != nil {
		t.Fatal(err)
	}
	run.offset, run.line = 1000, 1
	if err := run.checkpoint(); err != nil {
		t.Fatal(err)
	}
	run.close()
	if _, err := openImportRun(opts); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("resume past the end of the input: %v", err)
	}
	opaque := opts
	opaque.spec = vault.Spec{Format: vault.FormatOpaque}
	if _, err := openImportRun(opaque); err == nil || !strings.Contains(err.Error(), "tokens of pan:6:4") {
		t.Errorf("resume with another format: %v", err)
	}
	other := opts
	other.in = filepath.Join(dir, "other.jsonl")
	os.WriteFile(other.in, nil, 0o600)
	if _, err := openImportRun(other); err == nil || !strings.Contains(err.Error(), "not "+other.in) {
		t.Errorf("resume with another input: %v", err)
	}
	os.Remove(opts.out + ".checkpoint")
	if _, err := openImportRun(opts); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a mapping without a checkpoint: %v", err)
	}
	if b, _ := os.ReadFile(opts.out); !bytes.Equal(b, nil) {
		t.Errorf("the mapping was written: %q", b)
	}
}

// TestImportInProcess runs tok import through run, many small batches on
// several workers: the mapping is in input order, one line per card, and
// a card twice gets one token. With -strict it stops at a bad line, the
// checkpoint before it; fixed in place, the line is read by the next run.
func TestImportInProcess(t *testing.T) {
	dir := t.TempDir()
	keyring := filepath.Join(dir, "keyring.yaml")
	var out, errOut bytes.Buffer
	if code := run([]string{"keys", "new", "-o", keyring}, nil, &out, &errOut); code != 0 {
		t.Fatal(errOut.String())
	}
	cfg := filepath.Join(dir, "tok.yaml")
	os.WriteFile(cfg, []byte("vault: {bolt: "+filepath.Join(dir, "tok.db")+", keyring: "+keyring+"}\naudit: {path: "+filepath.Join(dir, "audit.log")+"}\n"), 0o600)
	const n = 3000
	var in strings.Builder
	cards := make([]string, n+1)
	for i := 1; i <= n; i++ {
		d := fmt.Sprintf("4%014d", i)
		for c := byte('0'); c <= '9'; c++ {
			if vault.Luhn(d + string(c)) {
				d += string(c)
				break
			}
		}
		cards[i] = d
		if i == 2000 {
			d = "4111111111111112" // fails the Luhn check
		}
		if i == 3000 {
			d = cards[1]
		}
		fmt.Fprintf(&in, `{"id":"c%d","pan":"%s"}`+"\n", i, d)
	}
	inPath := filepath.Join(dir, "cards.jsonl")
	os.WriteFile(inPath, []byte(in.String()), 0o600)
	mapPath := filepath.Join(dir, "map.jsonl")
	args := []string{"import", "-config", cfg, "-in", inPath, "-out", mapPath, "-batch", "50", "-workers", "4", "-checkpoint", "10ms", "-strict"}

	out.Reset()
	errOut.Reset()
	if code := run(args, nil, &out, &errOut); code != exitFail || !strings.Contains(errOut.String(), "line 2000 is bad (-strict)") {
		t.Fatalf("strict import = %d\n%s%s", code, out.String(), errOut.String())
	}
	b, _ := os.ReadFile(mapPath)
	if got := strings.Count(string(b), "\n"); got != 1999 {
		t.Errorf("after the strict stop the mapping holds %d lines, want 1999", got)
	}
	fixed := strings.Replace(in.String(), "4111111111111112", "4111111111111111", 1)
	os.WriteFile(inPath, []byte(fixed), 0o600)
	out.Reset()
	errOut.Reset()
	if code := run(args, nil, &out, &errOut); code != exitOK || !strings.Contains(out.String(), "imported 3000 cards") {
		t.Fatalf("import after the fix = %d\n%s%s", code, out.String(), errOut.String())
	}
	b, _ = os.ReadFile(mapPath)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("mapping holds %d lines, want %d", len(lines), n)
	}
	tokens := make([]string, n+1)
	for i, l := range lines {
		var m mapLine
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.Line != int64(i+1) || m.Token == "" {
			t.Fatalf("mapping line %d = %s (%v), want line %d", i+1, l, err, i+1)
		}
		tokens[i+1] = m.Token
	}
	if tokens[1] != tokens[3000] {
		t.Errorf("one card on lines 1 and 3000: tokens %s and %s", tokens[1], tokens[3000])
	}
	if tokens[1] == tokens[2] {
		t.Errorf("two cards got one token %s", tokens[1])
	}
}
