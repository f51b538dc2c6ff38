package zoo

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// testPANs are the card numbers a case's {{PAN}} placeholders stand for:
// every case with a placeholder is sent once with each. They are the
// networks' published test numbers, Luhn-valid, of 16 and 15 digits.
var testPANs = []string{"4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"}

// A corpus case is one file under corpus/<class>/<name>.http holding the
// raw bytes of one or more HTTP/1.1 requests, written to tok as they are
// after expanding these placeholders:
//
//	{{PAN}}                 the card number, digits only
//	{{PAN:spaces}}          grouped as printed (4-4-4-4, Amex 4-6-5), by spaces
//	{{PAN:dashes}}          the same groups, by dashes
//	{{PAN:json}}            every digit as a JSON \u00XX escape
//	{{PAN:percent}}         every digit as a %3X escape
//	{{PAN:xmlref}}          every digit as an XML character reference (&#52;)
//	{{PAN:exponent}}        a JSON number in exponent form: 4.111111111111111E+15
//	{{PAN:fullwidth}}       fullwidth digits (U+FF10…)
//	{{PAN:arabic}}          Arabic-Indic digits (U+0660…)
//	{{PAN:devanagari}}      Devanagari digits (U+0966…)
//	{{PAN:zwsp}}            the groups joined by zero-width spaces
//	{{PAN:nbsp}}            the groups joined by no-break spaces
//	{{PAN:join=SEP}}        the groups joined by SEP, as written
//	{{PAN:reversed}}        the digits backwards (not a card: a control)
//	{{gzip}}…{{/gzip}}      the enclosed bytes (expanded first) gzipped;
//	                        likewise deflate (zlib), rawdeflate, base64,
//	                        urlencode (every byte but A-Z a-z 0-9 -._~),
//	                        utf16le, utf16be (no BOM), utf7 (every digit
//	                        base64-encoded, RFC 2152), repeat:N (N copies),
//	                        and chunked:N
//	                        (chunks of N bytes and the last, empty, chunk)
//	{{LEN}}                 the length of the body of the request whose
//	                        headers hold it: the bytes after the blank line
//	                        up to {{END}} or the end of the file
//	{{END}}                 ends a body (removed); a second request follows
//
// Files without a {{PAN placeholder are sent once, as they are.
type corpusCase struct {
	Name  string // class/name, without .http
	Class string
	Raw   []byte
}

// loadCorpus reads every case under dir.
func loadCorpus(dir string) ([]corpusCase, error) {
	var cases []corpusCase
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".http") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := strings.TrimSuffix(filepath.ToSlash(rel), ".http")
		class, _, _ := strings.Cut(name, "/")
		cases = append(cases, corpusCase{Name: name, Class: class, Raw: b})
		return nil
	})
	slices.SortFunc(cases, func(a, b corpusCase) int { return strings.Compare(a.Name, b.Name) })
	return cases, err
}

// variants returns the requests to send for c: one per test PAN if c has a
// placeholder, else c as it is.
func (c corpusCase) variants() ([][]byte, error) {
	if !bytes.Contains(c.Raw, []byte("{{PAN")) {
		b, err := expand(c.Raw, "")
		return [][]byte{b}, err
	}
	var out [][]byte
	for _, pan := range testPANs {
		b, err := expand(c.Raw, pan)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// expand replaces the placeholders of raw for pan.
func expand(raw []byte, pan string) ([]byte, error) {
	s := string(raw)
	for name, f := range panForms {
		if pan == "" {
			break
		}
		s = strings.ReplaceAll(s, "{{PAN:"+name+"}}", f(pan))
	}
	s = joinForm.ReplaceAllStringFunc(s, func(m string) string {
		return strings.Join(groups(pan), joinForm.FindStringSubmatch(m)[1])
	})
	s = strings.ReplaceAll(s, "{{PAN}}", pan)
	if i := strings.Index(s, "{{PAN"); i >= 0 {
		return nil, fmt.Errorf("unknown placeholder at %q", s[i:min(len(s), i+20)])
	}
	s, err := applyTransforms(s)
	if err != nil {
		return nil, err
	}
	return []byte(resolveLengths(s)), nil
}

// groups splits pan as it is printed on the card.
func groups(pan string) []string {
	if len(pan) == 15 {
		return []string{pan[:4], pan[4:10], pan[10:]}
	}
	var g []string
	for i := 0; i < len(pan); i += 4 {
		g = append(g, pan[i:min(len(pan), i+4)])
	}
	return g
}

func digitsFrom(zero rune) func(string) string {
	return func(pan string) string {
		var b strings.Builder
		for _, d := range pan {
			b.WriteRune(zero + d - '0')
		}
		return b.String()
	}
}

// joinForm is {{PAN:join=SEP}}.
var joinForm = regexp.MustCompile(`\{\{PAN:join=(.*?)\}\}`)

var panForms = map[string]func(string) string{
	"spaces": func(p string) string { return strings.Join(groups(p), " ") },
	"dashes": func(p string) string { return strings.Join(groups(p), "-") },
	"zwsp":   func(p string) string { return strings.Join(groups(p), "\u200b") },
	"nbsp":   func(p string) string { return strings.Join(groups(p), "\u00a0") },
	"json": func(p string) string {
		var b strings.Builder
		for _, d := range p {
			fmt.Fprintf(&b, `\u%04x`, d)
		}
		return b.String()
	},
	"percent": func(p string) string {
		var b strings.Builder
		for _, d := range p {
			fmt.Fprintf(&b, "%%%X", d)
		}
		return b.String()
	},
	"xmlref": func(p string) string {
		var b strings.Builder
		for _, d := range p {
			fmt.Fprintf(&b, "&#%d;", d)
		}
		return b.String()
	},
	"exponent":   func(p string) string { return p[:1] + "." + p[1:] + "E+" + strconv.Itoa(len(p)-1) },
	"fullwidth":  digitsFrom('\uff10'),
	"arabic":     digitsFrom('\u0660'),
	"devanagari": digitsFrom('\u0966'),
	"reversed": func(p string) string {
		r := []byte(p)
		slices.Reverse(r)
		return string(r)
	},
}

// transforms encode the bytes between {{name}} and {{/name}}; arg is the
// number after a colon ({{chunked:7}}), or 0.
var transforms = map[string]func(b []byte, arg int) []byte{
	"gzip": func(b []byte, _ int) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	},
	"deflate": func(b []byte, _ int) []byte { // HTTP's deflate is zlib (RFC 9110 §8.4.1.2)
		var buf bytes.Buffer
		w := zlib.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	},
	"rawdeflate": func(b []byte, _ int) []byte {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	},
	"base64": func(b []byte, _ int) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) },
	"urlencode": func(b []byte, _ int) []byte {
		var out []byte
		for _, c := range b {
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
				out = append(out, c)
			} else {
				out = fmt.Appendf(out, "%%%02X", c)
			}
		}
		return out
	},
	"utf16le": func(b []byte, _ int) []byte { return utf16Bytes(b, false) },
	"utf16be": func(b []byte, _ int) []byte { return utf16Bytes(b, true) },
	"utf7":    func(b []byte, _ int) []byte { return utf7Digits(b) },
	"repeat":  func(b []byte, n int) []byte { return bytes.Repeat(b, n) },
	"chunked": func(b []byte, n int) []byte {
		if n <= 0 {
			n = 8
		}
		var buf bytes.Buffer
		for len(b) > 0 {
			k := min(n, len(b))
			fmt.Fprintf(&buf, "%x\r\n%s\r\n", k, b[:k])
			b = b[k:]
		}
		buf.WriteString("0\r\n\r\n")
		return buf.Bytes()
	},
}

