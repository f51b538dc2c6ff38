package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tokproxy/tok/proxy"
)

// testCase is one case file of tok test: a request and what tok must do
// with it.
type testCase struct {
	// Name names the case in the output; if empty, the file's name.
	Name string `yaml:"name"`
	// Listener is "public" (the default: a request from a shopper) or
	// "egress" (the app's call to a provider).
	Listener string `yaml:"listener"`
	// Request is a raw HTTP request; RequestFile, instead, names a request
	// file (raw HTTP or HAR), relative to the case file. Entry picks one
	// entry of a HAR file (1 is the first; the default).
	Request     string       `yaml:"request"`
	RequestFile string       `yaml:"request_file"`
	Entry       int          `yaml:"entry"`
	Expect      []expectLine `yaml:"expect"`

	file string
}

// testCmd is `tok test`: it runs every case file named (a folder: each
// *.yaml and *.yml in it, in name order) through a fresh dry run each,
// prints one PASS or FAIL line per case and a summary, and exits 0 when
// every case passes, 1 when one fails, 2 on a usage, config or case-file
// error.
func testCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("test", stderr)
	cfgPath := fs.String("config", defaultConfigFile, "config `FILE`")
	verbose := fs.Bool("v", false, "print the explanation of every case, not only of those that fail")
	paths, code, ok := parseWithArgs(fs, args, stderr)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		return usageError(stderr, "tok test: give case files or folders of them")
	}
	cases, err := loadCases(paths)
	if err != nil {
		fmt.Fprintln(stderr, "tok test:", err)
		return exitUsage
	}
	failed := 0
	for _, c := range cases {
		ex, problems, err := runCase(*cfgPath, c)
		if err != nil {
			fmt.Fprintf(stderr, "tok test: %s: %v\n", c.file, err)
			return exitUsage
		}
		if len(problems) == 0 {
			fmt.Fprintf(stdout, "PASS %s\n", c.Name)
		} else {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %s\n", c.Name, strings.Join(problems, "; "))
		}
		if *verbose || len(problems) > 0 {
			var b bytes.Buffer
			ex.print(&b)
			for l := range strings.SplitSeq(strings.TrimRight(b.String(), "\n"), "\n") {
				fmt.Fprintf(stdout, "    %s\n", l)
			}
		}
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "FAIL: %d of %d case(s) failed\n", failed, len(cases))
		return exitFail
	}
	fmt.Fprintf(stdout, "ok: %d case(s) passed\n", len(cases))
	return exitOK
}

// loadCases reads the case files at paths (folders: their *.yaml and
// *.yml files, in name order) and checks each.
func loadCases(paths []string) ([]testCase, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		var found []string
		for _, pat := range []string{"*.yaml", "*.yml"} {
			m, _ := filepath.Glob(filepath.Join(p, pat)) // the pattern is valid
			found = append(found, m...)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no case files (*.yaml)", p)
		}
		slices.Sort(found)
		files = append(files, found...)
	}
	var cases []testCase
	var errs []error
	for _, f := range files {
		c, err := readCase(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cases = append(cases, c)
	}
	return cases, errors.Join(errs...)
}

func readCase(file string) (testCase, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return testCase{}, err
	}
	var c testCase
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return testCase{}, fmt.Errorf("%s: %w", file, err)
	}
	c.file = file
	if c.Name == "" {
		c.Name = strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	}
	var problems []string
	switch c.Listener {
	case "":
		c.Listener = proxy.ListenerPublic
	case proxy.ListenerPublic, proxy.ListenerEgress:
	default:
		problems = append(problems, fmt.Sprintf("listener %q: want public or egress", c.Listener))
	}
	if (c.Request == "") == (c.RequestFile == "") {
		problems = append(problems, "give one of request (the HTTP request) and request_file")
	}
	if c.RequestFile != "" && !filepath.IsAbs(c.RequestFile) {
		c.RequestFile = filepath.Join(filepath.Dir(file), c.RequestFile)
	}
	if len(c.Expect) == 0 {
		problems = append(problems, "expect: list at least one expectation")
	}
	for _, e := range c.Expect {
		if _, err := parseExpectation(string(e)); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return testCase{}, fmt.Errorf("%s: %s", file, strings.Join(problems, "; "))
	}
	return c, nil
}

