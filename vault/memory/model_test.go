package memory

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// model is the store's specification in a few maps: what each call should
// return, with expiry judged against the clock and the cap against the
// records not expired.
type model struct {
	recs map[string]vault.Record // token → record as stored (ms, UTC, copies)
	fps  map[string]string       // fingerprint → token
	max  int
}

// live returns token's record unless it is absent or expired at now.
func (m *model) live(token string, now time.Time) (vault.Record, bool) {
	r, ok := m.recs[token]
	return r, ok && !r.Expired(now)
}

// insert applies recs as Store.Insert should and returns its outcomes, or
// false if the cap refuses them. Expired records stay in the model until
// replaced, as they may stay in the store until reclaimed.
func (m *model) insert(recs []vault.Record, now time.Time) ([]vault.Outcome, bool) {
	outs := make([]vault.Outcome, len(recs))
	var stored []string
	for i, rec := range recs {
		if tok, ok := m.fps[string(rec.Fingerprint)]; ok && len(rec.Fingerprint) > 0 {
			if r, live := m.live(tok, now); live {
				outs[i] = vault.Outcome{Status: vault.Existing, Record: r}
				continue
			}
			m.remove(tok)
		}
		if _, live := m.live(rec.Token, now); live {
			outs[i] = vault.Outcome{Status: vault.Collision}
			continue
		}
		m.remove(rec.Token)
		r, _ := vault.UnmarshalRecord(rec.Token, vault.MarshalRecord(rec))
		m.recs[rec.Token] = r
		if len(r.Fingerprint) > 0 {
			m.fps[string(r.Fingerprint)] = r.Token
		}
		stored = append(stored, rec.Token)
		outs[i] = vault.Outcome{Status: vault.Stored, Record: r}
	}
	live := 0
	for _, r := range m.recs {
		if !r.Expired(now) {
			live++
		}
	}
	if m.max > 0 && live > m.max {
		for _, tok := range stored {
			m.remove(tok)
		}
		return nil, false
	}
	return outs, true
}

func (m *model) remove(token string) {
	if r, ok := m.recs[token]; ok && m.fps[string(r.Fingerprint)] == token {
		delete(m.fps, string(r.Fingerprint))
	}
	delete(m.recs, token)
}

// TestModel drives stores through random calls and checks every answer
// against the model, and the store's consistency after every call. Large
// ciphertexts fill chunks fast, so that purges free and compact them.
func TestModel(t *testing.T) {
	for seed := range uint64(6) {
		opts := []Option{WithMaxRecords(int(seed%3) * 20)} // 0: no cap
		if seed%2 == 1 {
			opts = append(opts, withHash(func(t string) uint32 { return uint32(len(t) + int(t[len(t)-1]%4)) }))
		}
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			runModel(t, rand.New(rand.NewPCG(seed, 1)), opts)
		})
	}
}

