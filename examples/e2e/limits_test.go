package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServeMemoryLimit: limits.memory becomes the Go runtime's soft memory
// limit, and GOMEMLIMIT in the environment wins over it, as the runtime's
// own setting. Read back through /metrics (go_gc_gomemlimit_bytes).
func TestServeMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	keyring := newKeyring(t, dir)
	cfg := writeBoltConfig(t, dir, keyring, "limits: {memory: 100MiB}\n")
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "go_gc_gomemlimit_bytes 1.048576e+08"},
		{[]string{"GOMEMLIMIT=200MiB"}, "go_gc_gomemlimit_bytes 2.097152e+08"},
	} {
		s := startTok(t, dir, cfg, tc.env...)
		resp, err := http.Get("http://" + s.addrs["admin"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), tc.want+"\n") {
			t.Errorf("env %q: /metrics lacks %q", tc.env, tc.want)
		}
		s.stop(t)
	}
}
