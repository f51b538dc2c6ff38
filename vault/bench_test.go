package vault

import (
	"testing"
)

// The benchmarks build the keyring once, as the vault does: Seal and
// Fingerprint must not rebuild AES or HMAC state per call.

func BenchmarkSeal(b *testing.B) {
	k := mustKeyring(b, NewKeyringFile())
	const token, pan = "4111114821931111", "4111111111111111"
	b.ReportAllocs()
	for b.Loop() {
		k.Seal(token, pan)
	}
}

func BenchmarkOpen(b *testing.B) {
	k := mustKeyring(b, NewKeyringFile())
	const token, pan = "4111114821931111", "4111111111111111"
	v, ct := k.Seal(token, pan)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open(v, token, ct); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFingerprint(b *testing.B) {
	k := mustKeyring(b, NewKeyringFile())
	b.ReportAllocs()
	for b.Loop() {
		k.Fingerprint("pan:6:4", "4111111111111111")
	}
}

func BenchmarkFingerprintParallel(b *testing.B) {
	k := mustKeyring(b, NewKeyringFile())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k.Fingerprint("pan:6:4", "4111111111111111")
		}
	})
}

func BenchmarkNewToken(b *testing.B) {
	for _, f := range []Format{FormatPAN, FormatDigits, FormatOpaque} {
		b.Run(f.String(), func(b *testing.B) {
			spec := Spec{Format: f}
			b.ReportAllocs()
			for b.Loop() {
				spec.newToken("4111111111111111")
			}
		})
	}
}

func BenchmarkMarshalRecord(b *testing.B) {
	r := typicalRecord(b)
	b.ReportAllocs()
	for b.Loop() {
		MarshalRecord(r)
	}
}

func BenchmarkUnmarshalRecord(b *testing.B) {
	r := typicalRecord(b)
	v := MarshalRecord(r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalRecord(r.Token, v); err != nil {
			b.Fatal(err)
		}
	}
}
