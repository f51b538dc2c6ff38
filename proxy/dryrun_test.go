package proxy

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/tokproxy/tok/proxy/rewrite"
	"github.com/tokproxy/tok/vault"
	"github.com/tokproxy/tok/vault/memory"
)

// TestDryRunGuardTokenize runs a request through a dry run with the guard
// in tokenize mode: the value at the route's field and the stray card
// both reach the trace with their offsets and tokens, and the stand-in
// receives exactly the rewritten body.
func TestDryRunGuardTokenize(t *testing.T) {
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	keys, err := vault.NewKeyring(vault.NewKeyringFile())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.New(store, keys)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := NewDryRun(Options{Vault: v, Store: store, Upstream: &url.URL{Scheme: "http", Host: "app.internal:3000"},
		Guard:  GuardOptions{Mode: rewrite.GuardTokenize},
		Routes: []Route{{Name: "pay", Method: "POST", Path: "/pay", Fields: []RouteField{{JSON: "card", Spec: vault.Spec{Format: vault.FormatPAN}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dr.Close() })

	body := `{"card":"4111111111111111","note":"5555 5555 5555 4444"}`
	rs, err := ReadRequests([]byte("POST /pay HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n" + body + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := dr.Do(context.Background(), ListenerPublic, rs[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.Route != "pay" || res.Refusal != nil || res.Status != 200 || res.Upstream != "shop.example" {
		t.Fatalf("result = route %q refusal %+v status %d upstream %q, want pay forwarded to shop.example", res.Route, res.Refusal, res.Status, res.Upstream)
	}
	if len(res.Fields) != 2 {
		t.Fatalf("fields = %+v, want the card field and the guard hit", res.Fields)
	}
	card, hit := res.Fields[0], res.Fields[1]
	if card.Selector != "json:card" || card.Field != 0 || card.Format != "pan" || card.Store != "vault" || card.Offset != strings.Index(body, `"4111`) || card.In != "4111111111111111" {
		t.Errorf("card field = %+v", card)
	}
	if hit.Field != -1 || hit.Path != "note" || hit.Selector != "" || hit.Offset != strings.Index(body, `"5555`) || hit.In != "5555555555554444" {
		t.Errorf("guard hit = %+v", hit)
	}
	want := strings.NewReplacer("4111111111111111", card.Out, "5555 5555 5555 4444", hit.Out).Replace(body)
	if !bytes.HasSuffix(res.Forwarded, []byte("\r\n\r\n"+want)) || !bytes.HasPrefix(res.Forwarded, []byte("POST /pay HTTP/1.1\r\nHost: shop.example\r\n")) {
		t.Errorf("forwarded =\n%s\nwant the body %s", res.Forwarded, want)
	}

	// The next request starts from an empty recording: refused, nothing forwarded.
	rs, _ = ReadRequests([]byte("GET /x?n=4111111111111111 HTTP/1.1\nHost: shop.example\n\n"))
	if res, err = dr.Do(context.Background(), ListenerPublic, rs[0]); err != nil {
		t.Fatal(err)
	}
	if res.Forwarded == nil || res.Refusal != nil {
		// tokenize mode rewrites the query too: still forwarded
		t.Errorf("query in tokenize mode: forwarded %q, refusal %+v", res.Forwarded, res.Refusal)
	}
	if bytes.Contains(res.Forwarded, []byte("4111111111111111")) {
		t.Errorf("the query's card reached the stand-in:\n%s", res.Forwarded)
	}
	if _, err := dr.Do(context.Background(), ListenerEgress, rs[0]); err == nil {
		t.Error("Do on the egress listener of a config without egress routes: nil error")
	}
}
