package rewrite

import "testing"

// TestGuardRequest: a card in the path, the host, a header's value or name
// is refused; an ignored header and ordinary ids pass.
func TestGuardRequest(t *testing.T) {
	r, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	for _, tc := range []struct {
		name, path, host string
		header           map[string][]string
		where            string // "" passes
	}{
		{"path", "/checkout/4111111111111111", "", nil, "path"},
		{"path params", "/checkout;4111-1111-1111-1111", "", nil, "path"},
		{"host", "/", "4111111111111111.shop.example", nil, "host"},
		{"header value", "/", "", h("X-Card-Number", "4111 1111 1111 1111"), "header X-Card-Number"},
		{"header name", "/", "", h("X-4111111111111111", "1"), "header *"},
		{"cookie, encoded", "/", "", h("Cookie", "a=b; pan=%34111111111111111"), "header Cookie"},
		{"referer query, plus", "/", "", h("Referer", "https://x.example/?c=4111+1111+1111+1111"), "header Referer"},
		{"ignored", "/", "", h("X-Datadog-Trace-Id", "4111111111111111"), ""},
		{"ids", "/orders/1700000000123", "shop.example", h("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"X-Request-Id", "123e4567-e89b-12d3-a456-426614174000", "Cookie", "_ga=GA1.2.1234567890.1700000000"), ""},
	} {
		err := r.GuardRequest(tc.path, tc.host, tc.header, map[string]bool{"x-datadog-trace-id": true})
		if tc.where == "" {
			if err != nil {
				t.Errorf("%s: GuardRequest = %v, want nil", tc.name, err)
			}
			continue
		}
		re, ok := err.(*Error)
		if !ok || re.Code != CodeCardNumberDetected || re.Path != tc.where {
			t.Errorf("%s: GuardRequest = %v, want %s at %q", tc.name, err, CodeCardNumberDetected, tc.where)
		}
	}
	off, _ := New(Config{Guard: GuardOff})
	if err := off.GuardRequest("/4111111111111111", "", nil, nil); err != nil {
		t.Errorf("guard off: %v", err)
	}
}
