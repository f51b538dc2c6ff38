package proxy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestREADMECodes: the README's error-code table lists exactly the codes
// declared as constants (proxy's, rewrite's, auth's and httpx's), so a code added
// in the code and not in the table, or left in the table after its code
// went, fails here.
func TestREADMECodes(t *testing.T) {
	declared := map[string]string{} // code → constant
	for _, file := range []string{"codes.go", "rewrite/errors.go", "auth/codes.go", "internal/httpx/codes.go"} {
		for name, code := range codeConstants(t, file) {
			declared[code] = name
		}
	}
	// client_closed is never sent (nobody is listening); it names the
	// request in metrics and logs only.
	delete(declared, CodeClientClosed)

	listed := readmeCodes(t, "../README.md")
	for code, name := range declared {
		if !listed[code] {
			t.Errorf("README's error-code table lacks %s (%s)", code, name)
		}
	}
	for code := range listed {
		if _, ok := declared[code]; !ok {
			t.Errorf("README's error-code table lists %s, which no Code constant declares", code)
		}
	}
	if len(listed) < 40 {
		t.Errorf("found %d codes in the README's table; is it still there?", len(listed))
	}
}

// codeConstants returns the Code* string constants of a Go file.
func codeConstants(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !strings.HasPrefix(name.Name, "Code") || !ok || lit.Kind != token.STRING {
					continue
				}
				code, _ := strconv.Unquote(lit.Value)
				out[name.Name] = code
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s declares no Code constants", path)
	}
	return out
}

// readmeCodes returns the codes in the README table whose header is
// "| status | codes |": the backquoted lower_case words of its second
// column, outside the parenthesized remarks (which name metrics and
// settings too).
func readmeCodes(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	start := slices.Index(lines, "| status | codes |")
	if start < 0 {
		t.Fatal(`README has no "| status | codes |" table`)
	}
	code := regexp.MustCompile("`([a-z][a-z_]*)`")
	remark := regexp.MustCompile(`\([^()]*\)`)
	out := map[string]bool{}
	for _, l := range lines[start+2:] {
		if !strings.HasPrefix(l, "|") {
			break
		}
		cols := strings.Split(l, "|")
		if len(cols) < 3 {
			continue
		}
		col := cols[2]
		for remark.MatchString(col) {
			col = remark.ReplaceAllString(col, "")
		}
		for _, m := range code.FindAllStringSubmatch(col, -1) {
			out[m[1]] = true
		}
	}
	return out
}
