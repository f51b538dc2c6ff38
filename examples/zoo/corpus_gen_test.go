package zoo

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated corpus files (go generate ./examples/zoo)")

// The generated corpus: each class below is a function returning its cases
// (name and raw request). Hand-written cases sit beside them; the
// generator owns only the files generated.txt lists.
const manifest = "corpus/generated.txt"

// TestCorpusGenerated checks that the generated corpus files are what the
// generator writes today (with -update, it writes them and removes the
// ones it no longer generates).
func TestCorpusGenerated(t *testing.T) {
	gen := generate()
	names := make([]string, 0, len(gen))
	for name := range gen {
		names = append(names, name)
	}
	slices.Sort(names)
	if *update {
		old, _ := os.ReadFile(manifest)
		for _, name := range strings.Fields(string(old)) {
			if _, ok := gen[name]; !ok {
				os.Remove(filepath.Join("corpus", name))
			}
		}
		for _, name := range names {
			p := filepath.Join("corpus", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, gen[name], 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(manifest, []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join("corpus", name))
		if err != nil || !bytes.Equal(got, gen[name]) {
			t.Errorf("corpus/%s is not what the generator writes: run go generate ./examples/zoo", name)
		}
	}
	if b, _ := os.ReadFile(manifest); string(b) != strings.Join(names, "\n")+"\n" {
		t.Errorf("%s is stale: run go generate ./examples/zoo", manifest)
	}
}

// Every variant must expand: a typo in a placeholder fails here, not in
// the slow test.
func TestCorpusExpands(t *testing.T) {
	cases, err := loadCorpus("corpus")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if _, err := c.variants(); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// req is a request of the generator: Host and, for a body without
// Transfer-Encoding, Content-Length: {{LEN}} are added.
type req struct {
	method, target string
	hdr            []string // "Name: value" lines
	ct             string   // Content-Type, if any
	body           string
	noLength       bool // no Content-Length (the headers frame the body)
}

func (r req) String() string {
	var b strings.Builder
	method := r.method
	if method == "" {
		method = "POST"
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: shop.example\r\n", method, r.target)
	if r.ct != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", r.ct)
	}
	chunked := false
	for _, h := range r.hdr {
		b.WriteString(h + "\r\n")
		chunked = chunked || strings.HasPrefix(strings.ToLower(h), "transfer-encoding")
	}
	if r.body != "" && !chunked && !r.noLength {
		b.WriteString("Content-Length: {{LEN}}\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(r.body)
	return b.String()
}

// Bodies the classes share. The card sits at the route's field
// (card.number, card[number]) or elsewhere (note).
const (
	ctJSON      = "application/json"
	ctForm      = "application/x-www-form-urlencoded"
	ctText      = "text/plain"
	boundary    = "zooBoundary7MA4YWxk"
	ctMultipart = "multipart/form-data; boundary=" + boundary

	jsonCard = `{"card":{"number":"{{PAN}}","cvc":"123"},"amount":"10.00"}`
	jsonNote = `{"amount":"10.00","note":"{{PAN}}"}`
	formCard = "card[number]={{PAN}}&card[cvc]=123&amount=10.00"
	formNote = "amount=10.00&note={{PAN}}"
)

// part is one multipart part; file is its filename, if any.
type part struct{ name, file, ct, body string }

func multipart(parts ...part) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=\"%s\"", boundary, p.name)
		if p.file != "" {
			fmt.Fprintf(&b, "; filename=\"%s\"", p.file)
		}
		b.WriteString("\r\n")
		if p.ct != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", p.ct)
		}
		fmt.Fprintf(&b, "\r\n%s\r\n", p.body)
	}
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.String()
}

var (
	mpField = multipart(part{name: "amount", body: "10.00"}, part{name: "card[number]", body: "{{PAN}}"})
	mpNote  = multipart(part{name: "note", body: "{{PAN}}"})
	mpFile  = multipart(part{name: "receipt", file: "card.txt", ct: ctText, body: "card {{PAN}}"})
	mpJSON  = multipart(part{name: "payload", file: "p.json", ct: ctJSON, body: jsonCard})
)

// bodyKinds are the usual ways a card travels in a body.
var bodyKinds = []struct{ name, ct, body string }{
	{"json-field", ctJSON, jsonCard},
	{"json-note", ctJSON, jsonNote},
	{"form-field", ctForm, formCard},
	{"form-note", ctForm, formNote},
	{"multipart-field", ctMultipart, mpField},
	{"multipart-file", ctMultipart, mpFile},
	{"text-json", ctText, jsonCard},
	{"untyped-form", "", formCard},
}

// generate returns every generated case, by file name (class/name.http).
func generate() map[string][]byte {
	out := map[string][]byte{}
	for class, f := range classes {
		for _, c := range f() {
			name := class + "/" + c.name + ".http"
			if _, dup := out[name]; dup {
				panic("duplicate case " + name)
			}
			out[name] = []byte(c.req.String())
		}
	}
	return out
}

type genCase struct {
	name string
	req  fmt.Stringer
}

// raw is a request written out whole, for framing and smuggling.
type raw string

func (r raw) String() string { return string(r) }

// slug makes a case name of s.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}
