package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/postgres"
)

// want is a token to verify and the PAN it must reveal.
type want struct {
	token, pan string
	acked      bool // a client got it with a 2xx
	upstream   bool // the upstream app received it
}

// failure is a token that did not reveal its PAN.
type failure struct {
	want
	reason string
}

// revealFunc returns the PAN behind token.
type revealFunc func(ctx context.Context, token string) (string, error)

// wants turns acknowledgements and upstream receipts into the tokens to
// verify, one per token. Receipts that cannot be checked at all (no order,
// an unknown order, or a card number that is the PAN itself) and tokens
// that were handed out for two PANs come back as problems.
func wants(acks []ack, rs []receipt, led *ledger) ([]want, []string) {
	var problems []string
	byToken := map[string]*want{}
	var out []*want
	add := func(w want) {
		if prev, ok := byToken[w.token]; ok {
			if prev.pan != w.pan {
				problems = append(problems, fmt.Sprintf("token %s was given for two PANs", w.token))
			}
			prev.acked = prev.acked || w.acked
			prev.upstream = prev.upstream || w.upstream
			return
		}
		p := &w
		byToken[w.token] = p
		out = append(out, p)
	}
	for _, a := range acks {
		add(want{token: a.token, pan: a.pan, acked: true})
	}
	for _, r := range rs {
		pan, ok := led.orderPAN(r.order)
		switch {
		case r.truncated && (!ok || r.token == ""):
			continue // cut off before a whole token arrived

		case !ok || r.token == "":
			problems = append(problems, fmt.Sprintf("upstream got order %q with card number %q: unusable", r.order, r.token))
			continue
		case r.token == pan:
			problems = append(problems, fmt.Sprintf("upstream got the PAN of order %q in clear", r.order))
			continue
		}
		add(want{token: r.token, pan: pan, upstream: true})
	}
	res := make([]want, len(out))
	for i, p := range out {
		res[i] = *p
	}
	return res, problems
}

// verify reveals every token with parallel goroutines and returns those
// that are missing or reveal another PAN.
func verify(ctx context.Context, ws []want, parallel int, reveal revealFunc) []failure {
	var (
		mu    sync.Mutex
		fails []failure
		wg    sync.WaitGroup
	)
	next := make(chan want)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range next {
				pan, err := reveal(ctx, w.token)
				var reason string
				switch {
				case err != nil:
					reason = err.Error()
				case pan != w.pan:
					reason = "reveals another PAN"
				}
				if reason != "" {
					mu.Lock()
					fails = append(fails, failure{w, reason})
					mu.Unlock()
				}
			}
		}()
	}
	for _, w := range ws {
		next <- w
	}
	close(next)
	wg.Wait()
	sort.Slice(fails, func(i, j int) bool { return fails[i].token < fails[j].token })
	return fails
}

// httpRevealer logs in on tok's auth listener and reveals tokens with
// GET /@me?token=..., as a cardholder-data client would.
func httpRevealer(ctx context.Context, authAddr, client, secret string) (revealFunc, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]string{"bank_coordinates": client, "secret": secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+authAddr+"/login", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		return nil, fmt.Errorf("login: %s with %d cookies", resp.Status, len(resp.Cookies()))
	}
	cookies := resp.Cookies()
	return func(ctx context.Context, token string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+authAddr+"/@me?token="+url.QueryEscape(token), nil)
		if err != nil {
			return "", err
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("GET /@me: %s", resp.Status)
		}
		var me struct {
			PAN string `json:"pan"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&me); err != nil {
			return "", fmt.Errorf("GET /@me: %w", err)
		}
		return me.PAN, nil
	}, nil
}

// storeRevealer wraps a vault on an open store.
func storeRevealer(store vault.Store, keys *vault.Keyring) (revealFunc, error) {
	v, err := vault.New(store, keys)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, token string) (string, error) {
		r, err := v.Reveal(ctx, token)
		if errors.Is(err, vault.ErrNotFound) {
			return "", errors.New("no record")
		}
		return r.Value, err
	}, nil
}

// verifyBoltOffline opens the bolt vault at path as tok would (replaying
// its write-ahead log), reveals every token, closes it, and then runs
// bbolt's consistency check on the raw file.
func verifyBoltOffline(ctx context.Context, path string, keys *vault.Keyring, ws []want, parallel int) ([]failure, error) {
	store, err := bolt.Open(path, bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("bolt.Open: %w", err)
	}
	reveal, err := storeRevealer(store, keys)
	if err != nil {
		store.Close()
		return nil, err
	}
	fails := verify(ctx, ws, parallel, reveal)
	if err := store.Close(); err != nil {
		return fails, fmt.Errorf("close the vault: %w", err)
	}
	return fails, boltCheck(path)
}

// boltCheck runs bbolt's tx.Check on the file at path, read-only. The
// file must not be open elsewhere, and its WAL must have been replayed.
func boltCheck(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("bbolt open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var errs []error
		for err := range tx.Check() { // drained to the end: Check's goroutine holds the tx
			if len(errs) < 10 {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("bbolt check: %w", errors.Join(errs...))
		}
		return nil
	})
}

// verifyPostgresOffline reveals every token straight from the PostgreSQL
// store at url.
func verifyPostgresOffline(ctx context.Context, url string, keys *vault.Keyring, ws []want, parallel int) ([]failure, error) {
	store, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		return nil, fmt.Errorf("postgres.Open: %w", err)
	}
	defer store.Close()
	reveal, err := storeRevealer(store, keys)
	if err != nil {
		return nil, err
	}
	return verify(ctx, ws, parallel, reveal), nil
}
