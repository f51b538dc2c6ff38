package httpx

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"", true},
		{"localhost", true},
		{"LOCALHOST:9090", true},
		{"127.0.0.1", true},
		{"127.0.0.2:9090", true},
		{"[::1]:9090", true},
		{"[::1]", true},
		{"10.0.0.1:9090", false},
		{"evil.example", false},
		{"localhost.evil.example", false},
	} {
		if got := LoopbackHost(tc.host); got != tc.want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, tc := range []struct {
		remote, host string
		ok           bool
	}{
		{"127.0.0.1:5000", "localhost:9090", true},
		{"[::1]:5000", "[::1]:9090", true},
		{"10.1.2.3:5000", "localhost:9090", false},
		{"127.0.0.1:5000", "rebound.example:9090", false},
	} {
		r := httptest.NewRequest("GET", "/backup", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		err := CheckLoopback(r)
		var e *Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("CheckLoopback(%s, Host %s) = %v, want nil", tc.remote, tc.host, err)
		case !tc.ok && (!errors.As(err, &e) || e.Status != http.StatusForbidden || e.Code != CodeForbidden):
			t.Errorf("CheckLoopback(%s, Host %s) = %v, want 403 %s", tc.remote, tc.host, err, CodeForbidden)
		}
	}
}

func TestSafePath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/orders/12345", "/orders/12345"},
		{"/x/4111-1111-1111-1111", "/x/####-####-####-####"},
		{"/x/４１１１１１１１１１１１", "/x/############"},
	} {
		if got := SafePath(tc.in); got != tc.want {
			t.Errorf("SafePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := SafePath("/" + strings.Repeat("a", 300)); len(got) > 128+len("…")+1 {
		t.Errorf("SafePath of 301 bytes = %d bytes, want it cut near 128", len(got))
	}
}

func TestSafeMethod(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"PATCH", "PATCH"},
		{"get", "get"},
		{"4111111111111111", "other"},
		{"", "other"},
		{strings.Repeat("A", 21), "other"},
	} {
		if got := SafeMethod(tc.in); got != tc.want {
			t.Errorf("SafeMethod(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCredentials(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("tok:s3cret:x"))
	if user, pass, ok := BasicCredentials(basic); !ok || user != "tok" || pass != "s3cret:x" {
		t.Errorf("BasicCredentials(%q) = %q, %q, %v, want tok, s3cret:x, true", basic, user, pass, ok)
	}
	for _, h := range []string{"", "Basic", "Bearer abc", "Basic !!notbase64"} {
		if user, pass, ok := BasicCredentials(h); ok || user != "" || pass != "" {
			t.Errorf("BasicCredentials(%q) = %q, %q, %v, want nothing", h, user, pass, ok)
		}
	}
	if got := BearerToken("bearer  sk_test_1 "); got != "sk_test_1" {
		t.Errorf("BearerToken = %q, want sk_test_1", got)
	}
	if got := BearerToken(basic); got != "" {
		t.Errorf("BearerToken(%q) = %q, want \"\"", basic, got)
	}
}

func TestWriteErrorClientClosed(t *testing.T) {
	w := httptest.NewRecorder()
	sw := &StatusWriter{ResponseWriter: w}
	WriteError(sw, NewError(StatusClientClosed, "client_closed", "client closed the request", nil))
	if w.Code != http.StatusBadRequest || sw.Status != http.StatusBadRequest || !sw.Wrote {
		t.Errorf("WriteError(499) wrote %d (StatusWriter %d, %v), want 400", w.Code, sw.Status, sw.Wrote)
	}
	if got := w.Body.String(); got != `{"error":"client_closed","message":"client closed the request"}`+"\n" {
		t.Errorf("body = %q", got)
	}
	if h := w.Header().Get("Cache-Control"); h != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", h)
	}
}
