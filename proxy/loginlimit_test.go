package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// loginFrom posts a login from the source address src straight to the
// auth handler and returns the recorded answer.
func (e *testEnv) loginFrom(src, client, secret string) *httptest.ResponseRecorder {
	e.t.Helper()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(`{"bank_coordinates":"`+client+`","secret":"`+secret+`"}`))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr = src + ":40000"
	rec := httptest.NewRecorder()
	e.srv.AuthHandler().ServeHTTP(rec, req)
	return rec
}

// holdingStore holds every lockout update of unknown names until release
// is closed: logins of unknown names stay in progress, holding their
// bcrypt slots, as a flood of them does on a busy host.
type holdingStore struct {
	vault.Durable
	entered chan struct{}
	release chan struct{}
}

func (h *holdingStore) UpdateLockout(ctx context.Context, client string, fn func(vault.Lockout) vault.Lockout) (vault.Lockout, error) {
	if client == "(unknown)" { // where auth counts failures of unknown names
		h.entered <- struct{}{}
		<-h.release
	}
	return h.Durable.UpdateLockout(ctx, client, fn)
}

// TestLoginFloodFromOneSource: a flood of unknown login
// names used to take all four bcrypt slots and refuse every legitimate
// login (15 of 15). Now one source address holds at most one login in
// progress, so a legitimate client at another address logs in throughout.
func TestLoginFloodFromOneSource(t *testing.T) {
	mem := memory.New()
	t.Cleanup(func() { mem.Close() })
	h := &holdingStore{Durable: mem, entered: make(chan struct{}, 100), release: make(chan struct{})}
	e := newTestEnv(t, h)
	const attacker, client = "203.0.113.7", "198.51.100.20"
	release := sync.OnceFunc(func() { close(h.release) })
	t.Cleanup(release) // a failed test does not leave the flood blocked
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	// One flood request at a time, each until it is refused or holds a
	// slot (its lockout update is held): then the flood holds all it can.
	held := 0
	for i := range 50 {
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			codes <- e.loginFrom(attacker, "nobody"+string(rune('a'+i%26)), "guess").Code
		})
		select {
		case <-h.entered:
			held++
		case <-done:
		}
	}
	if held != 1 {
		t.Errorf("the flood holds %d logins in progress, want 1", held)
	}
	for i := range 15 {
		if rec := e.loginFrom(client, "cih", testSecrets["cih"]); rec.Code != 200 {
			t.Fatalf("legitimate login %d during the flood = %d %s, want 200", i, rec.Code, rec.Body)
		}
	}
	release()
	wg.Wait()
	close(codes)
	refused := 0
	for c := range codes {
		if c == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused < 49 {
		t.Errorf("%d of the flood's 50 logins refused with 429, want at least 49 (one at a time per address)", refused)
	}
}

