package vault

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"
)

// equalRecord compares records as the codec keeps them (times to the
// millisecond, nil and empty slices alike).
func equalRecord(a, b Record) bool {
	return a.Token == b.Token && a.KeyID == b.KeyID && a.Format == b.Format && a.version() == b.version() &&
		bytes.Equal(a.Fingerprint, b.Fingerprint) && bytes.Equal(a.Ciphertext, b.Ciphertext) &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) && a.Expires.IsZero() == b.Expires.IsZero()
}

func TestRecordRoundTrip(t *testing.T) {
	created := time.Date(2025, 11, 27, 6, 13, 42, 123_000_000, time.UTC)
	fp := bytes.Repeat([]byte{0xfe}, 32)
	ct := bytes.Repeat([]byte{0x5a}, 44)
	tests := []struct {
		name string
		rec  Record
	}{
		{"durable pan", Record{Token: "4111114821931111", KeyID: 1, Ciphertext: ct, Fingerprint: fp, Created: created}},
		{"unique, no fingerprint", Record{Token: "4111114821931111", KeyID: 1, Ciphertext: ct, Created: created}},
		{"volatile with expiry", Record{Token: "123", KeyID: 2, Ciphertext: ct, Created: created, Expires: created.Add(15 * time.Minute), Format: FormatDigits}},
		{"opaque", Record{Token: "tok_0123456789abcdefABCDEF", KeyID: 3, Ciphertext: ct, Fingerprint: fp, Created: created, Format: FormatOpaque}},
		{"two-byte key id", Record{Token: "t", KeyID: 300, Ciphertext: ct, Created: created}},
		{"max key id", Record{Token: "t", KeyID: math.MaxUint32, Ciphertext: ct, Fingerprint: fp, Created: created}},
		{"before 1970", Record{Token: "t", KeyID: 1, Ciphertext: ct, Created: time.Date(1960, 1, 1, 0, 0, 0, 5_000_000, time.UTC), Expires: time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)}},
		{"zero created", Record{Token: "t", KeyID: 1, Ciphertext: ct}},
		{"empty ciphertext", Record{Token: "t", KeyID: 1, Fingerprint: fp, Created: created}},
		{"255-byte fingerprint", Record{Token: "t", KeyID: 1, Ciphertext: ct, Fingerprint: bytes.Repeat([]byte{1}, 255), Created: created}},
		{"version 2", Record{Token: "4111114821931111", KeyID: 7, Ciphertext: ct, Fingerprint: fp, Created: created, Expires: created.Add(time.Hour), Version: RecordV2}},
		{"far future", Record{Token: "t", KeyID: 1, Ciphertext: ct, Created: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), Expires: time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := MarshalRecord(tt.rec)
			got, err := UnmarshalRecord(tt.rec.Token, b)
			if err != nil {
				t.Fatalf("UnmarshalRecord(MarshalRecord(%+v)): %v", tt.rec, err)
			}
			if !equalRecord(got, tt.rec) {
				t.Errorf("UnmarshalRecord(MarshalRecord(r)) = %+v, want %+v", got, tt.rec)
			}
			if got.Created.Location() != time.UTC {
				t.Errorf("Created in %v, want UTC", got.Created.Location())
			}
			// The decoded record must not alias the caller's buffer: bbolt
			// reuses it when the transaction ends.
			for i := range b {
				b[i] = 0xAA
			}
			if !equalRecord(got, tt.rec) {
				t.Errorf("decoded record changed when the input buffer was overwritten")
			}
		})
	}
}

func TestRecordMilliseconds(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 678_901_234, time.FixedZone("CET", 3600))
	got, err := UnmarshalRecord("t", MarshalRecord(Record{Created: created, Expires: created.Add(time.Second)}))
	if err != nil {
		t.Fatal(err)
	}
	if want := created.Truncate(time.Millisecond); !got.Created.Equal(want) {
		t.Errorf("Created = %v, want %v", got.Created, want)
	}
	if want := created.Add(time.Second).Truncate(time.Millisecond); !got.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v", got.Expires, want)
	}
}

func TestRecordExpired(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		expires time.Time
		want    bool
	}{
		{time.Time{}, false},
		{now.Add(time.Millisecond), false},
		{now, true},
		{now.Add(-time.Millisecond), true},
	}
	for _, tt := range tests {
		if got := (Record{Expires: tt.expires}).Expired(now); got != tt.want {
			t.Errorf("Record{Expires: %v}.Expired(%v) = %v, want %v", tt.expires, now, got, tt.want)
		}
	}
}

