// Package storetest is the conformance suite every [vault.Store] runs: bolt,
// postgres and memory all pass the same [Run], so the vault can treat them
// alike; [RunSessions] is the suite of [vault.SessionStore] (sessions and
// lockouts). It also holds [Bench], the store-neutral benchmarks.
//
// A store's test file calls it like this:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) vault.Store {
//			s, err := Open(filepath.Join(t.TempDir(), "vault.db"), Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/tokproxy/tok/vault"
)

// panDomain is the fingerprint domain of default pan tokens (first 6, last 4
// kept), so records made here converge with what a [vault.Vault] would write.
const panDomain = "pan:6:4"

// Run runs the conformance suite against the store open returns. open must
// return a fresh, empty store and register its own cleanup with t.Cleanup;
// the cleanup must tolerate a store the test already closed (Close then
// returns [vault.ErrClosed] or nil). Subtests run sequentially, each on its
// own store.
func Run(t *testing.T, open func(t *testing.T) vault.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s vault.Store)
	}{
		{"Insert/Stored", testInsertStored},
		{"Insert/Empty", testInsertEmpty},
		{"Insert/Existing", testInsertExisting},
		{"Insert/ExistingInOneCall", testInsertExistingInOneCall},
		{"Insert/Collision", testInsertCollision},
		{"Insert/CollisionInOneCall", testInsertCollisionInOneCall},
		{"Insert/InvalidWritesNothing", testInsertInvalid},
		{"Insert/ConcurrentConverges", testInsertConcurrent},
		{"RoundTrip", testRoundTrip},
		{"RoundTrip/Unique", testRoundTripUnique},
		{"RoundTrip/NoAliasing", testNoAliasing},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"Scan", testScan},
		{"Reseal", testReseal},
		{"Reseal/UpgradeVersion", testResealUpgrade},
		{"Policy/RoundTrip", testPolicyRoundTrip},
		{"Policy/Reseal", testPolicyReseal},
		{"Reveals/Count", testRevealCount},
		{"Reveals/Concurrent", testRevealConcurrent},
		{"KeyChecks", testKeyChecks},
		{"Context", testContext},
		{"Ping", testPing},
		{"Close", testClose},
		{"Vault", testVault},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// SessionStore is a [vault.SessionStore] the suite can close.
type SessionStore interface {
	vault.SessionStore
	Close() error
}

// RunSessions runs the sessions and lockouts suite against the store open
// returns, under the same rules as [Run]: bolt and postgres keep sessions
// beside their records, and vault/memory keeps them for tests.
func RunSessions(t *testing.T, open func(t *testing.T) SessionStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s SessionStore)
	}{
		{"Sessions", testSessions},
		{"Sessions/Purge", testPurgeSessions},
		{"Lockout", testLockout},
		{"Lockout/Concurrent", testLockoutConcurrent},
		{"Context", testSessionsContext},
		{"Close", testSessionsClose},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// keyring returns a fresh real keyring.
func keyring(tb testing.TB) *vault.Keyring {
	tb.Helper()
	k, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		tb.Fatalf("NewKeyring: %v", err)
	}
	return k
}

// randomDigits returns n random ASCII digits.
func randomDigits(n int) string {
	b := make([]byte, n)
	for i := range b {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		b[i] = byte('0' + d.Int64())
	}
	return string(b)
}

// newPAN returns a random 16-digit test card number.
func newPAN() string { return "4" + randomDigits(15) }

// newRecord seals pan under keys the way the vault does: a pan-shaped token
// (first 6 and last 4 kept), the token as associated data, and a keyed
// fingerprint unless unique. Created is now with nanoseconds, so stores must
// show that they keep milliseconds.
func newRecord(keys *vault.Keyring, pan string, unique bool) vault.Record {
	tok := pan[:6] + randomDigits(len(pan)-10) + pan[len(pan)-4:]
	kid, ct := keys.Seal(tok, pan)
	r := vault.Record{
		Token:      tok,
		KeyID:      kid,
		Ciphertext: ct,
		Created:    time.Now(),
		Format:     vault.FormatPAN,
	}
	if !unique {
		r.Fingerprint = keys.Fingerprint(panDomain, pan)
	}
	return r
}

// stored is what a store returns for rec: times at millisecond precision in
// UTC, and no fingerprint for unique records.
func stored(rec vault.Record) vault.Record {
	rec.Created = time.UnixMilli(rec.Created.UnixMilli()).UTC()
	if !rec.Expires.IsZero() {
		rec.Expires = time.UnixMilli(rec.Expires.UnixMilli()).UTC()
	}
	if len(rec.Fingerprint) == 0 {
		rec.Fingerprint = nil
	}
	if !rec.Policy.Until.IsZero() {
		rec.Policy.Until = time.UnixMilli(rec.Policy.Until.UnixMilli()).UTC()
	}
	return rec
}