// runCase runs c through a fresh dry run of the config at cfgPath and
// returns its explanation and every expectation it fails.
func runCase(cfgPath string, c testCase) (*explanation, []string, error) {
	sess, err := newDryRunSession(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	defer sess.close()
	raw := []byte(c.Request)
	if c.RequestFile != "" {
		if raw, err = os.ReadFile(c.RequestFile); err != nil {
			return nil, nil, err
		}
	}
	ctx := context.Background()
	reqs, err := sess.requests(ctx, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("request: %w", err)
	}
	entry := max(c.Entry, 1)
	if entry > len(reqs) {
		return nil, nil, fmt.Errorf("entry %d: the request file has %d", entry, len(reqs))
	}
	ex, err := sess.explain(ctx, c.Listener, reqs[entry-1])
	if err != nil {
		return nil, nil, err
	}
	var problems []string
	for _, e := range c.Expect {
		x, _ := parseExpectation(string(e)) // readCase has checked it
		if got, ok := x.check(ex); !ok {
			problems = append(problems, "expected "+string(proxy.MaskCards([]byte(e), nil))+", got "+got)
		}
	}
	return ex, problems, nil
}

// expectLine is one entry of a case's expect list, as written: a string,
// or a one-key map ("- refused: card_number_detected" reads as YAML's
// {refused: card_number_detected}), which means "key: value".
type expectLine string

// UnmarshalYAML implements [yaml.Unmarshaler].
func (e *expectLine) UnmarshalYAML(n *yaml.Node) error {
	switch {
	case n.Kind == yaml.ScalarNode:
		*e = expectLine(n.Value)
		return nil
	case n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Kind == yaml.ScalarNode && n.Content[1].Kind == yaml.ScalarNode:
		*e = expectLine(n.Content[0].Value + ": " + n.Content[1].Value)
		return nil
	}
	return fmt.Errorf("line %d: an expectation is one line of text, such as \"field card.number tokenized\"", n.Line)
}

// expectation is one line of a case's expect list.
type expectation struct {
	kind  string // forwarded, refused, status, route, no route, field, contains, lacks
	code  string // refused: the code; field: the outcome's code
	path  string // refused: at PATH; field: the field's path
	want  string // field: tokenized, revealed or refused; route: the name; contains/lacks: the text
	count int    // status
}

// parseExpectation reads one expectation:
//
//	forwarded
//	refused | refused: CODE | refused: CODE at PATH
//	status N
//	route NAME | no route
//	field PATH tokenized | field PATH revealed | field PATH refused[: CODE]
//	forwarded contains TEXT | forwarded lacks TEXT   (TEXT may be quoted)
func parseExpectation(s string) (expectation, error) {
	f := strings.Fields(s)
	bad := func() (expectation, error) {
		return expectation{}, fmt.Errorf("expectation %q: not one of forwarded, refused[: CODE [at PATH]], status N, route NAME, no route, field PATH tokenized|revealed|refused[: CODE], forwarded contains|lacks TEXT", s)
	}
	switch {
	case len(f) == 0:
		return bad()
	case s == "forwarded":
		return expectation{kind: "forwarded"}, nil
	case len(f) >= 3 && f[0] == "forwarded" && (f[1] == "contains" || f[1] == "lacks"):
		text := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s)[len("forwarded"):], " "))
		text = strings.TrimSpace(strings.TrimPrefix(text, f[1]))
		if uq, err := strconv.Unquote(text); err == nil {
			text = uq
		}
		return expectation{kind: f[1], want: text}, nil
	case f[0] == "refused" || f[0] == "refused:":
		x := expectation{kind: "refused"}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "refused"), ":"))
		if rest == "" {
			return x, nil
		}
		code, at, hasAt := strings.Cut(rest, " at ")
		x.code = strings.TrimSpace(code)
		if hasAt {
			x.path = strings.TrimSpace(at)
		}
		if x.code == "" || strings.ContainsAny(x.code, " \t") {
			return bad()
		}
		return x, nil
	case f[0] == "status" && len(f) == 2:
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 100 || n > 599 {
			return bad()
		}
		return expectation{kind: "status", count: n}, nil
	case s == "no route":
		return expectation{kind: "no route"}, nil
	case f[0] == "route" && len(f) == 2:
		return expectation{kind: "route", want: f[1]}, nil
	case f[0] == "field" && len(f) >= 3:
		x := expectation{kind: "field", path: f[1]}
		outcome := strings.Join(f[2:], " ")
		switch {
		case outcome == "tokenized", outcome == "revealed", outcome == "refused":
			x.want = outcome
		case strings.HasPrefix(outcome, "refused:"):
			x.want, x.code = "refused", strings.TrimSpace(strings.TrimPrefix(outcome, "refused:"))
		default:
			return bad()
		}
		return x, nil
	}
	return bad()
}

// check reports whether ex meets x, and if not what happened instead.
func (x expectation) check(ex *explanation) (got string, ok bool) {
	v := ex.Verdict
	outcome := fmt.Sprintf("forwarded (%d)", v.Status)
	if !v.Forwarded {
		outcome = fmt.Sprintf("refused %d %s", v.Status, v.Code)
		if v.Path != "" {
			outcome += " at " + v.Path
		}
	}
	switch x.kind {
	case "forwarded":
		return outcome, v.Forwarded
	case "refused":
		return outcome, !v.Forwarded && (x.code == "" || x.code == v.Code) && (x.path == "" || x.path == v.Path)
	case "status":
		return fmt.Sprintf("status %d", v.Status), v.Status == x.count
	case "route":
		return "route " + dash(ex.Route), ex.Route == x.want
	case "no route":
		return "route " + dash(ex.Route), ex.Route == ""
	case "contains", "lacks":
		has := bytes.Contains(ex.forwarded, []byte(x.want))
		switch {
		case !v.Forwarded:
			return outcome, false
		case x.kind == "contains":
			return "it absent from the forwarded request", has
		default:
			return "it in the forwarded request", !has
		}
	case "field":
		var seen []string
		for _, f := range ex.Fields {
			if f.Path != x.path {
				seen = append(seen, f.Path)
				continue
			}
			got := "field " + f.Path + " " + f.Outcome
			if f.Code != "" {
				got += ": " + f.Code
			}
			if f.Outcome == x.want && (x.code == "" || x.code == f.Code) {
				return got, true
			}
			if f.Outcome == "refused" && x.want == "refused" && f.Code == "" && x.code == v.Code {
				return got, true
			}
			return got, false
		}
		if len(seen) == 0 {
			return "no field found (" + outcome + ")", false
		}
		return "no field " + x.path + " (found " + strings.Join(seen, ", ") + "; " + outcome + ")", false
	}
	return "", false
}
