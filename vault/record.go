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
	Ciphertext  []byte    // AES-256-GCM nonce || ciphertext || tag; see Version for the associated data
	Fingerprint []byte    // HMAC-SHA256 of the value; nil for unique (non-convergent) tokens
	Created     time.Time // transaction_time
	Expires     time.Time // zero: never
	Format      Format
	// Policy limits where and how often the token reveals; the zero
	// policy (none) for most records. Only RecordV3 records carry one.
	Policy RevealPolicy
	// Version says what the ciphertext's associated data binds:
	// RecordV1 (or 0, the same) the token only; RecordV2 the token, key
	// id, format, expiry and fingerprint, so an edit of any of them in the
	// store makes the record fail to open; RecordV3 all that and the
	// reveal policy. New records are RecordV3 if they have a policy,
	// RecordV2 if not; a rekey upgrades older ones.
	Version uint8
}

// Record versions (the first byte of [MarshalRecord]'s encoding).
const (
	RecordV1 = 1 // associated data: the token
	RecordV2 = 2 // associated data: see [Record.AssociatedData]
	RecordV3 = 3 // RecordV2's, and the reveal policy
	// RecordVersion is the version new records without a reveal policy
	// are sealed at, and the least a rekey leaves; records with a policy
	// are sealed at RecordV3.
	RecordVersion = RecordV2
)

// version is r's record version, with 0 read as RecordV1.
func (r Record) version() uint8 { return max(r.Version, RecordV1) }

// aadLabel and aadLabelV3 open the version 2 and 3 associated data, so
// that neither can be taken for another message under the same key, nor
// for the other.
const (
	aadLabel   = "tok record v2\x00"
	aadLabelV3 = "tok record v3\x00"
)

// AssociatedData returns the AEAD associated data r's ciphertext is sealed
// with: for RecordV1 the token alone; for RecordV2 a label, the format,
// the key id, the expiry (Unix milliseconds, 0 for none, as stores keep
// it), the token (length-prefixed) and the fingerprint; for RecordV3
// another label, the same fields with the fingerprint length-prefixed
// too, and the policy's [MarshalPolicy] encoding. Created is not bound:
// nothing is decided by it.
func (r Record) AssociatedData() []byte {
	ver := r.version()
	if ver == RecordV1 {
		return []byte(r.Token)
	}
	var policy []byte
	if ver >= RecordV3 {
		policy = MarshalPolicy(r.Policy)
	}
	b := make([]byte, 0, len(aadLabel)+1+4+8+2*binary.MaxVarintLen64+len(r.Token)+len(r.Fingerprint)+len(policy))
	if ver >= RecordV3 {
		b = append(b, aadLabelV3...)
	} else {
		b = append(b, aadLabel...)
	}
	b = append(b, byte(r.Format))
	b = binary.BigEndian.AppendUint32(b, r.KeyID)
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixMilli()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(exp))
	b = binary.AppendUvarint(b, uint64(len(r.Token)))
	b = append(b, r.Token...)
	if ver < RecordV3 {
		return append(b, r.Fingerprint...)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Fingerprint)))
	b = append(b, r.Fingerprint...)
	return append(b, policy...)
}

// ResealApplies is the compare-and-swap rule of [Store.Reseal], shared by
// every store: cur, the stored record, is replaced by next's key id,
// ciphertext and version only if cur is sealed under fromKeyID and is not
// already at next's key id and version or later. The second condition lets
// a rekey upgrade a RecordV1 record under the primary key while keeping a
// record deleted and written again meanwhile (sealed at RecordV2 under the
// primary) from being overwritten with an old value's ciphertext.
func ResealApplies(cur, next Record, fromKeyID uint32) bool {
	if cur.KeyID != fromKeyID {
		return false
	}
	return cur.KeyID != next.KeyID || cur.version() < next.version()
}

// Expired reports whether r has an expiry at or before now.
func (r Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// MarshalRecord encodes r's value (everything but the token, which is the
// key) in the compact binary form stores keep:
//
//	version(1: RecordV1, RecordV2 or RecordV3) format(1) keyID(uvarint) created(varint ms) expires(varint ms, 0 none)
//	len(fingerprint)(1) fingerprint [RecordV3: len(policy)(uvarint) policy] ciphertext
//
// where policy is [MarshalPolicy]'s encoding. Records without a policy
// keep the RecordV2 form.
func MarshalRecord(r Record) []byte {
	var policy []byte
	if r.version() >= RecordV3 {
		policy = MarshalPolicy(r.Policy)
	}
	b := make([]byte, 0, 2+4*binary.MaxVarintLen64+1+len(r.Fingerprint)+len(policy)+len(r.Ciphertext))
	b = append(b, r.version(), byte(r.Format))
	b = binary.AppendUvarint(b, uint64(r.KeyID))
	b = binary.AppendVarint(b, r.Created.UnixMilli())
	var exp int64
	if !r.Expires.IsZero() {
		exp = r.Expires.UnixMilli()
	}
	b = binary.AppendVarint(b, exp)
	b = append(b, byte(len(r.Fingerprint)))
	b = append(b, r.Fingerprint...)
	if r.version() >= RecordV3 {
		b = binary.AppendUvarint(b, uint64(len(policy)))
		b = append(b, policy...)
	}
	return append(b, r.Ciphertext...)
}

var errCorrupt = errors.New("corrupt record")

// UnmarshalRecord decodes a value written by [MarshalRecord]. It copies
// what it keeps, so b may be reused (bbolt values die with their transaction).
func UnmarshalRecord(token string, b []byte) (Record, error) {
	if len(b) < 2 || b[0] < RecordV1 || b[0] > RecordV3 {
		return Record{}, fmt.Errorf("%w: token record version", errCorrupt)
	}
	if int(b[1]) >= len(formatNames) {
		return Record{}, fmt.Errorf("%w: token format", errCorrupt)
	}
	r := Record{Token: token, Format: Format(b[1]), Version: b[0]}
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
	b = b[1+fl:]
	if r.Version >= RecordV3 {
		pl, n := binary.Uvarint(b)
		if n <= 0 || pl > uint64(len(b)-n) {
			return Record{}, fmt.Errorf("%w: reveal policy length", errCorrupt)
		}
		p, err := UnmarshalPolicy(b[n : n+int(pl)])
		if err != nil {
			return Record{}, err
		}
		r.Policy, b = p, b[n+int(pl):]
	}
	r.Ciphertext = append([]byte(nil), b...)
	return r, nil
}