// typicalRecord is a durable pan record as Tokenize writes it: a 16-digit
// PAN sealed under key 1, with its fingerprint.
func typicalRecord(t testing.TB) Record {
	k := mustKeyring(t, NewKeyringFile())
	const pan = "4111111111111111"
	tok := Spec{}.newToken(pan)
	kid, ct := k.Seal(tok, pan)
	return Record{Token: tok, KeyID: kid, Ciphertext: ct, Fingerprint: k.Fingerprint("pan:6:4", pan), Created: time.Now()}
}

// TestRecordSize guards the storage budget (≤ 450 bytes per token
// including the fingerprint index); the record value itself stays well
// under it.
func TestRecordSize(t *testing.T) {
	const budget = 110
	r := typicalRecord(t)
	n := len(MarshalRecord(r))
	t.Logf("16-digit record: %d bytes of value (+%d token key)", n, len(r.Token))
	if n > budget {
		t.Errorf("len(MarshalRecord(typical 16-digit record)) = %d, want ≤ %d", n, budget)
	}
	r.Expires = r.Created.Add(time.Hour)
	r.KeyID = math.MaxUint32
	if n := len(MarshalRecord(r)); n > budget+10 {
		t.Errorf("len(MarshalRecord(record with expiry and max key id)) = %d, want ≤ %d", n, budget+10)
	}
}

const recordVersion = RecordV1

func TestUnmarshalRecordCorrupt(t *testing.T) {
	valid := MarshalRecord(Record{KeyID: 1, Ciphertext: []byte("ciphertext"), Fingerprint: bytes.Repeat([]byte{7}, 32), Created: time.UnixMilli(1_700_000_000_000)})
	tooBigKey := binary.AppendUvarint([]byte{recordVersion, 0}, 1<<32)
	tooBigKey = append(tooBigKey, 0, 0, 0)
	overflow := append([]byte{recordVersion, 0, 1}, bytes.Repeat([]byte{0xff}, 10)...)
	overflow = append(overflow, 0x7f, 0, 0)
	tests := []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version only", []byte{recordVersion}},
		{"version 0", append([]byte{0}, valid[1:]...)},
		{"version 3", append([]byte{3}, valid[1:]...)},
		{"no key id", []byte{recordVersion, 0}},
		{"key id above uint32", tooBigKey},
		{"unterminated key id", []byte{recordVersion, 0, 0x80, 0x80}},
		{"no created", []byte{recordVersion, 0, 1}},
		{"created overflows", overflow},
		{"no expires", []byte{recordVersion, 0, 1, 2}},
		{"no fingerprint length", []byte{recordVersion, 0, 1, 2, 0}},
		{"fingerprint cut", []byte{recordVersion, 0, 1, 2, 0, 32, 1, 2, 3}},
		{"unknown format", append([]byte{recordVersion, 200}, valid[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r, err := UnmarshalRecord("t", tt.b); err == nil {
				t.Errorf("UnmarshalRecord(%x) = %+v, want error", tt.b, r)
			}
		})
	}

	// Every prefix that cuts into the header or the fingerprint is an error;
	// a cut ciphertext cannot be seen here, and fails authentication on Open.
	header := len(valid) - len("ciphertext")
	for n := 0; n < len(valid); n++ {
		_, err := UnmarshalRecord("t", valid[:n])
		if n < header && err == nil {
			t.Errorf("UnmarshalRecord(first %d of %d bytes) succeeded", n, len(valid))
		}
	}
}

func FuzzUnmarshalRecord(f *testing.F) {
	f.Add(MarshalRecord(Record{KeyID: 1, Ciphertext: bytes.Repeat([]byte{1}, 44), Fingerprint: bytes.Repeat([]byte{2}, 32), Created: time.UnixMilli(1_764_224_000_000)}))
	f.Add(MarshalRecord(Record{KeyID: math.MaxUint32, Created: time.UnixMilli(-1), Expires: time.UnixMilli(1), Format: FormatOpaque}))
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		r, err := UnmarshalRecord("tok", b)
		if !bytes.Equal(in, b) {
			t.Fatalf("UnmarshalRecord modified its input")
		}
		if err != nil {
			return
		}
		// What decodes must survive a re-encode unchanged.
		r2, err := UnmarshalRecord("tok", MarshalRecord(r))
		if err != nil {
			t.Fatalf("UnmarshalRecord(MarshalRecord(%+v)): %v", r, err)
		}
		if !equalRecord(r, r2) {
			t.Fatalf("re-encoded record differs:\n got %+v\nwant %+v", r2, r)
		}
		if int(r.Format) >= len(formatNames) {
			t.Fatalf("UnmarshalRecord accepted unknown format %d", r.Format)
		}
	})
}

