package rewrite_test

import (
	"fmt"

	"github.com/tokproxy/tok/proxy/rewrite"
)

func ExampleRewriter_Rewrite() {
	r, err := rewrite.New(rewrite.Config{
		Fields: []rewrite.Field{{JSON: "card.number"}, {JSON: "items.#.card.number"}},
	})
	if err != nil {
		panic(err)
	}
	body := []byte(`{"card": {"number": "4111 1111 1111 1111"}, "items": [{"card": {"number": 5555555555554444}}]}`)
	out, err := r.Rewrite(body, "application/json", func(vals []rewrite.Value) ([]string, error) {
		tokens := make([]string, len(vals))
		for i, v := range vals {
			fmt.Println(v.Path, v.Kind == rewrite.KindNumber)
			tokens[i] = "4111119876541111" // a real caller tokenizes all of vals in one commit
		}
		return tokens, nil
	})
	fmt.Println(string(out), err)

	_, err = r.Rewrite([]byte(`{"note": "card 4111-1111-1111-1111"}`), "application/json", nil)
	fmt.Println(err)
	// Output:
	// card.number false
	// items.0.card.number true
	// {"card": {"number": "4111119876541111"}, "items": [{"card": {"number": 4111119876541111}}]} <nil>
	// rewrite: card_number_detected at "note": card-like number outside the configured fields
}

func ExampleBrand() {
	for _, d := range []string{"4111111111111111", "6011111111111117", "378282246310005", "3782822463100050"} {
		name, ok := rewrite.Brand(d)
		fmt.Println(d[:4], len(d), name, ok)
	}
	// Output:
	// 4111 16 visa true
	// 6011 16 discover true
	// 3782 15 amex true
	// 3782 16  false
}