func runModel(t *testing.T, rnd *rand.Rand, opts []Option) {
	ctx := context.Background()
	s, clk := newStore(t, opts...)
	m := &model{recs: map[string]vault.Record{}, fps: map[string]string{}, max: s.Stats().MaxRecords}
	var seen []string // tokens ever offered, to draw collisions and lookups from
	pick := func() string {
		if len(seen) == 0 || rnd.IntN(10) == 0 {
			return "tok_never"
		}
		return seen[rnd.IntN(len(seen))]
	}
	newRecord := func() vault.Record {
		size := []int{31, 31, 31, 900, 5000}[rnd.IntN(5)]
		if rnd.IntN(50) == 0 {
			size = chunkSize + 100
		}
		ttl := []time.Duration{0, time.Second, 3 * time.Second, 10 * time.Second}[rnd.IntN(4)]
		r := newRec(clk, size, ttl)
		switch rnd.IntN(8) {
		case 0:
			r.Token = pick() // likely a collision
		case 1, 2:
			r.Fingerprint = fmt.Appendf(nil, "fp%d", rnd.IntN(12))
		}
		seen = append(seen, r.Token)
		return r
	}
	for op := range 2000 {
		now := clk.Now()
		switch k := rnd.IntN(100); {
		case k < 45:
			recs := make([]vault.Record, 1+rnd.IntN(3))
			for i := range recs {
				recs[i] = newRecord()
			}
			outs, err := s.Insert(ctx, recs)
			want, ok := m.insert(recs, now)
			switch {
			case !ok && !errors.Is(err, ErrFull):
				t.Fatalf("op %d: Insert = %v, want %v", op, err, ErrFull)
			case ok && err != nil:
				t.Fatalf("op %d: Insert = %v, want nil", op, err)
			case ok && !reflect.DeepEqual(outs, want):
				t.Fatalf("op %d: Insert = %+v, want %+v", op, outs, want)
			}
		case k < 70:
			tok := pick()
			got, err := s.Get(ctx, tok)
			if want, ok := m.live(tok, now); ok != (err == nil) || ok && !reflect.DeepEqual(got, want) {
				t.Fatalf("op %d: Get(%q) = %v, want found %v", op, tok, err, ok)
			}
		case k < 75:
			fp := fmt.Appendf(nil, "fp%d", rnd.IntN(12))
			got, err := s.Find(ctx, fp)
			tok, ok := m.fps[string(fp)]
			want, live := m.live(tok, now)
			if ok && live != (err == nil) || !ok && err == nil || err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("op %d: Find(%s) = %q, %v; want %q found %v", op, fp, got.Token, err, tok, ok && live)
			}
		case k < 82:
			tok := pick()
			err := s.Delete(ctx, tok)
			r, held := m.recs[tok]
			if held && !r.Expired(now) && err != nil || !held && !errors.Is(err, vault.ErrNotFound) ||
				err != nil && !errors.Is(err, vault.ErrNotFound) {
				t.Fatalf("op %d: Delete(%q) = %v, want held %v", op, tok, err, held)
			}
			m.remove(tok) // an expired one may or may not have been reclaimed
		case k < 86:
			tok := pick()
			r, held := m.recs[tok]
			next := vault.Record{Token: tok, KeyID: r.KeyID + 1, Ciphertext: cipherFor(tok+"'", 20+rnd.IntN(60))}
			ok, err := s.Reseal(ctx, next, r.KeyID)
			if err != nil || held && !r.Expired(now) && !ok || !held && ok {
				t.Fatalf("op %d: Reseal(%q) = %v, %v; want true for a live record", op, tok, ok, err)
			}
			if ok {
				r.KeyID, r.Ciphertext = next.KeyID, next.Ciphertext
				m.recs[tok] = r
			}
		case k < 88:
			after := pick()
			page, err := s.Scan(ctx, after, 7)
			var want []vault.Record
			for _, tok := range slices.Sorted(mapsKeys(m.recs)) {
				if r, ok := m.live(tok, now); ok && tok > after && len(want) < 7 {
					want = append(want, r)
				}
			}
			if err != nil || len(page) != len(want) || len(want) > 0 && !reflect.DeepEqual(page, want) {
				t.Fatalf("op %d: Scan(%q, 7) = %d records, %v; want %d", op, after, len(page), err, len(want))
			}
		case k < 93:
			s.Purge()
		default:
			clk.Add(time.Duration(rnd.IntN(2000)) * time.Millisecond)
		}
		if err := invariants(s); err != nil {
			t.Fatalf("after op %d: %v", op, err)
		}
	}
}

func mapsKeys(m map[string]vault.Record) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestConcurrent races inserts (hitting the cap), reads, deletes, purges
// and the clock; run it with -race. Every record read must be the one
// inserted under its token.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t, WithMaxRecords(300))
	stop := make(chan struct{})
	var mu sync.Mutex
	var toks []string
	some := func(r *rand.Rand) string {
		mu.Lock()
		defer mu.Unlock()
		if len(toks) == 0 {
			return "tok_none"
		}
		return toks[r.IntN(len(toks))]
	}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 2))
			for range 2000 {
				recs := make([]vault.Record, 1+r.IntN(3))
				for i := range recs {
					recs[i] = newRec(clk, []int{31, 700}[r.IntN(2)], time.Duration(1+r.IntN(3))*time.Second)
				}
				if _, err := s.Insert(ctx, recs); err != nil && !errors.Is(err, ErrFull) {
					t.Errorf("Insert = %v", err)
					return
				}
				mu.Lock()
				toks = append(toks, recs[0].Token)
				mu.Unlock()
			}
		})
	}
	for g := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 3))
			for range 5000 {
				tok := some(r)
				rec, err := s.Get(ctx, tok)
				switch {
				case errors.Is(err, vault.ErrNotFound):
				case err != nil:
					t.Errorf("Get = %v", err)
					return
				case rec.Token != tok || !reflect.DeepEqual(rec.Ciphertext, cipherFor(tok, len(rec.Ciphertext))):
					t.Errorf("Get(%q) returned another record's data", tok)
					return
				}
				if r.IntN(10) == 0 {
					if err := s.Delete(ctx, some(r)); err != nil && !errors.Is(err, vault.ErrNotFound) {
						t.Errorf("Delete = %v", err)
						return
					}
				}
			}
		})
	}
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Purge()
			clk.Add(200 * time.Millisecond)
			if err := invariants(s); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	bg.Wait()
	if n := s.Len(); n > 300 {
		t.Errorf("Len() = %d, above the cap of 300", n)
	}
}
