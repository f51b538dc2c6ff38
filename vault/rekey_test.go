package vault_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/bolt"
	"github.com/tokproxy/tok/vault/memory"
)

func randomPAN(t *testing.T) string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e15))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("4%015d", n)
}

// TestRekeyWhileTokenizing rotates the keyring, then rekeys page by page
// while another goroutine keeps tokenizing: afterwards every token reveals
// its value and only the new primary seals records.
func TestRekeyWhileTokenizing(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) vault.Store
	}{
		{"memory", func(t *testing.T) vault.Store {
			s := memory.New()
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"bolt", func(t *testing.T) vault.Store {
			s, err := bolt.Open(filepath.Join(t.TempDir(), "vault.db"), bolt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRekey(t, tc.open(t))
		})
	}
}

func testRekey(t *testing.T, store vault.Store) {
	ctx := context.Background()
	f := vault.NewKeyringFile()
	k1, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	vol := memory.New()
	t.Cleanup(func() { vol.Close() })
	v1, err := vault.New(store, k1, vault.WithVolatile(vol))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // token → PAN
	var mu sync.Mutex
	tokenize := func(v *vault.Vault, spec vault.Spec) {
		pan := randomPAN(t)
		toks, err := v.Tokenize(ctx, []vault.Request{{Value: pan, Spec: spec}})
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		want[toks[0]] = pan
		mu.Unlock()
	}
	for i := range 300 {
		tokenize(v1, vault.Spec{Unique: i%2 == 0, Volatile: i%10 == 0})
	}

	f.Rotate()
	k2, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := vault.New(store, k2, vault.WithVolatile(vol))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var during atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tokenize(v2, vault.Spec{Unique: i%2 == 0})
			during.Add(1)
		}
	})
	resealed, pages := 0, 0
	for after := ""; ; {
		next, n, err := v2.Rekey(ctx, after, 37)
		if err != nil {
			t.Fatalf("Rekey(%q) = %v", after, err)
		}
		resealed += n
		pages++
		if next == "" {
			break
		}
		after = next
	}
	close(stop)
	wg.Wait()
	if resealed != 300 {
		t.Errorf("resealed %d records, want 300", resealed)
	}
	t.Logf("%d pages, %d records tokenized during the rekey", pages, during.Load())

	for tok, pan := range want {
		r, err := v2.Reveal(ctx, tok)
		if err != nil || r.Value != pan {
			t.Fatalf("Reveal(%s) = %v; want its PAN", tok, err)
		}
		if r.KeyID != 2 {
			t.Errorf("token %s is under version %d, want 2", tok, r.KeyID)
		}
	}
	usage, err := v2.KeyUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, wantUsage := usage, map[uint32]int{2: len(want)}; !maps.Equal(got, wantUsage) {
		t.Errorf("KeyUsage = %v, want %v", got, wantUsage)
	}
	// A second rekey has nothing to do.
	if next, n, err := v2.Rekey(ctx, "", 1000); err != nil || n != 0 {
		t.Errorf("second Rekey = %q, %d, %v; want nothing resealed", next, n, err)
	}
}

// TestRekeyUnknownKey: a record under a version the keyring lacks stops
// the rekey with ErrUnknownKey, and the cursor does not move past it.
func TestRekeyUnknownKey(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	f := vault.NewKeyringFile()
	k1, _ := vault.NewKeyring(f)
	v1, _ := vault.New(store, k1)
	if _, err := v1.Tokenize(ctx, []vault.Request{{Value: randomPAN(t)}}); err != nil {
		t.Fatal(err)
	}
	f.Rotate()
	delete(f.DataKeys, 1)
	k2, err := vault.NewKeyring(f)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := vault.New(store, k2)
	next, _, err := v2.Rekey(ctx, "", 10)
	if err == nil || !errors.Is(err, vault.ErrUnknownKey) || next != "" {
		t.Errorf("Rekey = %q, %v; want \"\" and ErrUnknownKey", next, err)
	}
}

func TestSealWarning(t *testing.T) {
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	k.SetSealWarning(4, func(v uint32, n uint64) { got = append(got, n) })
	for range 9 {
		k.Seal("4111110000001111", "x")
	}
	if fmt.Sprint(got) != "[4 8]" {
		t.Errorf("milestones = %v, want [4 8]", got)
	}
	k2, _ := vault.NewKeyring(vault.NewKeyringFile())
	k2.CarrySealed(k)
	if k2.Sealed(1) != 9 {
		t.Errorf("carried Sealed(1) = %d, want 9", k2.Sealed(1))
	}
}
