package vault_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

func ExampleNormalizePAN() {
	pan, err := vault.NormalizePAN("5552 1332 1212 1617 77")
	fmt.Println(pan, err)
	_, err = vault.NormalizePAN("5552.1332.1212.1617")
	fmt.Println(err)
	// Output:
	// 555213321212161777 <nil>
	// invalid value: non-digit character at offset 4
}

func ExampleMask() {
	fmt.Println(vault.Mask("4111111111111111"))
	fmt.Println(vault.Mask("737"))
	// Output:
	// 411111******1111
	// ***
}

func ExampleLuhn() {
	fmt.Println(vault.Luhn("4111111111111111"))
	fmt.Println(vault.Luhn("555213321212161777")) // the prototype's example PAN
	// Output:
	// true
	// false
}

func ExampleVault_Tokenize() {
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		panic(err)
	}
	store := memory.New()
	defer store.Close()
	v, err := vault.New(store, keys)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	const pan = "4111 1111 1111 1111"
	toks, err := v.Tokenize(ctx, []vault.Request{
		{Value: pan},
		{Value: pan}, // convergent: the same token
		{Value: "737", Spec: vault.Spec{Format: vault.FormatDigits, Unique: true, TTL: time.Hour}},
	})
	if err != nil {
		panic(err)
	}
	tok := toks[0]
	fmt.Println(len(tok), vault.Luhn(tok), tok[:6], tok[len(tok)-4:], toks[1] == tok, len(toks[2]))

	r, err := v.Reveal(ctx, tok)
	if err != nil {
		panic(err)
	}
	fmt.Println(r.Value == "4111111111111111", vault.Mask(r.Value), r.Format)
	// Output:
	// 16 false 411111 1111 true 3
	// true 411111******1111 pan
}
