package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tokproxy/tok/proxy/internal/httpx"
	"github.com/tokproxy/tok/vault/memory"
)

// TestLockoutRule: failures lock a client from the address they came
// from after LockoutThreshold, not from others; LockoutClientThreshold
// failures from all addresses lock it everywhere; the lock runs out after
// LockoutDuration; a success clears the counts.
func TestLockoutRule(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	a, err := New(Config{Store: store, Clients: []Client{{Name: "shop", SecretHash: string(hash)}},
		Now: func() time.Time { return now }, Idle: time.Minute, Max: time.Hour,
		LockoutThreshold: 3, LockoutClientThreshold: 5, LockoutDuration: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shop, _ := a.Client("shop")
	login := func(secret, source string) string {
		t.Helper()
		_, outcome, err := a.Login(ctx, shop, true, secret, source)
		var ae *httpx.Error
		if err != nil && !errors.As(err, &ae) {
			t.Fatalf("Login = %v, want an *httpx.Error", err)
		}
		return outcome
	}
	for range 3 {
		if o := login("wrong", "192.0.2.1"); o != "invalid_credentials" {
			t.Fatalf("wrong secret: outcome %q", o)
		}
	}
	if o := login("right", "192.0.2.1"); o != "locked" {
		t.Errorf("right secret after 3 failures from the same address: %q, want locked", o)
	}
	if o := login("right", "198.51.100.7"); o != "ok" {
		t.Errorf("right secret from another address: %q, want ok", o)
	}
	// The success cleared the client's count, not the first address's lock.
	if o := login("right", "192.0.2.1"); o != "locked" {
		t.Errorf("first address after a success elsewhere: %q, want still locked", o)
	}
	for i := range 5 {
		login("wrong", "203.0.113."+string(rune('1'+i)))
	}
	if o := login("right", "198.51.100.7"); o != "locked" {
		t.Errorf("right secret after 5 failures from all addresses: %q, want locked everywhere", o)
	}
	now = now.Add(11 * time.Minute)
	if o := login("right", "192.0.2.1"); o != "ok" {
		t.Errorf("after the lock ran out: %q, want ok", o)
	}
	// Unknown names are never locked, however many failures they have.
	for range 10 {
		if _, o, _ := a.Login(ctx, Client{}, false, "x", "192.0.2.9"); o != "invalid_credentials" {
			t.Fatalf("unknown name: outcome %q, want invalid_credentials", o)
		}
	}
}
