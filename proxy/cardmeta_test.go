package proxy

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/tokproxy/tok/vault"
)

// TestCardMeta checks the metadata of cards of every length: the brand
// from the guard's table, no more digits than the mask shows, and the Luhn
// bit as the vault computes it.
func TestCardMeta(t *testing.T) {
	e := newTestEnv(t, nil)
	tests := []struct {
		d    string
		want CardMeta
	}{
		{"4111111111111111", CardMeta{Brand: "visa", Prefix: "411111", Last4: "1111", Length: 16, Luhn: true}},
		{seedPAN, CardMeta{Brand: UnknownBrand, Prefix: "555213", Last4: "1777", Length: 18, Luhn: false}}, // Mastercard issues 16 digits
		{"5555555555554444", CardMeta{Brand: "mastercard", Prefix: "555555", Last4: "4444", Length: 16, Luhn: true}},
		{"378282246310005", CardMeta{Brand: "amex", Prefix: "37828", Last4: "0005", Length: 15, Luhn: true}},
		{"4222222222222", CardMeta{Brand: "visa", Prefix: "422", Last4: "2222", Length: 13, Luhn: true}},
		{"123456789012", CardMeta{Brand: UnknownBrand, Prefix: "12", Last4: "9012", Length: 12, Luhn: false}},
		{"6011000990139424", CardMeta{Brand: "discover", Prefix: "601100", Last4: "9424", Length: 16, Luhn: true}},
		{"4111111111111111110", CardMeta{Brand: "visa", Prefix: "411111", Last4: "1110", Length: 19, Luhn: vault.Luhn("4111111111111111110")}},
	}
	for _, tt := range tests {
		got := e.srv.cardMeta(tt.d, false)
		if got != tt.want {
			t.Errorf("cardMeta(%s) = %+v, want %+v", vault.Mask(tt.d), got, tt.want)
		}
		m := vault.Mask(tt.d)
		if m[:len(got.Prefix)] != got.Prefix || m[len(m)-len(got.Last4):] != got.Last4 {
			t.Errorf("cardMeta(%s) shows %s…%s, more than the mask", m, got.Prefix, got.Last4)
		}
	}
	fp := e.srv.cardMeta(seedPAN, true).Fingerprint
	want := hex.EncodeToString(e.vault.Keyring().Fingerprint(vault.Spec{}.Domain(), seedPAN))
	if fp != want || len(fp) != 64 {
		t.Errorf("fingerprint = %q, want the keyed fingerprint %q", fp, want)
	}
	if other := e.srv.cardMeta("4111111111111111", true).Fingerprint; other == fp {
		t.Errorf("two cards share the fingerprint %s", fp)
	}
}

// TestHandleMetadata: /handle answers as the prototype did unless asked
// for metadata; the anonymous answer never carries a fingerprint, the
// client's does, and it is the one /@me tells a revealing client.
func TestHandleMetadata(t *testing.T) {
	e := newTestEnv(t, nil)
	r := do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number": "`+seedPAN+`"}`)
	if keys := mapKeys(r.json(t)); !slices.Equal(keys, []string{"token"}) {
		t.Errorf("POST /handle without metadata = %s, want only token", r.body)
	}

	r = do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_number": "4111-1111-1111-1111", "metadata": true}`)
	var one struct {
		Token string
		Card  map[string]any
	}
	decode(t, r, &one)
	if one.Token == "" || one.Card["brand"] != "visa" || one.Card["prefix"] != "411111" || one.Card["last4"] != "1111" ||
		one.Card["length"] != 16.0 || one.Card["luhn"] != true {
		t.Errorf("POST /handle with metadata = %s", r.body)
	}
	if _, ok := one.Card["fingerprint"]; ok {
		t.Errorf("anonymous POST /handle with metadata = %s, carries a fingerprint", r.body)
	}

	r = do(t, nil, "POST", e.public.URL+"/handle", "application/json", `{"pan_numbers": ["378282246310005", "`+seedPAN+`"], "metadata": true}`)
	var batch struct {
		Tokens []string
		Cards  []CardMeta
	}
	decode(t, r, &batch)
	if len(batch.Tokens) != 2 || len(batch.Cards) != 2 || batch.Cards[0].Brand != "amex" || batch.Cards[1].Brand != UnknownBrand || batch.Cards[1].Luhn {
		t.Errorf("POST /handle batch with metadata = %s", r.body)
	}

	jar := e.login("cih")
	r = do(t, jar, "POST", e.auth.URL+"/handle", "application/json", `{"pan_number": "`+seedPAN+`", "metadata": true}`)
	var client struct {
		Token string
		Card  CardMeta
	}
	decode(t, r, &client)
	if len(client.Card.Fingerprint) != 64 {
		t.Fatalf("client POST /handle with metadata = %s, want a fingerprint", r.body)
	}

	var me struct {
		Hash string
		Card *CardMeta
	}
	decode(t, do(t, jar, "GET", e.auth.URL+"/@me?token="+client.Token, "", ""), &me)
	if me.Card == nil || *me.Card != client.Card || me.Hash != client.Card.Fingerprint {
		t.Errorf("GET /@me card = %+v hash %s, want %+v (the /handle card) and its fingerprint", me.Card, me.Hash, client.Card)
	}
	// A masked-only client gets the card but not its fingerprint, as it
	// gets no hash.
	var viewed struct{ Card *CardMeta }
	decode(t, do(t, e.login("viewer"), "GET", e.auth.URL+"/@me?token="+client.Token, "", ""), &viewed)
	want := client.Card
	want.Fingerprint = ""
	if viewed.Card == nil || *viewed.Card != want {
		t.Errorf("GET /@me as viewer card = %+v, want %+v", viewed.Card, want)
	}
	// An anonymous token's card has the same fingerprint: one per card.
	decode(t, do(t, jar, "GET", e.auth.URL+"/@me?token="+one.Token, "", ""), &me)
	if me.Card == nil || me.Card.Brand != "visa" || me.Card.Fingerprint == "" || me.Card.Fingerprint == client.Card.Fingerprint {
		t.Errorf("GET /@me of an anonymous Visa token: card = %+v", me.Card)
	}
}

