package config_test

import (
	"fmt"

	"github.com/tokproxy/tok/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
upstream: http://127.0.0.1:3000
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    fields:
      - json: card.number
      - json: card.cvc
        format: digits
        store: memory
        ttl: 15m
        bind: card.number
limits: {max_body: 256KiB}
`), "tok.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Listen.Public, cfg.Limits.MaxBody, cfg.Guard.Mode)
	spec, _ := cfg.Inbound[0].Fields[1].Spec()
	fmt.Println(spec.Format, spec.Volatile, spec.TTL, spec.Bound)

	_, err = config.Parse([]byte(`
limits: {max_body: 1GiB}
clients:
  - name: cih
    secret_hash: "$2a$12$..."
    reveal: yes
`), "tok.yaml")
	fmt.Println(err)
	// Output:
	// :8080 256KiB reject
	// digits true 15m0s true
	// tok.yaml:2: limits.max_body: 1GiB is out of range; use 1KiB to 64MiB
	// tok.yaml:5: clients[0].secret_hash: not a bcrypt hash; generate one with "tok secret hash"
	// tok.yaml:6: clients[0].reveal: want true or false
}
