package main

import (
	"context"
	"fmt"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/postgres"
	vredis "github.com/tokproxy/tok/vault/redis"
)

// scenarioPGRedis is the scale-out scenario: the vault on PostgreSQL, the
// CVCs on Redis (tok's vault.volatile), tok SIGKILLed as in "postgres".
const scenarioPGRedis = "postgres-redis"

// cvcTTL is the ttl of the CVC field in the postgres-redis scenario: far
// longer than a run, so a CVC that does not reveal was lost, not expired.
const cvcTTL = 15 * time.Minute

// cvcField is the checkout route's CVC field in scenario, if it has one.
func cvcField(scenario string) string {
	if scenario != scenarioPGRedis {
		return ""
	}
	return fmt.Sprintf("      - {json: card.cvc, format: digits, store: memory, ttl: %s, bind: card.number}\n", cvcTTL)
}

// cvcFor is the CVC the load sends with pan: derived from it, so the check
// needs no ledger of its own.
func cvcFor(pan string) string { return pan[len(pan)-4 : len(pan)-1] }

// checkCVCs opens the scenario's PostgreSQL and Redis stores directly (tok
// is down) and checks that every CVC token the upstream received reveals,
// with the card token it came with, the CVC sent with that card. tok's
// SIGKILLs must lose none: the CVCs live in Redis, which no kill touches.
// Only a ttl (cvcTTL, longer than a run) or a Redis restart may lose one.
func checkCVCs(ctx context.Context, h *harness, pgURL string, rs []receipt) {
	res := h.res
	pg, err := postgres.Open(ctx, pgURL, postgres.Options{})
	if err != nil {
		res.problem("cvc check: postgres.Open: %v", err)
		return
	}
	defer pg.Close()
	rd, err := vredis.Open(ctx, vredis.Options{URL: h.o.redisURL, JanitorInterval: -1})
	if err != nil {
		res.problem("cvc check: redis: %v", err)
		return
	}
	defer rd.Close()
	v, err := vault.New(pg, h.keys, vault.WithVolatile(rd))
	if err != nil {
		res.problem("cvc check: %v", err)
		return
	}
	h.led.mu.Lock()
	orders := make(map[string]string, len(h.led.orders))
	for k, pan := range h.led.orders {
		orders[k] = pan
	}
	h.led.mu.Unlock()
	var samples []string
	for _, r := range rs {
		pan, ok := orders[r.order]
		if r.truncated || r.cvc == "" || !ok {
			continue
		}
		res.cvcChecked++
		got, err := v.RevealBound(ctx, r.token, r.cvc)
		switch {
		case err == nil && got.Value == cvcFor(pan):
		case time.Since(r.at) >= cvcTTL:
			res.cvcExpired++
		default:
			res.cvcLost++
			if len(samples) < 5 {
				samples = append(samples, fmt.Sprintf("card token %s, CVC token %s: %v", vault.Mask(r.token), r.cvc, err))
			}
		}
	}
	for _, s := range samples {
		res.problem("CVC lost: %s", s)
	}
	fmt.Fprintf(h.o.out, "%s: offline check of %d CVCs the app received: %d lost, %d expired by ttl\n",
		res.scenario, res.cvcChecked, res.cvcLost, res.cvcExpired)
}
