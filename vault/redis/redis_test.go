package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
	"github.com/tokproxy/tok/vault/storetest"
)

// testURL returns TOK_TEST_REDIS_URL or skips the test.
func testURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TOK_TEST_REDIS_URL")
	if u == "" {
		t.Skip("TOK_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0): skipping the tests against a real Redis")
	}
	return u
}

// uniquePrefix returns a key prefix no other test uses.
func uniquePrefix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "toktest:{" + hex.EncodeToString(b) + "}:"
}

// open opens a store on the test server under a fresh prefix (or the one
// in opts) and removes every key under it when the test ends.
func open(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.URL == "" {
		opts.URL = testURL(t)
	}
	if opts.Prefix == "" {
		opts.Prefix = uniquePrefix()
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		cleanPrefix(t, opts.URL, opts.Prefix)
	})
	return s
}

// cleanPrefix deletes every key under prefix.
func cleanPrefix(t testing.TB, url, prefix string) {
	o, err := goredis.ParseURL(url)
	if err != nil {
		return
	}
	c := goredis.NewClient(o)
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		c.Del(ctx, iter.Val())
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) vault.Store { return open(t, Options{}) })
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) vault.Store { return open(b, Options{}) })
}

// clock is a settable clock for tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newKeys(t *testing.T) *vault.Keyring {
	t.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// record returns a sealed record of a CVC under token, expiring at exp.
func record(keys *vault.Keyring, token, value string, created, exp time.Time) vault.Record {
	r := vault.Record{Token: token, Created: created, Expires: exp, Format: vault.FormatDigits}
	keys.SealRecord(&r, value)
	return r
}

// TestExpiryByTokClock checks that tok's clock hides an expired record
// before Redis's TTL removes it, that it then frees its token, and that the
// janitor's purge takes it out of the count the cap is judged on.
func TestExpiryByTokClock(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	s := open(t, Options{Now: clk.Now, JanitorInterval: -1})
	keys := newKeys(t)
	rec := record(keys, "123", "737", clk.Now(), clk.Now().Add(time.Hour))
	if outs, err := s.Insert(ctx, []vault.Record{rec}); err != nil || outs[0].Status != vault.Stored {
		t.Fatalf("Insert = %v, %v; want Stored", outs, err)
	}
	if _, err := s.Get(ctx, "123"); err != nil {
		t.Fatalf("Get before expiry = %v, want nil", err)
	}
	clk.Add(time.Hour)
	if _, err := s.Get(ctx, "123"); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("Get at expiry = %v, want %v", err, vault.ErrNotFound)
	}
	if recs, err := s.Scan(ctx, "", 10); err != nil || len(recs) != 0 {
		t.Errorf("Scan at expiry = %d records, %v; want 0", len(recs), err)
	}
	again := record(keys, "123", "111", clk.Now(), clk.Now().Add(time.Hour))
	if outs, err := s.Insert(ctx, []vault.Record{again}); err != nil || outs[0].Status != vault.Stored {
		t.Fatalf("Insert over an expired token = %v, %v; want Stored", outs, err)
	}
	clk.Add(2 * time.Hour)
	if n, err := s.Purge(ctx); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 0 {
		t.Errorf("Stats after purge = %+v, %v; want 0 records", st, err)
	}
}

// TestRedisTTL checks that Redis itself drops a record at its expiry: a
// CVC does not outlive its ttl on the server even if no tok is left.
func TestRedisTTL(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{JanitorInterval: -1})
	keys := newKeys(t)
	now := time.Now()
	rec := record(keys, "456", "737", now, now.Add(300*time.Millisecond))
	if _, err := s.Insert(ctx, []vault.Record{rec}); err != nil {
		t.Fatal(err)
	}
	pttl, err := s.c.PTTL(ctx, s.key("r", "456")).Result()
	if err != nil || pttl <= 0 || pttl > 300*time.Millisecond {
		t.Fatalf("PTTL of the record = %v, %v; want in (0, 300ms]", pttl, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n, err := s.c.Exists(ctx, s.key("r", "456")).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record is still on the server 5s after its expiry")
		}
	}
}

