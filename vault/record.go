package vault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record is what the vault keeps for one token. It never holds the
// plaintext value.
type Record struct {
	Token       string
	KeyID       uint32    // data key version that sealed Ciphertext
	Ciphertext  []byte    // AES-256-GCM nonce || ciphertext || tag, token as associated data
	Fingerprint []byte    // HMAC-SHA256 of the value; nil for unique (non-convergent) tokens
	Created     time.Time // transaction_time
	Expires     time.Time // zero: never
	Format      Format
}

// Expired reports whether r has an expiry at or before now.
func (r Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

const recordVersion = 1

// MarshalRecord encodes r's value (everything but the token, which is the
// key) in the compact binary form stores keep:
//
//	version(1) format(1) keyID(uvarint) created(varint ms) expires(varint ms, 0 none)
//	len(fingerprint)(1) fingerprint ciphertext
func MarshalRecord(r Record) []byte {
	b := make([]byte, 0, 2+3*binary.MaxVarintLen64+1+len(r.Fingerprint)+len(r.Ciphertext))
	b = append(b, recordVersion, byte(r.Format))
	b = binary.AppendUvarint(b, uint64(r.KeyID))
	b = binary.AppendVarint(b, r.Created.UnixMilli())
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixMilli()
	}
	b = binary.AppendVarint(b, exp)
	b = append(b, byte(len(r.Fingerprint)))
	b = append(b, r.Fingerprint...)
	return append(b, r.Ciphertext...)
}

var errCorrupt = errors.New("corrupt record")

// UnmarshalRecord decodes a value written by [MarshalRecord]. It copies
// what it keeps, so b may be reused (bbolt values die with their transaction).
func UnmarshalRecord(token string, b []byte) (Record, error) {
	if len(b) < 2 || b[0] != recordVersion {
		return Record{}, fmt.Errorf("%w: token record version", errCorrupt)
	}
	if int(b[1]) >= len(formatNames) {
		return Record{}, fmt.Errorf("%w: token format", errCorrupt)
	}
	r := Record{Token: token, Format: Format(b[1])}
	b = b[2:]
	kid, n := binary.Uvarint(b)
	if n <= 0 || kid > 1<<32-1 {
		return Record{}, errCorrupt
	}
	r.KeyID, b = uint32(kid), b[n:]
	created, n := binary.Varint(b)
	if n <= 0 {
		return Record{}, errCorrupt
	}
	r.Created, b = time.UnixMilli(created).UTC(), b[n:]
	exp, n := binary.Varint(b)
	if n <= 0 || len(b) < n+1 {
		return Record{}, errCorrupt
	}
	if exp != 0 {
		r.Expires = time.UnixMilli(exp).UTC()
	}
	b = b[n:]
	fl := int(b[0])
	if len(b) < 1+fl {
		return Record{}, errCorrupt
	}
	if fl > 0 {
		r.Fingerprint = append([]byte(nil), b[1:1+fl]...)
	}
	r.Ciphertext = append([]byte(nil), b[1+fl:]...)
	return r, nil
}