// decode checks that r is a 200 and decodes its body into v.
func decode(t *testing.T, r response, v any) {
	t.Helper()
	if r.StatusCode != 200 {
		t.Fatalf("status = %d %s, want 200", r.StatusCode, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

// mapKeys lists m's keys, sorted.
func mapKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestInboundCardHeaders: a route with card headers tells the app about
// the card at its first card field the request carries; Tok-Card-*
// headers a client sends never reach the app, on any route.
func TestInboundCardHeaders(t *testing.T) {
	e := newInboundEnv(t, inboundConfig{opts: func(o *Options) {
		o.Routes[0].CardHeaders = true
		o.Routes = append(o.Routes, Route{Name: "unique", Path: "/unique", CardHeaders: true,
			Fields: []RouteField{{JSON: "pan", Spec: vault.Spec{Unique: true}}}})
	}})
	// Underscores for dashes too: Flask, PHP and Rack read Tok_Card_Luhn
	// as Tok-Card-Luhn.
	forged := []string{"Tok-Card-Brand", "amex", "tok-card-last4", "0005", "TOK-CARD-FINGERPRINT", "00", "Tok-Card-Other", "x",
		"Tok_Card_Luhn", "false", "tok_card-length", "1"}

	// The card field comes after the items in the body: the headers follow
	// the order of the route's fields, not of the body.
	body := `{"items": [{"card": {"number": "` + panVisa + `"}}], "card": {"number": "` + panAmex + `", "cvc": "123"}}`
	r := e.send("POST", "/checkout", "application/json", []byte(body), forged...)
	up, _ := e.forwarded(t, r, 0)
	want := map[string]string{
		"Tok-Card-Field": "json:card.number", "Tok-Card-Brand": "amex", "Tok-Card-Prefix": "37828",
		"Tok-Card-Last4": "0005", "Tok-Card-Length": "15", "Tok-Card-Luhn": "true",
		"Tok-Card-Fingerprint": e.srv.cardMeta(panAmex, true).Fingerprint,
	}
	checkCardHeaders(t, up.Header, want)

	// Only the items carry a card: it is described.
	n := len(e.up.got())
	r = e.send("POST", "/checkout", "application/json", []byte(`{"items": [{"card": {"number": "`+panMC+`"}}, {"card": {"number": "`+panVisa+`"}}]}`), forged...)
	up, _ = e.forwarded(t, r, n)
	checkCardHeaders(t, up.Header, map[string]string{
		"Tok-Card-Field": "json:items.#.card.number", "Tok-Card-Brand": "mastercard", "Tok-Card-Prefix": "555555",
		"Tok-Card-Last4": "4444", "Tok-Card-Length": "16", "Tok-Card-Luhn": "true",
		"Tok-Card-Fingerprint": e.srv.cardMeta(panMC, true).Fingerprint,
	})

	// A unique field gets no fingerprint: it would undo what unique is for.
	n = len(e.up.got())
	r = e.send("POST", "/unique", "application/json", []byte(`{"pan": "`+seedPAN+`"}`), forged...)
	up, _ = e.forwarded(t, r, n)
	checkCardHeaders(t, up.Header, map[string]string{
		"Tok-Card-Field": "json:pan", "Tok-Card-Brand": UnknownBrand, "Tok-Card-Prefix": "555213",
		"Tok-Card-Last4": "1777", "Tok-Card-Length": "18", "Tok-Card-Luhn": "false",
	})

	// No card in the request, and a route without card headers: the
	// client's headers are dropped and none are added.
	for _, path := range []string{"/checkout", "/upload/x"} {
		n = len(e.up.got())
		r = e.send("POST", path, "application/json", []byte(`{"note": "no card"}`), forged...)
		if r.StatusCode != 200 {
			t.Fatalf("POST %s = %d %s", path, r.StatusCode, r.body)
		}
		checkCardHeaders(t, e.up.since(n)[0].Header, nil)
	}
}

// TestInboundCardTrailers: a Tok-Card-* header announced as a trailer of a
// streamed body does not reach the app either.
func TestInboundCardTrailers(t *testing.T) {
	e := newInboundEnv(t, inboundConfig{})
	got := make(chan http.Header, 1)
	e.up.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		io.ReadAll(r.Body)
		got <- r.Trailer.Clone()
		return true
	}
	r := e.raw("POST /upload/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n" +
		"Trailer: Tok-Card-Brand, X-Other\r\n\r\n3\r\nabc\r\n0\r\nTok-Card-Brand: amex\r\nX-Other: 1\r\n\r\n")
	if r.StatusCode != 200 {
		t.Fatalf("POST /upload/x = %d %s", r.StatusCode, r.body)
	}
	h := <-got
	if _, ok := h["Tok-Card-Brand"]; ok || len(h) != 1 {
		t.Errorf("the app's trailers = %v, want X-Other alone", h)
	}
}

// checkCardHeaders checks that h holds exactly the Tok-Card-* headers of
// want, each once.
func checkCardHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for name, vs := range h {
		if !isCardHeader(name) {
			continue
		}
		if w, ok := want[name]; !ok || len(vs) != 1 || vs[0] != w {
			t.Errorf("the app got %s: %q, want %q", name, vs, w)
		}
	}
	for name, w := range want {
		if h.Get(name) == "" && w != "" {
			t.Errorf("the app got no %s, want %q", name, w)
		}
	}
}
