package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// seedPAN is the prototype README's example card number. It fails the Luhn
// check and must tokenize all the same.
const seedPAN = "555213321212161777"

// fakeClock is a settable clock for sessions, lockouts and expiry.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is a goroutine-safe bytes.Buffer for audit and log output.
type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	broken bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return 0, fmt.Errorf("no space left on device")
	}
	return s.b.Write(p)
}

// breakWrites makes every later Write fail, like a full disk under the
// audit log.
func (s *syncBuffer) breakWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken = true
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testSecrets are the plain secrets of the test clients.
var testSecrets = map[string]string{"cih": "cih-secret-1", "viewer": "viewer-secret-2"}

// testEnv is a tok Server behind real loopback HTTP servers: the one
// in-process environment of these tests. newTestEnv sets it up for the
// direct API (two login clients, a fake clock); newInboundEnv for the
// proxy (a recording upstream, the checkout routes, a volatile store).
type testEnv struct {
	t                   *testing.T
	srv                 *Server
	store               vault.Durable
	vault               *vault.Vault
	clock               *fakeClock // nil: real time
	audit, log          *syncBuffer
	public, auth, admin *httptest.Server
	up                  *recordingUpstream // the upstream app, if any
	done                chan struct{}      // one value each time the public handler returns
	client              *http.Client       // follows no redirects
}

// inboundEnv is the environment as newInboundEnv sets it up.
type inboundEnv = testEnv

// start opens a vault on e.store with keys (a fresh keyring if nil) and
// vopts, completes opts with it and e's log and audit buffers, lets mutate
// have the last word, builds the Server and serves its listeners.
func (e *testEnv) start(keys *vault.Keyring, vopts []vault.Option, opts Options, mutate ...func(*Options)) {
	t := e.t
	t.Helper()
	e.audit, e.log = &syncBuffer{}, &syncBuffer{}
	e.done = make(chan struct{}, 1024)
	var err error
	if keys == nil {
		if keys, err = vault.NewKeyring(vault.NewKeyringFile()); err != nil {
			t.Fatal(err)
		}
	}
	if e.vault, err = vault.New(e.store, keys, vopts...); err != nil {
		t.Fatal(err)
	}
	opts.Vault, opts.Store, opts.Audit = e.vault, e.store, e.audit
	opts.Logger = slog.New(slog.NewJSONHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, m := range mutate {
		if m != nil {
			m(&opts)
		}
	}
	if e.srv, err = New(opts); err != nil {
		t.Fatal(err)
	}
	h := e.srv.PublicHandler()
	e.public = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case e.done <- struct{}{}:
			default:
			}
		}()
		h.ServeHTTP(w, r)
	}))
	e.auth = httptest.NewServer(e.srv.AuthHandler())
	e.admin = httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(func() { e.public.Close(); e.auth.Close(); e.admin.Close() })
	e.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// newTestEnv builds a Server on store (a fresh memory store if nil) with
// two clients: cih (may reveal) and viewer (masked only). Bcrypt runs at its
// minimum cost to keep tests fast; production hashes come from `tok secret hash`.
func newTestEnv(t *testing.T, store vault.Durable, mutate ...func(*Options)) *testEnv {
	t.Helper()
	return newTestEnvKeys(t, store, nil, mutate...)
}

// newTestEnvKeys is newTestEnv with a given keyring (nil: a fresh one), for
// tests that reopen a vault.
func newTestEnvKeys(t *testing.T, store vault.Durable, keys *vault.Keyring, mutate ...func(*Options)) *testEnv {
	t.Helper()
	clock := &fakeClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	if store == nil {
		m := memory.New(memory.WithClock(clock.Now))
		t.Cleanup(func() { m.Close() })
		store = m
	}
	var clients []Client
	for _, name := range []string{"cih", "viewer"} {
		h, err := bcrypt.GenerateFromPassword([]byte(testSecrets[name]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, Client{Name: name, SecretHash: string(h), Reveal: name == "cih"})
	}
	e := &testEnv{t: t, store: store, clock: clock}
	e.start(keys, []vault.Option{vault.WithClock(clock.Now)}, Options{Clients: clients, Now: clock.Now}, mutate...)
	return e
}

// response is a finished HTTP exchange with its body read.
type response struct {
	*http.Response
	body []byte
}

// json decodes the body into a map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends a request the way curl would and reads the whole answer.
func do(t *testing.T, c *http.Client, method, url, contentType, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp, b}
}

