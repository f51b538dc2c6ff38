package zoo

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// forgedCardHeaders are Tok-Card-* headers a client made up, spelled every
// way a framework reads as the same header: any case, and underscores for
// dashes (Werkzeug, PHP and Rack name headers by their CGI variable, where
// Tok_Card_Brand and Tok-Card-Brand are both HTTP_TOK_CARD_BRAND).
var forgedCardHeaders = []string{
	"Tok-Card-Brand: forged",
	"tok-card-last4: 0000",
	"TOK-CARD-FIELD: forged",
	"Tok_Card_Fingerprint: forged",
	"tok_card_prefix: forged",
	"Tok-Card_Length: forged",
	"TOK_CARD_LUHN: forged",
}

// TestZooCardHeaders runs tok.yaml with card_headers on the checkout route
// in front of each app and sends it requests carrying forgedCardHeaders:
// as the app's framework parses them, a checkout carries tok's Tok-Card-*
// headers for the card it tokenized and none of the client's, and a
// request off the route carries none at all.
func TestZooCardHeaders(t *testing.T) {
	zoo, _, _ := zooCorpus(t)
	only := os.Getenv("TOK_ZOO_APPS")
	for _, a := range apps {
		if only != "" && !slices.Contains(strings.Split(only, ","), a.name) {
			continue
		}
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			upstream := startApp(t, a, zoo)
			tok := startTok(t, zoo, upstream, func(cfg map[string]any) {
				cfg["inbound"].([]any)[0].(map[string]any)["card_headers"] = true
			}).Addr("public")
			send := func(path, body string) map[string][]string {
				t.Helper()
				raw := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\n%s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
					path, strings.Join(forgedCardHeaders, "\r\n"), len(body), body)
				rs, err := exchange(tok, []byte(raw))
				if len(rs) != 1 || rs[0].outcome != forwarded {
					t.Fatalf("POST %s with forged Tok-Card-* headers: %d answers (%v), want the app's", path, len(rs), err)
				}
				if strings.Contains(string(rs[0].body), "forged") {
					t.Errorf("POST %s: a client's Tok-Card-* header reached %s: %s", path, a.name, rs[0].body)
				}
				return cardHeaders(rs[0].body)
			}
			pan := testPANs[0]
			meta := send("/checkout", `{"card":{"number":"`+pan+`"},"amount":100}`)
			want := map[string]string{"tok-card-last4": pan[len(pan)-4:], "tok-card-length": "16", "tok-card-luhn": "true",
				"tok-card-brand": "visa", "tok-card-field": "json:card.number"}
			for name, v := range want {
				if got := meta[name]; len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != v }) {
					t.Errorf("%s sees %s %q on a checkout, want only tok's %q (all: %v)", a.name, name, got, v, meta)
				}
			}
			if meta := send("/profile", `{"name":"Ada"}`); len(meta) > 0 {
				t.Errorf("%s sees Tok-Card-* headers off the checkout route: %v", a.name, meta)
			}
		})
	}
}

// cardHeaderName returns the Tok-Card-* header name, lower-cased, that a
// key of an app's answer stands for, or "": frameworks hand headers over
// as sent (Go, Express), title-cased (Flask) or CGI-style (PHP's
// HTTP_TOK_CARD_LAST4).
func cardHeaderName(key string) string {
	k := strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(key), "_", "-"), "http-")
	if !strings.HasPrefix(k, "tok-card-") {
		return ""
	}
	return k
}

// cardHeaders returns every Tok-Card-* header value anywhere in an app's
// answer, by lower-cased name.
func cardHeaders(answer []byte) map[string][]string {
	var v any
	if json.Unmarshal(answer, &v) != nil {
		return nil
	}
	out := map[string][]string{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				name := cardHeaderName(k)
				if name == "" {
					walk(x)
					continue
				}
				if xs, ok := x.([]any); ok {
					for _, s := range xs {
						out[name] = append(out[name], fmt.Sprint(s))
					}
				} else {
					out[name] = append(out[name], fmt.Sprint(x))
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}
