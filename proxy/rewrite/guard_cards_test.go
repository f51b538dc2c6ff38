package rewrite

import (
	"slices"
	"strings"
	"testing"
)

func TestNetworks(t *testing.T) {
	got := Networks()
	for _, want := range []string{"amex", "diners", "discover", "jcb", "maestro", "mastercard", "mir", "unionpay", "visa"} {
		if !slices.Contains(got, want) {
			t.Errorf("Networks() = %q, lacks %q", got, want)
		}
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Errorf("Networks() = %q, want sorted and unique", got)
	}
	// Every row of the table names a network: one place for the data.
	for _, b := range brands {
		if strings.TrimSpace(b.networks) == "" {
			t.Errorf("brand %s-%s names no network", b.lo, b.hi)
		}
	}
	for d, want := range map[string]string{"4111111111111111": "visa", "378282246310005": "amex",
		"5555555555554444": "mastercard", "4111111111111112": "", "6500000000000002": "discover rupay elo"} {
		if got := NetworkOf(d); got != want {
			t.Errorf("NetworkOf(%s) = %q, want %q", d[:6], got, want)
		}
	}
}

func TestNewCardSetErrors(t *testing.T) {
	for _, tc := range []struct {
		networks, prefixes []string
		lengths            []int
		want               string
	}{
		{[]string{"visa", "vissa"}, nil, nil, `unknown network "vissa"`},
		{nil, []string{"55-51"}, nil, "the range is empty"},
		{nil, []string{"4x"}, nil, "write digits"},
		{nil, []string{"51-5"}, nil, "same number of digits"},
		{nil, []string{"-"}, nil, "write digits"},
		{nil, []string{"123456789"}, nil, "1 to 8 digits"},
		{nil, nil, []int{11}, "length 11 is out of range"},
		{nil, nil, []int{20}, "length 20 is out of range"},
	} {
		_, err := NewCardSet(tc.networks, tc.prefixes, tc.lengths)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewCardSet(%q, %q, %v) = %v, want %q", tc.networks, tc.prefixes, tc.lengths, err, tc.want)
		}
	}
}

func TestCardSetTakes(t *testing.T) {
	amexNTI := "378282246310005" // a 15-digit id with an Amex prefix passes as an Amex
	for _, tc := range []struct {
		name               string
		networks, prefixes []string
		lengths            []int
		takes, leaves      []string
	}{
		{"nil set is the guard", nil, nil, nil, []string{"4111111111111111", amexNTI}, []string{"4111111111111112", "1234567890123452"}},
		{"visa and mastercard", []string{"visa", "mastercard"}, nil, nil, []string{"4111111111111111", "5555555555554444", "2223003122003222"}, []string{amexNTI, "6011111111111117"}},
		{"lengths", nil, nil, []int{16}, []string{"4111111111111111"}, []string{amexNTI, "4222222222222", "4111111111111111110"}},
		{"prefixes", nil, []string{"4", "51-55"}, nil, []string{"4111111111111111", "5555555555554444"}, []string{"2223003122003222", amexNTI}},
		// A prefix never widens the guard: UATP (1) is not in its table.
		{"prefix outside the table", nil, []string{"1"}, nil, nil, []string{"1234567890123452", "4111111111111111"}},
		{"all three", []string{"visa"}, []string{"41"}, []int{16}, []string{"4111111111111111"}, []string{"4222222222222", "4012888888881881"}},
	} {
		cs, err := NewCardSet(tc.networks, tc.prefixes, tc.lengths)
		if err != nil {
			t.Fatal(err)
		}
		if tc.networks == nil && tc.prefixes == nil && tc.lengths == nil {
			cs = nil
		}
		for _, d := range tc.takes {
			if !cs.Takes(d) {
				t.Errorf("%s: Takes(%s…) = false, want true", tc.name, d[:6])
			}
		}
		for _, d := range tc.leaves {
			if cs.Takes(d) {
				t.Errorf("%s: Takes(%s…) = true, want false", tc.name, d[:6])
			}
		}
	}
}

// TestRewriteCards: a narrowed guard leaves the numbers it does not take
// byte for byte as they were, and still hands over those it does, inside
// the same string too.
func TestRewriteCards(t *testing.T) {
	cs, err := NewCardSet([]string{"visa"}, nil, []int{16})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := New(Config{Guard: GuardTokenize, Cards: cs})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"nti":"378282246310005","n":378282246310005,"card":"4111 1111 1111 1111","both":"378282246310005 / 4111111111111111"}`
	out, err := rw.Rewrite([]byte(body), "application/json", func(vals []Value) ([]string, error) {
		r := make([]string, len(vals))
		for i := range vals {
			r[i] = "TOKEN"
		}
		return r, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"nti":"378282246310005","n":378282246310005,"card":"TOKEN","both":"378282246310005 / TOKEN"}`
	if string(out) != want {
		t.Errorf("Rewrite = %s\nwant      %s", out, want)
	}
	form := "nti=378282246310005&card=4111111111111111"
	out, err = rw.Rewrite([]byte(form), "application/x-www-form-urlencoded", func(vals []Value) ([]string, error) {
		return []string{"TOKEN"}, nil
	})
	if err != nil || string(out) != "nti=378282246310005&card=TOKEN" {
		t.Errorf("Rewrite(form) = %s, %v", out, err)
	}
}

// TestBrand reads the guard's own table: the network by prefix and length,
// the longest prefix first, whatever the Luhn check says.
func TestBrand(t *testing.T) {
	tests := []struct {
		d, want string
	}{
		{"4111111111111111", "visa"},
		{"4111111111111112", "visa"}, // fails the Luhn check: still a Visa number
		{"4222222222222", "visa"},    // 13 digits
		{"41111111111111111", ""},    // Visa issues no 17-digit card
		{"5555555555554444", "mastercard"},
		{"2223003122003222", "mastercard"}, // 2-series
		{"5552139992521777", "mastercard"}, // the prototype's example PAN
		{"378282246310005", "amex"},
		{"3782822463100050", ""},         // Amex has 15 digits
		{"6011111111111117", "discover"}, // 6011 beats RuPay's 60
		{"6062828888666688", "rupay"},    // the 60 range, first named
		{"6500000000000002", "discover"}, // a shared range: the first named
		{"3530111333300000", "jcb"},
		{"30569309025904", "diners"},
		{"6200000000000005", "unionpay"},
		{"2200000000000004", "mir"}, // 2200 beats nothing shorter: Mastercard starts at 2221
		{"6759649826438453", "maestro"},
		{"5019717010103742", "dankort"}, // 5019 is Dankort, not Maestro
		{"9792000000000001", "troy"},
		{"1234567890123456", ""}, // UATP and unknown prefixes
		{"411111111111", ""},     // 12 digits: no network of the table
		{"41111111111111x1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := Brand(tt.d)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Brand(%q) = %q, %v, want %q", tt.d, got, ok, tt.want)
		}
	}
	// Every network of the table is some number's brand, and every brand
	// is a network the guard knows: one table for both.
	for _, b := range brands {
		d := b.lo + strings.Repeat("0", b.min-len(b.lo))
		name, ok := Brand(d)
		if !ok || !slices.Contains(Networks(), name) {
			t.Errorf("Brand(%s…, %d digits) = %q, %v, want a network of %q", b.lo, b.min, name, ok, Networks())
		}
	}
}
