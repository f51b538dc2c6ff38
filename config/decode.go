package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// document is one config file being decoded: its key-path→line index and
// the problems found so far.
type document struct {
	name  string
	cfg   *Config
	lines map[string]int // key path → line of the key (or sequence item)
	errs  []Problem
	bad   []string // paths with schema problems; validation skips them
	// blanked is set when the schema check has set values their type
	// refuses to null (and reported them), so decoding leaves them zero.
	blanked bool
}

// decode checks data against the schema (unknown keys, wrong types) and
// decodes it. A syntax error is returned at once; schema problems are kept
// in the document so that validation can add its own.
func decode(data []byte, name string) (*document, error) {
	d := &document{name: name, cfg: &Config{}, lines: map[string]int{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		return d, nil // an empty file: every default
	case err != nil:
		return nil, &Error{Problems: []Problem{syntaxProblem(name, err)}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = extra.Line
		}
		d.add(Problem{Line: line, Msg: "only one YAML document is allowed; remove the \"---\" separator and what follows"})
	}
	d.index(&root, "")
	d.check(&root, reflect.TypeFor[Config](), "")

	// yaml.v3 stops at the first value an UnmarshalText refuses; those
	// values are reported and blanked in the tree, which is decoded then.
	// Unknown keys are reported by the schema check either way.
	var err error
	if d.blanked {
		err = root.Decode(d.cfg)
	} else {
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		err = strict.Decode(d.cfg)
	}
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &te):
		// The schema check above names these better; keep any it missed.
		for _, msg := range te.Errors {
			d.addDecoderError(msg)
		}
	default:
		return nil, &Error{Problems: []Problem{syntaxProblem(name, err)}}
	}
	return d, nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxProblem turns a yaml error ("yaml: line 3: did not find expected key")
// into a Problem.
func syntaxProblem(name string, err error) Problem {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return Problem{File: name, Line: n, Msg: "invalid YAML: " + m[2]}
	}
	return Problem{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// addDecoderError keeps a yaml.v3 type error unless the schema check already
// reported a problem on that line.
func (d *document) addDecoderError(msg string) {
	p := Problem{Msg: msg}
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = m[2]
		if slices.ContainsFunc(d.errs, func(q Problem) bool { return q.Line == p.Line }) {
			return
		}
	}
	d.add(p)
}

// index records the line of every key path in the tree under n.
func (d *document) index(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.index(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if _, seen := d.lines[p]; !seen {
				d.lines[p] = k.Line
			}
			d.index(v, p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = c.Line
			d.index(c, p)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lineOf returns the line of path, or of its nearest ancestor in the file
// (a missing key is reported where its parent is), or 0.
func (d *document) lineOf(path string) int {
	for path != "" {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

var (
	durationType        = reflect.TypeFor[time.Duration]()
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// check walks the node tree against the Go type t and reports unknown keys,
// duplicate keys and values of the wrong kind, each with its key path.
func (d *document) check(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.DocumentNode || n.Kind == yaml.AliasNode {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return
		}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // absent: the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			d.schema(path, n.Line, unmarshalMessage(err))
		}
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		d.checkText(n, t, path)
		return
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.schema(path, n.Line, "want a duration with a unit, such as 30s, 15m or 8h")
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			d.schema(path, n.Line, fmt.Sprintf("%q is not a duration; use a number with a unit, such as 30s, 15m or 8h", n.Value))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.checkStruct(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.schema(path, n.Line, "want a list ("+kindName(n)+" given)")
			return
		}
		for i, c := range n.Content {
			d.check(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.schema(path, n.Line, "want a mapping ("+kindName(n)+" given)")
			return
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				d.schema(p, k.Line, fmt.Sprintf("duplicate key (first at line %d); keep one", first))
				continue
			}
			seen[k.Value] = k.Line
			d.check(v, t.Elem(), p)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.schema(path, n.Line, "want a string ("+kindName(n)+" given)")
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.schema(path, n.Line, "want true or false")
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.schema(path, n.Line, "want a whole number")
		} else if _, err := strconv.ParseInt(n.Value, 0, 32); err != nil {
			d.schema(path, n.Line, "number out of range")
		}
	}
}

// checkText checks a scalar against the UnmarshalText of t, the enums
// (guard.mode, fields[].format and the like), whose errors name the
// values allowed. A value refused is blanked for decoding.
func (d *document) checkText(n *yaml.Node, t reflect.Type, path string) {
	var msg string
	if n.Kind != yaml.ScalarNode {
		msg = "want a string (" + kindName(n) + " given)"
	} else if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
		msg = err.Error()
	}
	if msg == "" {
		return
	}
	d.schema(path, n.Line, msg)
	*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
	d.blanked = true
}

func (d *document) checkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		d.schema(path, n.Line, "want a mapping of keys ("+kindName(n)+" given)")
		return
	}
	fields := map[string]reflect.Type{}
	var known []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = f.Type
		known = append(known, name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p := join(path, k.Value)
		ft, ok := fields[k.Value]
		if !ok {
			d.schema(p, k.Line, fmt.Sprintf("unknown key %q; known keys here: %s", k.Value, strings.Join(known, ", ")))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.schema(p, k.Line, fmt.Sprintf("duplicate key (first at line %d); keep one", first))
			continue
		}
		seen[k.Value] = k.Line
		d.check(v, ft, p)
	}
}

// unmarshalMessage returns the message of an UnmarshalYAML error without
// yaml's "line N:" prefix (the problem carries the line).
func unmarshalMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		err = errors.New(te.Errors[0])
	}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		return m[2]
	}
	return err.Error()
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
}

// schema records a schema problem at path; validation of that path and
// everything under it is then skipped, since its value is unknown.
func (d *document) schema(path string, line int, msg string) {
	d.add(Problem{Line: line, Path: path, Msg: msg})
	d.bad = append(d.bad, path)
}

// add records p, filling in the file name and, if unset, the line of p.Path.
func (d *document) add(p Problem) {
	p.File = d.name
	if p.Line == 0 && p.Path != "" {
		p.Line = d.lineOf(p.Path)
	}
	d.errs = append(d.errs, p)
}

// skipped reports whether path is at or under a path with a schema problem.
func (d *document) skipped(path string) bool {
	for _, b := range d.bad {
		if path == b || strings.HasPrefix(path, b+".") || strings.HasPrefix(path, b+"[") {
			return true
		}
	}
	return false
}

// problems returns every problem, ordered by line, or nil.
func (d *document) problems() error {
	if len(d.errs) == 0 {
		return nil
	}
	ps := slices.Clone(d.errs)
	slices.SortStableFunc(ps, func(a, b Problem) int { return a.Line - b.Line })
	return &Error{Problems: ps}
}

// Problem is one thing wrong with a config file.
type Problem struct {
	File string // the name given to Parse
	Line int    // 1-based; 0 if unknown
	Path string // key path, e.g. clients[1].secret_hash; empty for the whole file
	Msg  string // what is wrong and how to fix it
}

// Error formats p as "FILE:LINE: PATH: MSG".
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is every problem found in a config file, ordered by line.
type Error struct {
	Problems []Problem
}

// Error returns one problem per line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, for errors.As.
func (e *Error) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}