// diffRecord returns "" if got is want field by field, else what differs.
// Times must be equal and in UTC; nil and empty fingerprints differ.
func diffRecord(got, want vault.Record) string {
	switch {
	case got.Token != want.Token:
		return "Token differs"
	case got.KeyID != want.KeyID:
		return "KeyID differs"
	case !bytes.Equal(got.Ciphertext, want.Ciphertext):
		return "Ciphertext differs"
	case !bytes.Equal(got.Fingerprint, want.Fingerprint):
		return "Fingerprint differs"
	case (got.Fingerprint == nil) != (want.Fingerprint == nil):
		return "Fingerprint nil-ness differs"
	case !got.Created.Equal(want.Created):
		return "Created = " + got.Created.String() + ", want " + want.Created.String()
	case got.Created.Location() != time.UTC:
		return "Created not in UTC"
	case !got.Expires.Equal(want.Expires):
		return "Expires = " + got.Expires.String() + ", want " + want.Expires.String()
	case !got.Expires.IsZero() && got.Expires.Location() != time.UTC:
		return "Expires not in UTC"
	case got.Format != want.Format:
		return "Format differs"
	case max(got.Version, vault.RecordV1) != max(want.Version, vault.RecordV1):
		return "Version differs"
	case !bytes.Equal(vault.MarshalPolicy(got.Policy), vault.MarshalPolicy(want.Policy)):
		return "Policy differs"
	case !got.Policy.Until.IsZero() && got.Policy.Until.Location() != time.UTC:
		return "Policy.Until not in UTC"
	}
	return ""
}

// mustInsert inserts recs and checks that there is one outcome per record.
func mustInsert(t *testing.T, s vault.Store, recs ...vault.Record) []vault.Outcome {
	t.Helper()
	outs, err := s.Insert(context.Background(), recs)
	if err != nil {
		t.Fatalf("Insert(%d records) = %v, want nil", len(recs), err)
	}
	if len(outs) != len(recs) {
		t.Fatalf("Insert(%d records) returned %d outcomes", len(recs), len(outs))
	}
	return outs
}

// wantOutcome checks one outcome's status and record.
func wantOutcome(t *testing.T, i int, got vault.Outcome, status vault.Status, rec vault.Record) {
	t.Helper()
	if got.Status != status {
		t.Fatalf("outcome[%d].Status = %d, want %d", i, got.Status, status)
	}
	if status == vault.Collision {
		if got.Record.Token != "" {
			t.Errorf("outcome[%d].Record.Token = %q, want the zero Record on Collision", i, got.Record.Token)
		}
		return
	}
	if d := diffRecord(got.Record, stored(rec)); d != "" {
		t.Errorf("outcome[%d].Record: %s", i, d)
	}
}

// wantGet checks that Get(token) returns rec.
func wantGet(t *testing.T, s vault.Store, rec vault.Record) {
	t.Helper()
	got, err := s.Get(context.Background(), rec.Token)
	if err != nil {
		t.Fatalf("Get(%q) = %v, want nil", rec.Token, err)
	}
	if d := diffRecord(got, stored(rec)); d != "" {
		t.Errorf("Get(%q): %s", rec.Token, d)
	}
}

// wantFind checks that Find(rec.Fingerprint) returns rec.
func wantFind(t *testing.T, s vault.Store, rec vault.Record) {
	t.Helper()
	got, err := s.Find(context.Background(), rec.Fingerprint)
	if err != nil {
		t.Fatalf("Find(%x) = %v, want nil", rec.Fingerprint, err)
	}
	if d := diffRecord(got, stored(rec)); d != "" {
		t.Errorf("Find(%x): %s", rec.Fingerprint, d)
	}
}

// wantGetErr checks that Get(token) fails with want.
func wantGetErr(t *testing.T, s vault.Store, token string, want error) {
	t.Helper()
	if _, err := s.Get(context.Background(), token); !errors.Is(err, want) {
		t.Errorf("Get(%q) = %v, want %v", token, err, want)
	}
}

// wantFindErr checks that Find(fp) fails with want.
func wantFindErr(t *testing.T, s vault.Store, fp []byte, want error) {
	t.Helper()
	if _, err := s.Find(context.Background(), fp); !errors.Is(err, want) {
		t.Errorf("Find(%x) = %v, want %v", fp, err, want)
	}
}
