package audit

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLastLine(t *testing.T) {
	dir := t.TempDir()
	if l, err := LastLine(filepath.Join(dir, "missing")); l != nil || err != nil {
		t.Errorf("missing file: %q, %v; want nil, nil", l, err)
	}
	p := filepath.Join(dir, "a")
	os.WriteFile(p, []byte(`{"seq":1}`+"\n"+`{"seq":2}`+"\n"), 0o600)
	if l, _ := LastLine(p); string(l) != `{"seq":2}` {
		t.Errorf("LastAuditLine = %q, want the second line", l)
	}
	os.WriteFile(p, nil, 0o600)
	if l, _ := LastLine(p); l != nil {
		t.Errorf("empty file: %q", l)
	}
}

// TestReadTail: the last audit line, and the torn region after it
// that a cut write left.
func TestReadTail(t *testing.T) {
	const one, two = `{"seq":1}`, `{"seq":2}`
	for _, tc := range []struct {
		name, file   string
		last, torn   string
		unterminated bool
	}{
		{"empty", "", "", "", false},
		{"whole", one + "\n" + two + "\n", two, "", false},
		{"torn tail", one + "\n" + two + "\n" + `{"seq":3,"ev`, two, `{"seq":3,"ev`, false},
		{"torn lines", one + "\n" + `{"se` + "\n" + `{"seq":3,"ev`, one, `{"se` + "\n" + `{"seq":3,"ev`, false},
		{"torn, then a newline", one + "\n" + `{"se` + "\n", one, `{"se` + "\n", false},
		{"no newline", one + "\n" + two, two, "", true},
		{"all torn", `{"se`, "", `{"se`, false},
		// An edited (but JSON) last line is Last, for verify to find.
		{"edited last", one + "\n" + `{"seq":9,"edited":true}` + "\n", `{"seq":9,"edited":true}`, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "audit.log")
			os.WriteFile(p, []byte(tc.file), 0o600)
			tail, err := ReadTail(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(tail.Last) != tc.last || string(tail.Torn) != tc.torn || tail.Unterminated != tc.unterminated {
				t.Errorf("ReadAuditTail = last %q, torn %q, unterminated %v; want %q, %q, %v",
					tail.Last, tail.Torn, tail.Unterminated, tc.last, tc.torn, tc.unterminated)
			}
		})
	}
}
