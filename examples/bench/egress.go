package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// egressPrefix is the path prefix of tok's egress route in the harness's
// config, stripped before forwarding (as examples/tok.yaml does with /psp).
const egressPrefix = "/psp"

// egressPath is where the egress benchmark sends its charges.
const egressPath = egressPrefix + "/v1/charges"

// egressBody is the ~100-byte form charge of the egress benchmark, as the
// demo shop sends it: a card token at card[number], where tok puts the card
// number back. Nothing else in it looks like a card.
const egressBody = "amount=4999&currency=eur&card%5Bnumber%5D=" + panPlaceholder + "&metadata%5Border_id%5D=ord_7QKX2M"

// egressRevealed is tok's count of tokens revealed on the egress listener.
const egressRevealed = "tok_reveal_total"

// mintBatch is the most card numbers per POST /handle (proxy.MaxBatch).
const mintBatch = 1000

// benchEgress compares tok's egress listener with the plain proxy: both in
// front of the trivial upstream, both sent the same form charges carrying
// minted card tokens; tok reveals one per request.
func benchEgress(ctx context.Context, e *env, o options, out io.Writer) error {
	pans := newPANSource()
	start := time.Now()
	tokens, err := mintTokens(ctx, e.tok.addr, pans, o.egressTokens)
	if err != nil {
		return err
	}
	pans.tokens = tokens
	fmt.Fprintf(out, "minted %d card tokens through POST /handle in %v\n", len(tokens), time.Since(start).Round(time.Millisecond))

	targets := []*target{e.plain, e.tokEgress}
	tmpl := func(t *target) template {
		return newTemplate(http.MethodPost, t.addr, egressPath, "application/x-www-form-urlencoded", egressBody, minted)
	}
	for _, t := range targets {
		before, _ := scrape(e.metricsURL)
		status, body, err := probe(t.addr, tmpl(t), pans)
		if err != nil {
			return fmt.Errorf("preflight %s POST %s: %w", t.name, egressPath, err)
		}
		if status < 200 || status > 299 {
			return fmt.Errorf("preflight %s POST %s: HTTP %d: %.300s", t.name, egressPath, status, body)
		}
		if t == e.tokEgress {
			after, err := scrape(e.metricsURL)
			if err != nil {
				return fmt.Errorf("preflight: tok metrics: %w", err)
			}
			if n := delta(before, after, egressRevealed, "kind", "egress", "outcome", "ok"); n != 1 {
				return fmt.Errorf("preflight: tok answered POST %s but its metrics show %v tokens revealed, want 1", egressPath, n)
			}
		}
	}
	fmt.Fprintln(out, "preflight: both targets answer 2xx; tok reveals the token at card[number]")

	fmt.Fprintf(out, "\n== closed loop: POST %s, ~%d B form; tok reveals card[number] (one of %d minted tokens, in turn), the plain proxy forwards the token\n   %d connections, %d rounds of %v per target, interleaved (plain, tok, plain, tok, ...)\n",
		egressPath, len(egressBody), len(tokens), o.conns, o.rounds, o.duration)
	for _, t := range targets {
		if o.warmup > 0 {
			closedLoop(ctx, t.addr, tmpl(t), pans, o.conns, o.warmup)
		}
	}
	before, _ := scrape(e.metricsURL)
	runs, err := closedRounds(ctx, targets, tmpl, pans, o, out)
	if err != nil {
		return err
	}
	after, _ := scrape(e.metricsURL)
	ratio := printClosed(out, targets, runs)
	revealed := delta(before, after, egressRevealed, "kind", "egress", "outcome", "ok")
	if n := delta(before, after, "tok_reveal_duration_seconds_count"); n > 0 {
		mean := time.Duration(delta(before, after, "tok_reveal_duration_seconds_sum") / n * float64(time.Second))
		fmt.Fprintf(out, "   tok revealed %.0f tokens (one audit line each); vault reveal %s on average\n", revealed, fmtDur(mean))
	}
	fmt.Fprintf(out, "   egress overhead: tok's egress listener serves %.2f × the plain proxy's req/s (median of per-round ratios)\n", ratio)
	return nil
}

// mintTokens tokenizes n fresh card numbers through tok's POST /handle at
// addr and returns their tokens, each as long as panPlaceholder.
func mintTokens(ctx context.Context, addr string, pans *panSource, n int) ([]string, error) {
	c := &http.Client{Timeout: 30 * time.Second}
	tokens := make([]string, 0, n)
	pan := make([]byte, len(panPlaceholder))
	for len(tokens) < n {
		batch := make([]string, min(mintBatch, n-len(tokens)))
		for i := range batch {
			pans.next(pan, uniqueValid)
			batch[i] = string(pan)
		}
		body, err := json.Marshal(map[string][]string{"pan_numbers": batch})
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/handle", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("mint tokens: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("mint tokens: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("mint tokens: POST /handle: HTTP %d: %.300s", resp.StatusCode, b)
		}
		var got struct {
			Tokens []string `json:"tokens"`
		}
		if err := json.Unmarshal(b, &got); err != nil || len(got.Tokens) != len(batch) {
			return nil, fmt.Errorf("mint tokens: POST /handle answered %.300s, want %d tokens", b, len(batch))
		}
		for _, t := range got.Tokens {
			if len(t) != len(panPlaceholder) || strings.Trim(t, "0123456789") != "" {
				return nil, fmt.Errorf("mint tokens: token %q is not %d digits (a pan token of a 16-digit card)", t, len(panPlaceholder))
			}
		}
		tokens = append(tokens, got.Tokens...)
	}
	return tokens, nil
}
