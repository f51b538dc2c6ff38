package vault

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by the vault and by every [Store]. Callers test
// them with errors.Is; proxy maps them to HTTP statuses in one place.
var (
	// ErrNotFound: no record (or session) under that key, or it has expired.
	ErrNotFound = errors.New("not found")
	// ErrInvalidValue: the value is not what the field's format accepts
	// (for example a PAN that is not 12 to 19 digits).
	ErrInvalidValue = errors.New("invalid value")
	// ErrInvalidToken: the string cannot be a token of any known format.
	ErrInvalidToken = errors.New("invalid token")
	// ErrCollision: no free token was found after the retry budget: the
	// format's token space (for a short digits value, or within one card's
	// bound values) is used up by live records.
	ErrCollision = errors.New("token space exhausted")
	// ErrUnbound: a short-value token (see [IsShortToken]) was asked to
	// reveal on its own. Such a token is unique only among the values
	// bound to one card token, so it reveals only together with that card
	// token ([Vault.RevealBound]); a lone one would be a guess among a
	// thousand.
	ErrUnbound = errors.New("a short-value token reveals only with the card token it is bound to")
	// ErrUnavailable: the store cannot serve or commit right now.
	ErrUnavailable = errors.New("store unavailable")
	// ErrStalled: a write did not commit within the store's deadline (a
	// stalled disk, a hung server); always wrapped with ErrUnavailable.
	// Whether such a write took effect is unknown: it may still commit.
	ErrStalled = errors.New("store stalled")
	// ErrFull: a store with a cap on its records (the volatile store,
	// limits.volatile_records) holds as many as it may, even after expired
	// ones are reclaimed: nothing was written. It wraps ErrUnavailable, so
	// callers that map that to 503 do so; test for it with errors.Is to
	// name the cause.
	ErrFull = fmt.Errorf("volatile store full: %w", ErrUnavailable)
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store closed")
	// ErrUnknownKey: a record names a key version the keyring does not hold.
	ErrUnknownKey = errors.New("unknown key version")
	// ErrDecrypt: authenticated decryption failed (tampered or mismatched record).
	ErrDecrypt = errors.New("decryption failed")
	// ErrVaultFull: the durable store has reached its quota (limits.vault_bytes):
	// no new record is written; tokens already issued still resolve.
	ErrVaultFull = errors.New("vault quota reached")
	// ErrAmbiguous: both the durable and the volatile store hold a record
	// under the token, so it stands for two values; it is refused rather
	// than answered with either.
	ErrAmbiguous = errors.New("token held by two stores")
	// ErrMismatch: a record found by its fingerprint does not hold the
	// value that fingerprint was computed from: the store was edited, so
	// its token is not handed out.
	ErrMismatch = errors.New("record found by fingerprint does not hold the value")
	// ErrRevealNotAllowed: the token's [RevealPolicy] does not name the
	// route it was asked to reveal through.
	ErrRevealNotAllowed = errors.New("token may not reveal through this route")
	// ErrRevealWindowClosed: the token's [RevealPolicy] window has ended.
	ErrRevealWindowClosed = errors.New("token's reveal window has closed")
	// ErrRevealsExhausted: the token has revealed as many times as its
	// [RevealPolicy] allows.
	ErrRevealsExhausted = errors.New("token has no reveals left")
	// ErrKeyCheck: the keyring does not hold the keys the vault's key
	// check values were recorded for (see [VerifyKeyring]).
	ErrKeyCheck = errors.New("keyring does not match the vault")
)

// RevealRefused reports whether err is a refusal by the token's
// [RevealPolicy] (route, window or count): the token exists, and the
// answer names why it did not reveal.
func RevealRefused(err error) bool {
	return errors.Is(err, ErrRevealNotAllowed) || errors.Is(err, ErrRevealWindowClosed) || errors.Is(err, ErrRevealsExhausted)
}