func utf16Bytes(b []byte, big bool) []byte {
	var out []byte
	for _, u := range utf16.Encode([]rune(string(b))) {
		if big {
			out = append(out, byte(u>>8), byte(u))
		} else {
			out = append(out, byte(u), byte(u>>8))
		}
	}
	return out
}

// utf7Digits writes b in UTF-7 with every run of ASCII digits shifted into
// modified base64 ("41" is "+ADQAMQ-"), so the bytes hold no digit.
func utf7Digits(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); {
		if b[i] < '0' || b[i] > '9' {
			if b[i] == '+' {
				out.WriteString("+-")
			} else {
				out.WriteByte(b[i])
			}
			i++
			continue
		}
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		u := utf16Bytes(b[i:j], true)
		out.WriteByte('+')
		out.WriteString(strings.TrimRight(base64.StdEncoding.EncodeToString(u), "="))
		out.WriteByte('-')
		i = j
	}
	return out.Bytes()
}

// applyTransforms expands the innermost {{name}}…{{/name}} first, until
// none is left.
func applyTransforms(s string) (string, error) {
	for {
		end := strings.Index(s, "{{/")
		if end < 0 {
			return s, nil
		}
		closeAt := strings.Index(s[end:], "}}")
		if closeAt < 0 {
			return "", fmt.Errorf("unterminated closing tag at %q", s[end:])
		}
		name := s[end+3 : end+closeAt]
		f, ok := transforms[name]
		if !ok {
			return "", fmt.Errorf("unknown transform %q", name)
		}
		open := strings.LastIndex(s[:end], "{{"+name)
		if open < 0 {
			return "", fmt.Errorf("{{/%s}} without {{%s}}", name, name)
		}
		tagEnd := open + strings.Index(s[open:], "}}") + 2
		arg := 0
		if a, ok := strings.CutPrefix(s[open+2:tagEnd-2], name+":"); ok {
			n, err := strconv.Atoi(a)
			if err != nil {
				return "", fmt.Errorf("transform %s: bad argument %q", name, a)
			}
			arg = n
		}
		// A request inside the encoded part (a smuggled one) has its
		// lengths resolved before it is encoded.
		inner := resolveLengths(s[tagEnd:end])
		s = s[:open] + string(f([]byte(inner), arg)) + s[end+closeAt+2:]
	}
}

// resolveLengths replaces each {{LEN}}, last first, by the length of the
// body after its header block, then drops the {{END}} markers.
func resolveLengths(s string) string {
	for {
		i := strings.LastIndex(s, "{{LEN}}")
		if i < 0 {
			break
		}
		start := strings.Index(s[i:], "\r\n\r\n")
		n := 0
		if start >= 0 {
			body := s[i+start+4:]
			if e := strings.Index(body, "{{END}}"); e >= 0 {
				body = body[:e]
			}
			n = len(body)
		}
		s = s[:i] + strconv.Itoa(n) + s[i+7:]
	}
	return strings.ReplaceAll(s, "{{END}}", "")
}

// countRequests is how many requests Go's parser (tok's) finds in b; at
// least 1.
func countRequests(b []byte) int {
	br := bufio.NewReader(bytes.NewReader(b))
	n := 0
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return max(n, 1)
		}
		n++
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return max(n, 1)
		}
		if _, err := br.Peek(1); err != nil {
			return n
		}
	}
}