// TestRecordV2Binds: a RecordV2 ciphertext opens only with the format, key
// id, expiry, fingerprint and token it was sealed with (without that, an
// edit of the store could swap two records' fingerprints unnoticed).
func TestRecordV2Binds(t *testing.T) {
	k := mustKeyring(t, NewKeyringFile())
	created := time.UnixMilli(1_764_224_000_000).UTC()
	rec := Record{Token: "4111114821931111", Fingerprint: k.Fingerprint("pan:6:4", "4111111111111111"),
		Created: created, Expires: created.Add(time.Hour), Format: FormatPAN}
	k.SealRecord(&rec, "4111111111111111")
	if rec.Version != RecordV2 || rec.KeyID != k.Primary() {
		t.Fatalf("SealRecord set version %d, key %d; want %d, %d", rec.Version, rec.KeyID, RecordV2, k.Primary())
	}
	// Through the codec, as a store keeps it.
	stored, err := UnmarshalRecord(rec.Token, MarshalRecord(rec))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.OpenRecord(stored); err != nil || got != "4111111111111111" {
		t.Fatalf("OpenRecord(stored) = %q, %v; want the PAN", Mask(got), err)
	}
	edits := map[string]func(r *Record){
		"token":          func(r *Record) { r.Token = "4111119999991111" },
		"format":         func(r *Record) { r.Format = FormatDigits },
		"expiry moved":   func(r *Record) { r.Expires = r.Expires.Add(time.Hour) },
		"expiry gone":    func(r *Record) { r.Expires = time.Time{} },
		"fingerprint":    func(r *Record) { r.Fingerprint = k.Fingerprint("pan:6:4", "5555555555554444") },
		"no fingerprint": func(r *Record) { r.Fingerprint = nil },
		"downgraded":     func(r *Record) { r.Version = RecordV1 },
	}
	for name, edit := range edits {
		r := stored
		edit(&r)
		if got, err := k.OpenRecord(r); !errors.Is(err, ErrDecrypt) {
			t.Errorf("OpenRecord after an edit of the %s = %q, %v; want ErrDecrypt", name, Mask(got), err)
		}
	}
	// Created is not bound: nothing depends on it.
	r := stored
	r.Created = r.Created.Add(time.Minute)
	if _, err := k.OpenRecord(r); err != nil {
		t.Errorf("OpenRecord with another Created: %v", err)
	}
	// A version 1 record (token only) still opens.
	kid, ct := k.Seal(rec.Token, "4111111111111111")
	old := Record{Token: rec.Token, KeyID: kid, Ciphertext: ct, Version: RecordV1, Format: FormatDigits}
	if got, err := k.OpenRecord(old); err != nil || got != "4111111111111111" {
		t.Errorf("OpenRecord(version 1) = %q, %v", Mask(got), err)
	}
}

func TestResealApplies(t *testing.T) {
	v1 := Record{KeyID: 1, Version: RecordV1}
	tests := []struct {
		name      string
		cur, next Record
		from      uint32
		want      bool
	}{
		{"key change", v1, Record{KeyID: 2, Version: RecordV2}, 1, true},
		{"upgrade under one key", v1, Record{KeyID: 1, Version: RecordV2}, 1, true},
		{"version 0 is 1", Record{KeyID: 1}, Record{KeyID: 1, Version: RecordV2}, 1, true},
		{"already there", Record{KeyID: 1, Version: RecordV2}, Record{KeyID: 1, Version: RecordV2}, 1, false},
		{"other from key", v1, Record{KeyID: 2, Version: RecordV2}, 2, false},
	}
	for _, tt := range tests {
		if got := ResealApplies(tt.cur, tt.next, tt.from); got != tt.want {
			t.Errorf("%s: ResealApplies = %v, want %v", tt.name, got, tt.want)
		}
	}
}