// handle posts one PAN to /handle and returns the token.
func (e *testEnv) handle(pan string) string {
	e.t.Helper()
	r := do(e.t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number": "`+pan+`"}`)
	if r.StatusCode != 200 {
		e.t.Fatalf("POST /handle = %d %s, want 200", r.StatusCode, r.body)
	}
	tok, _ := r.json(e.t)["token"].(string)
	return tok
}

// clientHandle posts one PAN to the auth listener's convergent /handle
// as the client c is logged in as, and returns the token.
func (e *testEnv) clientHandle(c *http.Client, pan string) string {
	e.t.Helper()
	r := do(e.t, c, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number": "`+pan+`"}`)
	if r.StatusCode != 200 {
		e.t.Fatalf("POST /handle (auth listener) = %d %s, want 200", r.StatusCode, r.body)
	}
	tok, _ := r.json(e.t)["token"].(string)
	return tok
}

// login logs client in and returns an HTTP client carrying its cookie.
func (e *testEnv) login(client string) *http.Client {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	r := do(e.t, c, "POST", e.auth.URL+"/login", "application/json",
		`{"bank_coordinates": "`+client+`", "secret": "`+testSecrets[client]+`"}`)
	if r.StatusCode != 200 {
		e.t.Fatalf("POST /login as %s = %d %s, want 200", client, r.StatusCode, r.body)
	}
	return c
}

// wantError checks status and the stable error code of a JSON error.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.StatusCode != status {
		t.Errorf("status = %d (body %s), want %d", r.StatusCode, r.body, status)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	m := map[string]any{}
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if m["error"] != code {
		t.Errorf("error code = %v, want %q (body %s)", m["error"], code, r.body)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("error body %s has no message", r.body)
	}
}

// failingStore is a Store whose writes and reads fail as an unavailable
// store's do: a fault injector, not a stand-in for a real store.
type failingStore struct {
	vault.Durable
	fail bool
}

func (f *failingStore) err() error {
	if f.fail {
		return vault.ErrUnavailable
	}
	return nil
}

func (f *failingStore) Insert(ctx context.Context, r []vault.Record) ([]vault.Outcome, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Durable.Insert(ctx, r)
}

func (f *failingStore) Find(ctx context.Context, fp []byte) (vault.Record, error) {
	if err := f.err(); err != nil {
		return vault.Record{}, err
	}
	return f.Durable.Find(ctx, fp)
}

func (f *failingStore) Ping(ctx context.Context) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Durable.Ping(ctx)
}

// revealShort reveals the short token tok bound to one of cards (the
// first that has it), or else, unbound, from its own record, which
// Vault.Reveal refuses (a short token reveals only with its card) but tests
// must read.
func revealShort(t *testing.T, v *vault.Vault, tok string, cards []string) (vault.Revealed, error) {
	t.Helper()
	for _, c := range cards {
		if !vault.ValidToken(c) || vault.IsShortToken(c) {
			continue
		}
		if rv, err := v.RevealBound(t.Context(), c, tok); err == nil {
			return rv, nil
		}
	}
	rec, err := v.Lookup(t.Context(), tok)
	if err != nil {
		return vault.Revealed{}, err
	}
	val, err := v.Keyring().OpenRecord(rec)
	return vault.Revealed{Record: rec, Value: val}, err
}
