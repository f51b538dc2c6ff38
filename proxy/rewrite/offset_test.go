package rewrite

import (
	"errors"
	"strings"
	"testing"
)

// TestGuardOffset checks that a guard refusal says where in the body (or
// query string) the value holding the card starts, and that an error about
// no one value says -1.
func TestGuardOffset(t *testing.T) {
	r, err := New(Config{Guard: GuardReject, Fields: []Field{{JSON: "card.number"}, {Form: "card[number]"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ct, body, at string
	}{
		{"json string", "application/json", `{"card":{"number":"4111111111111111"},"notes":"call 4242 4242 4242 4242"}`, `"call`},
		{"json number", "application/json", `{"a":1,"b":4242424242424242}`, `4242424242424242`},
		{"form value", "application/x-www-form-urlencoded", `card%5Bnumber%5D=4111111111111111&memo=5555555555554444`, `5555555555554444`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Rewrite([]byte(tc.body), tc.ct, func(vals []Value) ([]string, error) { return make([]string, len(vals)), nil })
			var re *Error
			if !errors.As(err, &re) || re.Code != CodeCardNumberDetected {
				t.Fatalf("Rewrite(%q) error = %v, want %s", tc.body, err, CodeCardNumberDetected)
			}
			if want := strings.Index(tc.body, tc.at); re.Offset != want {
				t.Errorf("Rewrite(%q) offset = %d, want %d", tc.body, re.Offset, want)
			}
		})
	}
	plain, err := New(Config{Guard: GuardReject, ReadAll: true})
	if err != nil {
		t.Fatal(err)
	}
	body := "hello 4242-4242-4242-4242 bye"
	_, err = plain.Rewrite([]byte(body), "text/plain", nil)
	if re := (*Error)(nil); !errors.As(err, &re) || re.Offset != strings.Index(body, "4242") {
		t.Errorf("Rewrite(%q) error = %+v, want offset %d", body, re, strings.Index(body, "4242"))
	}
	_, err = r.RewriteQuery("a=1&pan=4242424242424242", func(vals []Value) ([]string, error) { return nil, nil })
	var re *Error
	if !errors.As(err, &re) || re.Offset != len("a=1&pan=") {
		t.Errorf("RewriteQuery error = %+v, want offset %d", re, len("a=1&pan="))
	}
	_, err = r.Rewrite([]byte(`{"a":`), "application/json", nil)
	if !errors.As(err, &re) || re.Code != CodeInvalidJSON || re.Offset != -1 {
		t.Errorf("Rewrite of bad JSON error = %+v, want invalid_json at offset -1", re)
	}
}
