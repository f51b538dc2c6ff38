package vault

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// KeyCheckStore is implemented by durable stores that keep key check
// values (bolt in its meta bucket, postgres in its key_checks table): the
// record, per key, of which keyring the vault's records were sealed with.
// The memory store holds nothing across restarts and does not implement
// it. Methods are safe for concurrent use and durable when they return.
type KeyCheckStore interface {
	// KeyChecks returns every recorded check value by name
	// ([FingerprintCheckName], [DataKeyCheckName]); an empty map if none.
	KeyChecks(ctx context.Context) (map[string][]byte, error)
	// AddKeyChecks records each value of checks whose name has none yet,
	// atomically, leaving recorded ones as they are (a replica racing to
	// record another value for the same name loses), and returns every
	// check value recorded afterwards.
	AddKeyChecks(ctx context.Context, checks map[string][]byte) (map[string][]byte, error)
	// DeleteKeyCheck forgets the check value of name; no error if absent.
	// Only a retired data key version's check is ever deleted.
	DeleteKeyCheck(ctx context.Context, name string) error
}

// VerifyKeyring proves that keys is the keyring the vault in store was
// sealed with, and records the
// check values of keys the vault has not seen yet (a new vault, a rotated
// version). It returns an error wrapping [ErrKeyCheck], naming every
// problem and what to do, when
//   - the fingerprint key, or the key of a recorded data key version,
//     differs from the recorded one (a stale or foreign keyring, or a
//     rotation of a stale copy that made another key under the same
//     version), or
//   - a data key version with a recorded check is missing from keys:
//     records may use it ("tok keys retire" forgets a version's check
//     once no record uses it).
//
// Nothing is recorded when it refuses. A store that is not a
// [KeyCheckStore] passes unchecked.
func VerifyKeyring(ctx context.Context, store Store, keys *Keyring) error {
	ks, ok := store.(KeyCheckStore)
	if !ok {
		return nil
	}
	recorded, err := ks.KeyChecks(ctx)
	if err != nil {
		return fmt.Errorf("read key check values: %w", err)
	}
	have := keys.CheckValues()
	if err := compareChecks(recorded, have); err != nil {
		return err
	}
	missing := map[string][]byte{}
	for name, v := range have {
		if _, ok := recorded[name]; !ok {
			missing[name] = v
		}
	}
	if len(missing) == 0 {
		return nil
	}
	recorded, err = ks.AddKeyChecks(ctx, missing)
	if err != nil {
		return fmt.Errorf("record key check values: %w", err)
	}
	// Another replica may have recorded other values meanwhile.
	return compareChecks(recorded, have)
}

// compareChecks returns the problems of a keyring whose check values are
// have against a vault that recorded recorded.
func compareChecks(recorded, have map[string][]byte) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(recorded)) {
		want := recorded[name]
		got, ok := have[name]
		switch {
		case !ok && name == FingerprintCheckName:
			errs = append(errs, errors.New("the keyring has no fingerprint key")) // NewKeyring prevents this
		case !ok:
			errs = append(errs, fmt.Errorf("the keyring lacks %s, which this vault's records may use: restore the keyring that has it (a backup of the keyring file), or, if no record uses it any more, retire it with \"tok keys retire\" from a keyring that still has it", describeCheck(name)))
		case subtle.ConstantTimeCompare(got, want) != 1:
			errs = append(errs, fmt.Errorf("%s in the keyring is not the key this vault recorded: the keyring is stale, foreign, or was rotated from a stale copy (which makes a different key under the same version); put back the keyring this vault was used with", describeCheck(name)))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrKeyCheck, errors.Join(errs...))
}

// describeCheck names a check value for an operator.
func describeCheck(name string) string {
	if v, ok := strings.CutPrefix(name, "data:"); ok {
		if _, err := strconv.ParseUint(v, 10, 32); err == nil {
			return "data key version " + v
		}
	}
	if name == FingerprintCheckName {
		return "the fingerprint key"
	}
	return "key " + strconv.Quote(name)
}

// ForgetKeyVersion deletes the recorded check value of data key version v
// from store, so that a keyring without v is accepted again. Call it only
// once no record uses v (tok keys retire checks that first).
func ForgetKeyVersion(ctx context.Context, store Store, v uint32) error {
	ks, ok := store.(KeyCheckStore)
	if !ok {
		return nil
	}
	return ks.DeleteKeyCheck(ctx, DataKeyCheckName(v))
}

// VerifyKeyring is [VerifyKeyring] on v's durable store and keyring.
func (v *Vault) VerifyKeyring(ctx context.Context) error {
	return VerifyKeyring(ctx, v.durable, v.keys)
}

// ForgetKeyVersion is [ForgetKeyVersion] on v's durable store.
func (v *Vault) ForgetKeyVersion(ctx context.Context, ver uint32) error {
	return ForgetKeyVersion(ctx, v.durable, ver)
}
