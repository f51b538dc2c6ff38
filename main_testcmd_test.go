package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseExpectation(t *testing.T) {
	for in, want := range map[string]expectation{
		"forwarded":                               {kind: "forwarded"},
		"refused":                                 {kind: "refused"},
		"refused: card_number_detected":           {kind: "refused", code: "card_number_detected"},
		"refused: card_number_detected at notes":  {kind: "refused", code: "card_number_detected", path: "notes"},
		"status 422":                              {kind: "status", count: 422},
		"route checkout":                          {kind: "route", want: "checkout"},
		"no route":                                {kind: "no route"},
		"field card.number tokenized":             {kind: "field", path: "card.number", want: "tokenized"},
		"field card[number] revealed":             {kind: "field", path: "card[number]", want: "revealed"},
		"field card[number] refused: not_a_token": {kind: "field", path: "card[number]", want: "refused", code: "not_a_token"},
		`forwarded contains "POST /v1/charges"`:   {kind: "contains", want: "POST /v1/charges"},
		"forwarded lacks 4111111111111111":        {kind: "lacks", want: "4111111111111111"},
	} {
		got, err := parseExpectation(in)
		if err != nil || got != want {
			t.Errorf("parseExpectation(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "forward", "status two", "status 42", "field card.number", "field card.number shredded", "refused: two words", "route"} {
		if _, err := parseExpectation(bad); err == nil {
			t.Errorf("parseExpectation(%q) = nil error, want one", bad)
		}
	}
}

func TestReadCaseProblems(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"no request":   "expect: [forwarded]\n",
		"both":         "request: x\nrequest_file: y.http\nexpect: [forwarded]\n",
		"no expect":    "request: x\n",
		"listener":     "listener: auth\nrequest: x\nexpect: [forwarded]\n",
		"unknown key":  "request: x\nexpect: [forwarded]\nexpected: [refused]\n",
		"nested list":  "request: x\nexpect: [[forwarded]]\n",
		"unknown line": "request: x\nexpect: [forwarded, maybe]\n",
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readCase(f); err == nil {
			t.Errorf("readCase(%s) = nil error, want one", name)
		}
	}
	f := filepath.Join(dir, "ok.yaml")
	os.WriteFile(f, []byte("request_file: req.http\nexpect:\n  - refused: card_number_detected\n"), 0o600)
	c, err := readCase(f)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "ok" || c.Listener != "public" || c.RequestFile != filepath.Join(dir, "req.http") || len(c.Expect) != 1 || c.Expect[0] != "refused: card_number_detected" {
		t.Errorf("readCase = %+v", c)
	}
}
