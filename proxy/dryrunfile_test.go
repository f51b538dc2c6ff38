package proxy

import (
	"io"
	"testing"
)

func TestReadRequestsRaw(t *testing.T) {
	for name, file := range map[string]string{
		"LF":            "POST /checkout?x=1 HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n{\"a\":1}\n",
		"CRLF":          "POST /checkout?x=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n",
		"comments":      "# a checkout\n\nPOST /checkout?x=1 HTTP/1.1\nHost: shop.example\nContent-Type: application/json\n\n{\"a\":1}",
		"wrong length":  "POST /checkout?x=1 HTTP/1.1\nHost: shop.example\nContent-Type: application/json\nContent-Length: 99\n\n{\"a\":1}\n",
		"absolute form": "POST http://shop.example/checkout?x=1 HTTP/1.1\nContent-Type: application/json\n\n{\"a\":1}\n",
	} {
		t.Run(name, func(t *testing.T) {
			rs, err := ReadRequests([]byte(file))
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("ReadRequests = %d requests, want 1", len(rs))
			}
			r := rs[0]
			body, _ := io.ReadAll(r.Body)
			if r.Method != "POST" || r.URL.Path != "/checkout" || r.URL.RawQuery != "x=1" || r.Host != "shop.example" {
				t.Errorf("request = %s %s ? %s host %s, want POST /checkout ? x=1 host shop.example", r.Method, r.URL.Path, r.URL.RawQuery, r.Host)
			}
			if string(body) != `{"a":1}` || r.ContentLength != 7 || r.Header.Get("Content-Length") != "7" {
				t.Errorf("body = %q (length %d, header %q), want {\"a\":1} of 7", body, r.ContentLength, r.Header.Get("Content-Length"))
			}
			if r.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
			}
		})
	}
	rs, err := ReadRequests([]byte("GET /orders HTTP/1.1\nHost: shop.example"))
	if err != nil || rs[0].ContentLength != 0 || rs[0].URL.Path != "/orders" {
		t.Errorf("headers only: %v, %+v", err, rs)
	}
	for _, bad := range []string{"", "\n\n", "POST /checkout HTTP/1.1\n\n{}", "NOT A REQUEST\n\n"} {
		if _, err := ReadRequests([]byte(bad)); err == nil {
			t.Errorf("ReadRequests(%q) = nil error, want one", bad)
		}
	}
}

func TestReadRequestsHAR(t *testing.T) {
	har := `{"log":{"version":"1.2","entries":[
	 {"request":{"method":"POST","url":"https://shop.example/checkout?step=2","httpVersion":"h2",
	  "headers":[{"name":":authority","value":"shop.example"},{"name":"content-type","value":"application/x-www-form-urlencoded"},
	             {"name":"content-length","value":"3"},{"name":"cookie","value":"s=1"}],
	  "postData":{"mimeType":"application/x-www-form-urlencoded","text":"card%5Bnumber%5D=4111111111111111"}}},
	 {"request":{"method":"GET","url":"https://shop.example/orders","headers":[]}},
	 {"request":{"method":"PUT","url":"https://shop.example/b","headers":[],"postData":{"mimeType":"application/json","text":"eyJhIjoxfQ==","encoding":"base64"}}}
	]}}`
	rs, err := ReadRequests([]byte(har))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("ReadRequests = %d requests, want 3", len(rs))
	}
	r := rs[0]
	body, _ := io.ReadAll(r.Body)
	if r.Method != "POST" || r.URL.RequestURI() != "/checkout?step=2" || r.Host != "shop.example" || r.Header.Get(":authority") != "" {
		t.Errorf("entry 1 = %s %s host %s, headers %v", r.Method, r.URL.RequestURI(), r.Host, r.Header)
	}
	if string(body) != "card%5Bnumber%5D=4111111111111111" || r.Header.Get("Content-Length") != "33" || r.Header.Get("Cookie") != "s=1" {
		t.Errorf("entry 1 body %q, Content-Length %q, Cookie %q", body, r.Header.Get("Content-Length"), r.Header.Get("Cookie"))
	}
	if rs[1].Method != "GET" || rs[1].ContentLength != 0 {
		t.Errorf("entry 2 = %s length %d", rs[1].Method, rs[1].ContentLength)
	}
	body, _ = io.ReadAll(rs[2].Body)
	if string(body) != `{"a":1}` || rs[2].Header.Get("Content-Type") != "application/json" {
		t.Errorf("entry 3 body %q type %q", body, rs[2].Header.Get("Content-Type"))
	}
	for _, bad := range []string{`{"log":{"entries":[]}}`, `{"log":{"entries":[{"request":{"method":"GET","url":"/relative"}}]}}`, `{"log":`} {
		if _, err := ReadRequests([]byte(bad)); err == nil {
			t.Errorf("ReadRequests(%.40q) = nil error, want one", bad)
		}
	}
}

func TestMaskCards(t *testing.T) {
	token := "4111112345671111"
	keep := func(d string) bool { return d == token }
	for in, want := range map[string]string{
		`{"n":"4111111111111111"}`:              `{"n":"411111******1111"}`,
		"card=4111 1111 1111 1111&x=1":          "card=4111 11** **** 1111&x=1",
		"n=5555-5555-5555-4444":                 "n=5555-55**-****-4444",
		"tok=" + token:                          "tok=" + token,
		"amount=1000&cvc=123&zip=12345":         "amount=1000&cvc=123&zip=12345",
		"Content-Length: 1234\r\n":              "Content-Length: 1234\r\n",
		"id=123456789012345678901234 end":       "id=123456**************1234 end",
		"two 4111111111111111 5555555555554444": "two 411111********** ************4444", // one run to the scanner: masked whole
	} {
		if got := string(MaskCards([]byte(in), keep)); got != want {
			t.Errorf("MaskCards(%q) = %q, want %q", in, got, want)
		}
	}
}
