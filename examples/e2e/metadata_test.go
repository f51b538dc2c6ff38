package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// cardMeta is a card's metadata as tok's API writes it.
type cardMeta struct {
	Brand       string `json:"brand"`
	Prefix      string `json:"prefix"`
	Last4       string `json:"last4"`
	Length      int    `json:"length"`
	Luhn        bool   `json:"luhn"`
	Fingerprint string `json:"fingerprint"`
}

// TestCardMetadataBinary runs the binary with a route that has card
// headers: /handle answers as before unless asked for metadata, the
// anonymous answer has no fingerprint and the client's has the one /@me
// shows, and the app gets Tok-Card-* headers from tok only, never the
// client's.
func TestCardMetadataBinary(t *testing.T) {
	dir := t.TempDir()
	got := make(chan http.Header, 4)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(app.Close)
	keyring := newKeyring(t, dir)
	cfg, secret := revealConfig(t, dir, keyring, "upstream: "+app.URL+`
inbound:
  - name: checkout
    match: {method: POST, path: /checkout}
    card_headers: true
    fields:
      - json: card.number
      - {json: card.cvc, bind: card.number, format: digits, store: memory, ttl: 15m}
`)
	if code, out, errOut := tok(t, dir, "", "check", "-config", cfg); code != 0 {
		t.Fatalf("tok check = %d\n%s%s", code, out, errOut)
	}
	// card_headers on a route without a card field is refused at its line.
	bad := writeFile(t, dir, "bad.yaml", "upstream: "+app.URL+`
inbound:
  - name: upload
    match: {path: /upload}
    inspect: false
    card_headers: true
`)
	if code, out, errOut := tok(t, dir, "", "check", "-config", bad); code == 0 || !strings.Contains(out+errOut, "bad.yaml:6: inbound[0].card_headers") {
		t.Errorf("tok check on card_headers without a card field = %d %s%s, want a problem at bad.yaml:6", code, out, errOut)
	}

	s := startTok(t, dir, cfg)
	status, body := s.postJSON(t, "public", "/handle", nil, `{"pan_number":"`+testPAN+`"}`)
	var plain map[string]any
	if status != 200 || json.Unmarshal(body, &plain) != nil || len(plain) != 1 || plain["token"] == nil {
		t.Errorf("POST /handle without metadata = %d %s, want the token alone", status, body)
	}
	status, body = s.postJSON(t, "public", "/handle", nil, `{"pan_number":"4111 1111 1111 1111","metadata":true}`)
	var anon struct {
		Token string
		Card  cardMeta
	}
	want := cardMeta{Brand: "visa", Prefix: "411111", Last4: "1111", Length: 16, Luhn: true}
	if status != 200 || json.Unmarshal(body, &anon) != nil || anon.Card != want {
		t.Errorf("POST /handle with metadata = %d %s, want card %+v without a fingerprint", status, body, want)
	}
	status, body = s.postJSON(t, "public", "/handle", nil, `{"pan_numbers":["378282246310005","5555555555554444"],"metadata":true}`)
	var batch struct{ Cards []cardMeta }
	if status != 200 || json.Unmarshal(body, &batch) != nil || len(batch.Cards) != 2 || batch.Cards[0].Brand != "amex" ||
		batch.Cards[0].Prefix != "37828" || batch.Cards[1].Brand != "mastercard" {
		t.Errorf("POST /handle batch with metadata = %d %s", status, body)
	}

	cookie := login(t, s, "cih", secret)
	status, body = s.postJSON(t, "auth", "/handle", cookie, `{"pan_number":"`+testPAN+`","metadata":true}`)
	var client struct {
		Token string
		Card  cardMeta
	}
	if status != 200 || json.Unmarshal(body, &client) != nil || len(client.Card.Fingerprint) != 64 {
		t.Fatalf("client POST /handle with metadata = %d %s, want a fingerprint", status, body)
	}
	status, body = s.get2(t, "auth", "/@me?token="+client.Token, cookie)
	var me struct {
		Hash string
		Card cardMeta
	}
	if status != 200 || json.Unmarshal(body, &me) != nil || me.Card != client.Card || me.Hash != client.Card.Fingerprint {
		t.Errorf("GET /@me = %d card %+v hash %s, want the /handle card %+v", status, me.Card, me.Hash, client.Card)
	}

	// The shopper's checkout: tok's headers reach the app, the forged ones
	// do not, and the fingerprint is the card's, as /handle told it.
	req, _ := http.NewRequest("POST", "http://"+s.addrs["public"]+"/checkout",
		strings.NewReader(`{"card":{"number":"`+testPAN+`","cvc":"123"},"amount":100}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Tok-Card-Brand", "amex")
	req.Header.Set("Tok-Card-Forged", "1")
	status, body = s.do(t, req, nil)
	if status != 200 {
		t.Fatalf("POST /checkout = %d %s", status, body)
	}
	h := <-got
	for name, want := range map[string]string{
		"Tok-Card-Field": "json:card.number", "Tok-Card-Brand": "visa", "Tok-Card-Prefix": "411111",
		"Tok-Card-Last4": "1111", "Tok-Card-Length": "16", "Tok-Card-Luhn": "true",
		"Tok-Card-Fingerprint": client.Card.Fingerprint, "Tok-Card-Forged": "",
	} {
		if vs := h.Values(name); strings.Join(vs, ",") != want {
			t.Errorf("the app got %s: %q, want %q", name, vs, want)
		}
	}
	s.stop(t)
}
