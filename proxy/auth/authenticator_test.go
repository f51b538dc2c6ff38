package auth

import (
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func newTestAuthenticator(t *testing.T, hashes ...string) *Authenticator {
	t.Helper()
	var clients []Client
	for i, h := range hashes {
		clients = append(clients, Client{Name: string(rune('a' + i)), SecretHash: h})
	}
	a, err := New(Config{Clients: clients, Now: time.Now, Idle: time.Minute, Max: time.Hour,
		LockoutThreshold: 3, LockoutClientThreshold: 10, LockoutDuration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestUnknownClientCost: an unknown client name is compared against a hash
// of the configured clients' cost, so it takes as long as a wrong secret.
func TestUnknownClientCost(t *testing.T) {
	low, _ := bcrypt.GenerateFromPassword([]byte("s"), bcrypt.MinCost)
	a := newTestAuthenticator(t, string(low), string(low))
	c, err := bcrypt.Cost(a.dummy)
	if err != nil || c != bcrypt.MinCost {
		t.Errorf("dummy hash cost = %d, %v; want the clients' cost %d", c, err, bcrypt.MinCost)
	}
	high, _ := bcrypt.GenerateFromPassword([]byte("s"), 11)
	a = newTestAuthenticator(t, string(low), string(high))
	if c, _ := bcrypt.Cost(a.dummy); c != 11 {
		t.Errorf("dummy hash cost = %d, want the highest client cost 11", c)
	}
	if bcrypt.CompareHashAndPassword(a.dummy, []byte("")) == nil {
		t.Error("the dummy hash matches the empty secret")
	}
	if c, _ := bcrypt.Cost(newTestAuthenticator(t).dummy); c != bcrypt.DefaultCost+2 {
		t.Errorf("dummy hash cost with no clients = %d, want what tok secret hash uses, %d", c, bcrypt.DefaultCost+2)
	}
}
