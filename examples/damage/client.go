package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/tokproxy/tok/examples/internal/tokbin"
)

// card is a PAN and the token tok acknowledged for it.
type card struct{ pan, token string }

// newPANs returns n distinct 16-digit PANs with a random prefix, so runs
// never share cards.
func newPANs(n int) []string {
	p, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("4%06d%09d", p.Int64(), i)
	}
	return out
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// login opens a session for client on p's auth listener and returns an
// HTTP client carrying it.
func login(ctx context.Context, p *tokbin.Proc, client, secret string) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Timeout: 30 * time.Second, Jar: jar}
	body, _ := json.Marshal(map[string]string{"bank_coordinates": client, "secret": secret})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+p.Addr("auth")+"/login", bytes.NewReader(body))
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
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login: %s", resp.Status)
	}
	return hc, nil
}

// tokenize posts pans to the logged-in client's /handle (the convergent
// one: the anonymous public /handle mints a fresh token every call, so it
// could not tell a known card from a new one) in batches of batch, from
// workers goroutines, and returns the acknowledged cards (a 200 with a
// token for every PAN of its batch).
func tokenize(ctx context.Context, p *tokbin.Proc, client, secret string, pans []string, batch, workers int) ([]card, error) {
	hc, err := login(ctx, p, client, secret)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var cards []card
	var firstErr error
	next := make(chan []string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range next {
				toks, err := handle(ctx, hc, p.Addr("auth"), b)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				for i, t := range toks {
					cards = append(cards, card{b[i], t})
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < len(pans); i += batch {
		next <- pans[i:min(i+batch, len(pans))]
	}
	close(next)
	wg.Wait()
	return cards, firstErr
}

// handle posts pans to /handle on the listener at addr and returns their
// tokens.
func handle(ctx context.Context, hc *http.Client, addr string, pans []string) ([]string, error) {
	body, _ := json.Marshal(map[string][]string{"pan_numbers": pans})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/handle", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST /handle: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		Tokens []string `json:"tokens"`
		Token  string   `json:"token"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("POST /handle: %w", err)
	}
	if len(out.Tokens) == 0 && out.Token != "" {
		out.Tokens = []string{out.Token}
	}
	if len(out.Tokens) != len(pans) {
		return nil, fmt.Errorf("POST /handle: %d tokens for %d PANs", len(out.Tokens), len(pans))
	}
	return out.Tokens, nil
}

// check is what verify found for the acknowledged cards.
type check struct {
	revealed   int // the token reveals its PAN
	lost       int // 404, or another PAN: gone without a word at request time
	unreadable int // 500 record_unreadable: the record is there and damaged, and tok says so
	otherErr   int
	sameToken  int // POST /handle of the PAN gives its token back
	newToken   int // … gives another token although the old one still reveals: a known card got a second token
	reissued   int // … gives another token for a card whose token was lost
	refused    int // … is refused (the card's record cannot be opened)
	samples    []string
}

// verify reveals every acknowledged token through /@me and tokenizes every
// PAN again through the client's convergent /handle.
func verify(ctx context.Context, p *tokbin.Proc, client, secret string, cards []card) (check, error) {
	var c check
	hc, err := login(ctx, p, client, secret)
	if err != nil {
		return c, err
	}
	var mu sync.Mutex
	note := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	parallel(cards, 8, func(cd card) {
		status, code, pan, err := reveal(ctx, hc, p.Addr("auth"), cd.token)
		gone := err == nil && (status == http.StatusNotFound || (status == http.StatusOK && pan != cd.pan))
		switch {
		case err != nil:
			note(func() { c.otherErr++; c.sample("reveal " + cd.token + ": " + err.Error()) })
		case status == http.StatusOK && pan == cd.pan:
			note(func() { c.revealed++ })
		case status == http.StatusNotFound || status == http.StatusOK:
			note(func() { c.lost++; c.sample("lost " + cd.token + ": " + strconv.Itoa(status)) })
		case code == "record_unreadable":
			note(func() { c.unreadable++ })
		default:
			note(func() { c.otherErr++; c.sample("reveal " + cd.token + ": " + strconv.Itoa(status) + " " + code) })
		}
		toks, err := handle(ctx, hc, p.Addr("auth"), []string{cd.pan})
		switch {
		case err != nil:
			note(func() { c.refused++ })
		case toks[0] == cd.token:
			note(func() { c.sameToken++ })
		case gone:
			note(func() { c.reissued++ })
		default:
			note(func() { c.newToken++; c.sample("new token for a known card: " + toks[0] + " instead of " + cd.token) })
		}
	})
	return c, nil
}

func (c *check) sample(s string) {
	if len(c.samples) < 3 {
		c.samples = append(c.samples, s)
	}
}

// reveal asks /@me for token: status, error code, PAN.
func reveal(ctx context.Context, hc *http.Client, auth, token string) (int, string, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+auth+"/@me?token="+url.QueryEscape(token), nil)
	if err != nil {
		return 0, "", "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	var out struct {
		PAN   string `json:"pan"`
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Error, out.PAN, nil
}

// parallel runs fn on every card from n goroutines.
func parallel(cards []card, n int, fn func(card)) {
	next := make(chan card)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				fn(c)
			}
		}()
	}
	for _, c := range cards {
		next <- c
	}
	close(next)
	wg.Wait()
}

// backup downloads GET /backup from the admin listener into path.
func backup(ctx context.Context, admin, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/backup", nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /backup: %s, %v", resp.Status, err)
	}
	return writeFile(path, b)
}