// TestCapShared checks that the cap is counted on the server: two stores
// (two replicas) on one prefix share it, a full store refuses a whole call
// with ErrFull (mapped like the memory store's), and expired records make
// room.
func TestCapShared(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	prefix := uniquePrefix()
	a := open(t, Options{Prefix: prefix, MaxRecords: 3, Now: clk.Now, JanitorInterval: -1})
	b := open(t, Options{Prefix: prefix, MaxRecords: 3, Now: clk.Now, JanitorInterval: -1})
	keys := newKeys(t)
	now := clk.Now()
	ins := func(s *Store, toks ...string) error {
		var recs []vault.Record
		for _, tok := range toks {
			recs = append(recs, record(keys, tok, "123", now, now.Add(time.Minute)))
		}
		_, err := s.Insert(ctx, recs)
		return err
	}
	if err := ins(a, "100", "101"); err != nil {
		t.Fatal(err)
	}
	err := ins(b, "102", "103")
	if !errors.Is(err, ErrFull) || !errors.Is(err, memory.ErrFull) || !errors.Is(err, vault.ErrUnavailable) {
		t.Fatalf("Insert past the shared cap = %v, want ErrFull wrapping memory.ErrFull and ErrUnavailable", err)
	}
	for _, tok := range []string{"102", "103"} {
		if _, err := a.Get(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Get(%s) after a refused insert = %v, want ErrNotFound (all or nothing)", tok, err)
		}
	}
	if err := ins(b, "102"); err != nil {
		t.Fatalf("Insert up to the cap = %v", err)
	}
	clk.Add(time.Minute)
	now = clk.Now()
	if err := ins(b, "200", "201", "202"); err != nil {
		t.Fatalf("Insert once the others expired = %v, want nil", err)
	}
	if st, err := a.Stats(ctx); err != nil || st.Records != 3 || st.MaxRecords != 3 {
		t.Errorf("Stats = %+v, %v; want 3 of 3", st, err)
	}
}

// TestBoundAcrossReplicas drives two vaults (two replicas) on one Redis: a
// CVC bound to its card on one reveals on the other, only with its card,
// and the oldest-of-sampled eviction keeps a full card namespace serving.
func TestBoundAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	prefix := uniquePrefix()
	keys := newKeys(t)
	vaults := make([]*vault.Vault, 2)
	for i := range vaults {
		durable := memory.New()
		t.Cleanup(func() { durable.Close() })
		v, err := vault.New(durable, keys, vault.WithVolatile(open(t, Options{Prefix: prefix})))
		if err != nil {
			t.Fatal(err)
		}
		vaults[i] = v
	}
	cvc := vault.Spec{Format: vault.FormatDigits, Volatile: true, TTL: time.Minute, Bound: true}
	pan := vault.Spec{Format: vault.FormatPAN}
	toks, err := vaults[0].Tokenize(ctx, []vault.Request{{Value: "4111111111111111", Spec: pan}, {Value: "737", Spec: cvc, BindTo: 0}})
	if err != nil {
		t.Fatalf("Tokenize on replica 0 = %v", err)
	}
	got, err := vaults[1].RevealBound(ctx, toks[0], toks[1])
	if err != nil || got.Value != "737" {
		t.Fatalf("RevealBound on replica 1 = %q, %v; want 737", got.Value, err)
	}
	if _, err := vaults[1].RevealBound(ctx, "4111110000001111", toks[1]); !errors.Is(err, vault.ErrNotFound) {
		t.Errorf("RevealBound with another card = %v, want ErrNotFound", err)
	}
	// Fill the card's namespace (900 three-digit tokens) from both
	// replicas: the eviction of the oldest sampled value keeps serving.
	for i := range 1000 {
		req := []vault.Request{{Value: "4111111111111111", Spec: pan}, {Value: "123", Spec: cvc, BindTo: 0}}
		if _, err := vaults[i%2].Tokenize(ctx, req); err != nil {
			t.Fatalf("checkout %d on a full card = %v, want nil (the oldest value gives way)", i, err)
		}
	}
}