// TestLoginSourceRate: one address gets lockout.source_rate attempts a
// minute whatever names it tries; the next is refused before any secret
// is checked, with Retry-After, and audited once per episode; another
// address is not affected; the budget refills with time.
func TestLoginSourceRate(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.LoginSourceRate = 5 })
	const flood, client = "203.0.113.7", "198.51.100.20"
	for i := range 5 {
		if rec := e.loginFrom(flood, "nobody", "x"); rec.Code != 401 {
			t.Fatalf("attempt %d within the rate = %d %s, want 401", i, rec.Code, rec.Body)
		}
	}
	for range 3 {
		rec := e.loginFrom(flood, "cih", testSecrets["cih"])
		if rec.Code != 429 || !strings.Contains(rec.Body.String(), "too_many_logins") || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("attempt past the rate = %d %s (Retry-After %q), want 429 too_many_logins with Retry-After",
				rec.Code, rec.Body, rec.Header().Get("Retry-After"))
		}
	}
	if n := strings.Count(e.audit.String(), `"outcome":"too_many_logins"`); n != 1 {
		t.Errorf("audit log has %d rate-limit lines, want 1 per episode", n)
	}
	if rec := e.loginFrom(client, "cih", testSecrets["cih"]); rec.Code != 200 {
		t.Errorf("login from another address = %d %s, want 200", rec.Code, rec.Body)
	}
	e.clock.Advance(time.Minute)
	if rec := e.loginFrom(flood, "cih", testSecrets["cih"]); rec.Code != 200 {
		t.Errorf("login a minute later = %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestLockoutPerSource (PCI DSS 8.3.4): anyone could
// lock a named client out for 30 minutes. Now a stranger's wrong secrets
// lock the client only at the stranger's address; the client's own ten
// failures still lock it at its own; and failures from all addresses
// together, past lockout.client_threshold, lock it everywhere.
func TestLockoutPerSource(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.LockoutClientThreshold = 25; o.LoginSourceRate = 1000 })
	const stranger, own = "203.0.113.7", "198.51.100.20"
	right := testSecrets["cih"]
	for i := range DefaultLockoutThreshold {
		if rec := e.loginFrom(stranger, "cih", "wrong"); rec.Code != 401 {
			t.Fatalf("stranger's attempt %d = %d %s, want 401", i, rec.Code, rec.Body)
		}
	}
	if rec := e.loginFrom(stranger, "cih", right); rec.Code != 429 || !strings.Contains(rec.Body.String(), `"locked"`) {
		t.Errorf("the right secret from the stranger's address = %d %s, want 429 locked", rec.Code, rec.Body)
	}
	if rec := e.loginFrom(own, "cih", right); rec.Code != 200 {
		t.Fatalf("the client at its own address after a stranger's 10 failures = %d %s, want 200", rec.Code, rec.Body)
	}

	// The client's own ten failures lock it where it logs in from.
	for i := range DefaultLockoutThreshold {
		if rec := e.loginFrom(own, "cih", "wrong"); rec.Code != 401 {
			t.Fatalf("own attempt %d = %d %s, want 401", i, rec.Code, rec.Body)
		}
	}
	if rec := e.loginFrom(own, "cih", right); rec.Code != 429 {
		t.Errorf("the right secret after the client's own 10 failures = %d %s, want 429 locked", rec.Code, rec.Body)
	}
	e.clock.Advance(DefaultLockoutDuration)
	if rec := e.loginFrom(own, "cih", right); rec.Code != 200 {
		t.Fatalf("login once the lock ran out = %d %s, want 200", rec.Code, rec.Body)
	}

	// Past client_threshold failures from all addresses, it is locked
	// everywhere (a distributed guess gets no more than that per lock).
	for i := range 25 {
		src := "192.0.2." + string(rune('1'+i%3)) // three addresses, under 10 each
		if rec := e.loginFrom(src, "cih", "wrong"); rec.Code != 401 && i < 24 {
			t.Fatalf("distributed attempt %d = %d %s, want 401", i, rec.Code, rec.Body)
		}
	}
	if rec := e.loginFrom(own, "cih", right); rec.Code != 429 || !strings.Contains(rec.Body.String(), "this client is locked") {
		t.Errorf("login after %d failures from all addresses = %d %s, want 429 locked", 25, rec.Code, rec.Body)
	}
	// The viewer client is another client: not locked.
	if rec := e.loginFrom(own, "viewer", testSecrets["viewer"]); rec.Code != 200 {
		t.Errorf("another client's login = %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestLoginSourceIPv6: the addresses of one IPv6 /64 share one budget
// (sourceKey, which TestSourceKey covers, keys them).
func TestLoginSourceIPv6(t *testing.T) {
	e := newTestEnv(t, nil, func(o *Options) { o.LoginSourceRate = 2 })
	for i, a := range []string{"[2001:db8::1]", "[2001:db8::2]"} {
		if rec := e.loginFrom(a, "nobody", "x"); rec.Code != 401 {
			t.Fatalf("attempt %d = %d %s, want 401", i, rec.Code, rec.Body)
		}
	}
	if rec := e.loginFrom("[2001:db8::3]", "nobody", "x"); rec.Code != 429 {
		t.Errorf("a third attempt from the same /64 = %d %s, want 429", rec.Code, rec.Body)
	}
}
