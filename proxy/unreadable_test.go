package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// damagingStore returns records whose ciphertext is damaged once on is
// set, as a flipped byte in a bbolt data page would.
type damagingStore struct {
	vault.Durable
	on atomic.Bool
}

func (d *damagingStore) damage(r vault.Record, err error) (vault.Record, error) {
	if err == nil && d.on.Load() && len(r.Ciphertext) > 0 {
		r.Ciphertext = bytes.Clone(r.Ciphertext)
		r.Ciphertext[len(r.Ciphertext)/2] ^= 0x40
	}
	return r, err
}

func (d *damagingStore) Get(ctx context.Context, token string) (vault.Record, error) {
	return d.damage(d.Durable.Get(ctx, token))
}

func (d *damagingStore) Find(ctx context.Context, fp []byte) (vault.Record, error) {
	return d.damage(d.Durable.Find(ctx, fp))
}

// TestRecordUnreadable: a record that no longer decrypts answers /@me
// with 500 record_unreadable (not internal), is counted in
// tok_records_unreadable_total, and the convergent /handle (a logged-in
// client's; the anonymous one never looks cards up) does not hand its
// token out again, nor a new token for the card.
func TestRecordUnreadable(t *testing.T) {
	m := memory.New()
	t.Cleanup(func() { m.Close() })
	store := &damagingStore{Durable: m}
	e := newTestEnv(t, store)
	c := e.login("cih")
	r := do(t, c, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number": "`+seedPAN+`"}`)
	tok, _ := r.json(t)["token"].(string)
	if r.StatusCode != 200 || tok == "" {
		t.Fatalf("POST /handle as cih = %d %s", r.StatusCode, r.body)
	}
	store.on.Store(true)

	wantError(t, do(t, c, "GET", e.auth.URL+"/@me?token="+tok, "", ""), http.StatusInternalServerError, "record_unreadable")
	r = do(t, c, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number": "`+seedPAN+`"}`)
	wantError(t, r, http.StatusInternalServerError, "record_unreadable")
	if strings.Contains(string(r.body), tok) {
		t.Errorf("POST /handle for the card of an unreadable record handed out its token: %s", r.body)
	}
	resp, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`tok_records_unreadable_total{route="me"} 1`, `tok_records_unreadable_total{route="handle_client"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s; it has:\n%s", want, grepLines(string(b), "unreadable"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