// TestInsertsShareScriptRuns: concurrent inserts share script runs (fewer
// runs than inserts), and each still gets its own outcome: every
// record stored, readable, and a second insert of a token collides.
func TestInsertsShareScriptRuns(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{MaxRecords: 100_000, JanitorInterval: -1})
	keys := newKeys(t)
	now := time.Now()
	const workers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				tok := fmt.Sprintf("9%03d%04d", w, i)
				outs, err := s.Insert(ctx, []vault.Record{record(keys, tok, "123", now, now.Add(time.Minute))})
				if err != nil || len(outs) != 1 || outs[0].Status != vault.Stored || outs[0].Record.Token != tok {
					errs <- fmt.Errorf("Insert(%s) = %+v, %v; want Stored", tok, outs, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p := s.scriptRuns.Load(); p >= workers*each {
		t.Errorf("%d inserts took %d script runs: want fewer (shared)", workers*each, p)
	}
	if _, err := s.Get(ctx, "90630019"); err != nil {
		t.Errorf("Get(last record) = %v", err)
	}
	outs, err := s.Insert(ctx, []vault.Record{record(keys, "90000000", "456", now, now.Add(time.Minute))})
	if err != nil || outs[0].Status != vault.Collision {
		t.Errorf("Insert(taken token) = %+v, %v; want Collision", outs, err)
	}
}

// TestInsertBatchJudgesEachCall: the inserts a committer sends as one
// script run are judged one by one, in order, each as if alone: one that
// would pass the cap writes nothing and fails alone, the ones around it are
// stored, and a later call in the batch collides with an earlier one's
// token.
func TestInsertBatchJudgesEachCall(t *testing.T) {
	ctx := context.Background()
	s := open(t, Options{MaxRecords: 3, JanitorInterval: -1})
	keys := newKeys(t)
	now := time.Now()
	recs := func(toks ...string) []vault.Record {
		var out []vault.Record
		for _, tok := range toks {
			out = append(out, record(keys, tok, "123", now, now.Add(time.Minute)))
		}
		return out
	}
	if _, err := s.Insert(ctx, recs("100")); err != nil {
		t.Fatal(err)
	}
	calls := [][]vault.Record{recs("101"), recs("102", "103"), recs("104"), recs("101")}
	batch := make([]*insertCall, len(calls))
	for i, rs := range calls {
		batch[i] = &insertCall{ctx: ctx, args: insertArgs(rs), done: make(chan struct{})}
	}
	before := s.scriptRuns.Load()
	s.runInserts(batch)
	if n := s.scriptRuns.Load() - before; n != 1 {
		t.Errorf("4 inserts took %d script runs, want 1", n)
	}
	outs := make([][]vault.Outcome, len(calls))
	errs := make([]error, len(calls))
	for i, c := range batch {
		<-c.done
		if errs[i] = c.err; c.err == nil {
			outs[i], errs[i] = outcomes(calls[i], c.res)
		}
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil || outs[i][0].Status != vault.Stored {
			t.Errorf("insert %d (fits the cap) = %+v, %v; want Stored", i, outs[i], errs[i])
		}
	}
	if !errors.Is(errs[1], ErrFull) {
		t.Errorf("insert of 2 records with 2 of 3 held = %v, want ErrFull", errs[1])
	}
	for _, tok := range []string{"102", "103"} {
		if _, err := s.Get(ctx, tok); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Get(%s) of the refused insert = %v, want ErrNotFound (all or nothing)", tok, err)
		}
	}
	if errs[3] != nil || outs[3][0].Status != vault.Collision {
		t.Errorf("insert of a token an earlier insert of the batch took = %+v, %v; want Collision", outs[3], errs[3])
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 3 {
		t.Errorf("Stats = %+v, %v; want 3 records", st, err)
	}
}

// TestInsertAfterScriptFlush: a server that lost its script cache (a
// restart, SCRIPT FLUSH) still takes inserts: the committer loads the
// script again.
func TestInsertAfterScriptFlush(t *testing.T) {
	srv := startServer(t, "--save", "", "--appendonly", "no")
	ctx := context.Background()
	s := open(t, Options{URL: srv.url(), JanitorInterval: -1})
	keys := newKeys(t)
	now := time.Now()
	for i, tok := range []string{"811", "812"} {
		if i == 1 {
			if err := s.c.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		outs, err := s.Insert(ctx, []vault.Record{record(keys, tok, "123", now, now.Add(time.Minute))})
		if err != nil || outs[0].Status != vault.Stored {
			t.Fatalf("Insert(%s) = %+v, %v; want Stored", tok, outs, err)
		}
	}
}

// TestPurgeMany: a purge past one batch of the bulk reclaim removes every
// expired record from the indexes, with its value and fingerprint entry,
// and keeps the live ones and those that never expire.
func TestPurgeMany(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Now()}
	s := open(t, Options{Now: clk.Now, JanitorInterval: -1})
	keys := newKeys(t)
	now := clk.Now()
	var recs []vault.Record
	for i := range 700 {
		r := record(keys, fmt.Sprintf("5%05d", i), "123", now, now.Add(time.Minute))
		if i%3 == 0 {
			r.Fingerprint = []byte(fmt.Sprintf("fp%d", i))
		}
		recs = append(recs, r)
	}
	live := record(keys, "600001", "456", now, now.Add(time.Hour))
	forever := record(keys, "600002", "789", now, time.Time{})
	forever.Fingerprint = []byte("fp-forever")
	if _, err := s.Insert(ctx, append(recs, live, forever)); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if n, err := s.Purge(ctx); err != nil || n != 700 {
		t.Fatalf("Purge = %d, %v; want 700", n, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Records != 2 {
		t.Errorf("Stats after purge = %+v, %v; want 2 records", st, err)
	}
	if n, err := s.c.ZCard(ctx, s.prefix+"idx").Result(); err != nil || n != 2 {
		t.Errorf("token index holds %d, %v; want 2", n, err)
	}
	for _, k := range []string{s.key("r", "500000"), s.key("r", "500699"), s.key("f", "fp0"), s.key("f", "fp699")} {
		if n, err := s.c.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("key %s after purge: exists %d, %v; want gone", k, n, err)
		}
	}
	if _, err := s.Get(ctx, "600001"); err != nil {
		t.Errorf("Get(live) = %v", err)
	}
	if r, err := s.Find(ctx, []byte("fp-forever")); err != nil || r.Token != "600002" {
		t.Errorf("Find(fp-forever) = %v, %v; want 600002", r.Token, err)
	}
}
