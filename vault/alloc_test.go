//go:build !race

// The race detector makes sync.Pool drop items at random, which adds
// allocations, so this file is left out of -race runs.

package vault

import "testing"

// TestCryptoBuiltOnce checks that Seal, Open and Fingerprint reuse the
// keyring's AEADs and HMAC state (crypto objects are built once,
// not per request). Building AES-GCM or an HMAC per call costs several more
// allocations than these bounds allow.
func TestCryptoBuiltOnce(t *testing.T) {
	k := mustKeyring(t, NewKeyringFile())
	const token, pan = "4111114821931111", "4111111111111111"
	v, ct := k.Seal(token, pan)
	tests := []struct {
		name string
		max  float64
		fn   func()
	}{
		{"Seal", 3, func() { k.Seal(token, pan) }},
		{"Open", 3, func() { k.Open(v, token, ct) }},
		{"Fingerprint", 4, func() { k.Fingerprint("pan:6:4", pan) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(200, tt.fn); got > tt.max {
			t.Errorf("%s: %v allocations per call, want ≤ %v", tt.name, got, tt.max)
		}
	}
}
