package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/storetest"
)

// forwarder is a loopback TCP proxy to the test server that a test can cut
// and restore, to simulate PostgreSQL going away without stopping the
// server other tests share.
type forwarder struct {
	t      *testing.T
	addr   string // host:port it listens on, kept across restarts
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	mute  bool // accept but never forward: a server that stopped answering
}

func newForwarder(t *testing.T, target string) *forwarder {
	f := &forwarder{t: t, addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	f.start()
	t.Cleanup(f.stop)
	return f
}

// start listens (again) on f.addr and forwards every connection.
func (f *forwarder) start() {
	f.t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		f.t.Fatalf("forwarder: listen: %v", err)
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr().String()
	f.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
}

func (f *forwarder) serve(c net.Conn) {
	f.mu.Lock()
	mute := f.mute
	f.conns[c] = true
	f.mu.Unlock()
	if mute {
		return // held open, never answered, closed by stop
	}
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		c.Close()
		return
	}
	f.mu.Lock()
	f.conns[up] = true
	f.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

// stop closes the listener and every connection: clients see resets and
// refused connections, as when the server goes down.
func (f *forwarder) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		c.Close()
	}
	clear(f.conns)
}

// viaForwarder returns rawURL with its host replaced by f's address.
func viaForwarder(t *testing.T, rawURL string, f *forwarder) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Skipf("outage tests need %s in URL form (postgres://host:port/db): %v", urlEnv, err)
	}
	return (&url.URL{Scheme: u.Scheme, User: u.User, Host: f.addr, Path: u.Path, RawQuery: u.RawQuery}).String()
}

// TestOutage cuts the connection to PostgreSQL under a live store: every
// call must fail with vault.ErrUnavailable (so the proxy answers 503), and
// once the server is reachable again the same store must work, with no
// reopen.
func TestOutage(t *testing.T) {
	raw := testURL(t)
	u, _ := url.Parse(raw)
	f := newForwarder(t, u.Host)
	schema := newSchema(t, raw)
	s := openStore(t, viaForwarder(t, raw, f), Options{Schema: schema, Timeout: 5 * time.Second})
	v, err := vault.New(s, keyring(t))
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	ctx := context.Background()
	before, err := v.Tokenize(ctx, []vault.Request{{Value: testPAN(1, 1)}})
	if err != nil {
		t.Fatalf("Tokenize before the outage = %v", err)
	}

	f.stop()
	keys := keyring(t)
	calls := map[string]func() error{
		"Ping": func() error { return s.Ping(ctx) },
		"Insert": func() error {
			_, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keys, false)})
			return err
		},
		"Get":        func() error { _, err := s.Get(ctx, before[0]); return err },
		"PutSession": func() error { return s.PutSession(ctx, vault.Session{Key: []byte("k"), ID: "s", Client: "c"}) },
		"UpdateLockout": func() error {
			_, err := s.UpdateLockout(ctx, "c", func(l vault.Lockout) vault.Lockout { return l })
			return err
		},
		"Tokenize": func() error {
			_, err := v.Tokenize(ctx, []vault.Request{{Value: testPAN(1, 2)}})
			return err
		},
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		t.Logf("%s: %v", name, err)
		if !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("%s while PostgreSQL is unreachable = %v, want %v", name, err, vault.ErrUnavailable)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %v to fail with the server refusing connections, want it fast", name, d)
		}
	}

	f.start()
	// The first call after the server is back must already succeed: the
	// pool dropped its dead connections when the outage was noticed.
	after, err := v.Tokenize(ctx, []vault.Request{{Value: testPAN(1, 1)}, {Value: testPAN(1, 2)}})
	if err != nil {
		t.Fatalf("Tokenize after the outage = %v, want nil", err)
	}
	if after[0] != before[0] {
		t.Errorf("Tokenize after the outage = %q, want the token from before, %q", after[0], before[0])
	}
	for name, call := range calls {
		if err := call(); err != nil {
			t.Errorf("%s after the outage = %v, want nil", name, err)
		}
	}
}

// TestOutageSilent has the server stop answering without closing anything
// (a network partition): calls must give up after Options.Timeout with
// vault.ErrUnavailable rather than hang.
func TestOutageSilent(t *testing.T) {
	raw := testURL(t)
	u, _ := url.Parse(raw)
	f := newForwarder(t, u.Host)
	schema := newSchema(t, raw)
	const timeout = time.Second
	s := openStore(t, viaForwarder(t, raw, f), Options{Schema: schema, Timeout: timeout})
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	f.stop()
	f.mu.Lock()
	f.mute = true
	f.mu.Unlock()
	f.start()
	s.pool.Reset() // pooled connections would fail fast; make it dial into the silence
	start := time.Now()
	_, err := s.Insert(ctx, []vault.Record{storetest.NewRecord(keyring(t), false)})
	if !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Insert to a silent server = %v, want %v", err, vault.ErrUnavailable)
	}
	if d := time.Since(start); d > 5*timeout {
		t.Errorf("Insert to a silent server took %v, want about the %v timeout", d, timeout)
	}
}
