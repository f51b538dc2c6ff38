package vault

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// RevealToMe is the route name a [RevealPolicy] gives the full-number
// reveal of the /@me endpoint; every other name is an egress route's.
const RevealToMe = "@me"

// RevealPolicy limits where and how often a token reveals. It is sealed
// into its record ([RecordV3]): an edit of it in the store makes the record
// fail to open. The zero value is no policy: the token reveals anywhere,
// any number of times.
type RevealPolicy struct {
	// Routes, if not empty, are the only routes (egress route names, or
	// [RevealToMe]) the token reveals through, sorted.
	Routes []string
	// MaxReveals, if not zero, is how many times the token reveals; the
	// store counts them ([RevealCounter]).
	MaxReveals uint32
	// Until, if not zero, is the instant from which the token no longer
	// reveals (kept at millisecond precision, as stores keep times).
	Until time.Time
}

// IsZero reports whether p is no policy.
func (p RevealPolicy) IsZero() bool {
	return len(p.Routes) == 0 && p.MaxReveals == 0 && p.Until.IsZero()
}

// allows reports whether p lets the token reveal through route.
func (p RevealPolicy) allows(route string) bool {
	return len(p.Routes) == 0 || slices.Contains(p.Routes, route)
}

// check returns the error that refuses a reveal through route at now, or
// nil: the route first, then the window. The count is the store's.
func (p RevealPolicy) check(route string, now time.Time) error {
	switch {
	case !p.allows(route):
		return ErrRevealNotAllowed
	case !p.Until.IsZero() && !now.Before(p.Until):
		return ErrRevealWindowClosed
	}
	return nil
}

// maxPolicyRoutes and maxRouteName bound what [UnmarshalPolicy] accepts.
const (
	maxPolicyRoutes = 255
	maxRouteName    = 255
)

// MarshalPolicy is the canonical encoding of p, as records bind it and
// stores keep it (empty for the zero policy):
//
//	maxReveals(uvarint) until(varint ms, 0 none) count(1) {len(1) name}* (names sorted)
//
// Names are sorted, so one policy has one encoding whatever order it was
// written in.
func MarshalPolicy(p RevealPolicy) []byte {
	if p.IsZero() {
		return nil
	}
	routes := slices.Clone(p.Routes)
	slices.Sort(routes)
	routes = slices.Compact(routes)
	b := make([]byte, 0, 2*binary.MaxVarintLen64+1+len(routes)*8)
	b = binary.AppendUvarint(b, uint64(p.MaxReveals))
	var until int64
	if !p.Until.IsZero() {
		until = p.Until.UnixMilli()
	}
	b = binary.AppendVarint(b, until)
	b = append(b, byte(len(routes)))
	for _, r := range routes {
		b = append(b, byte(len(r)))
		b = append(b, r...)
	}
	return b
}

// UnmarshalPolicy decodes what [MarshalPolicy] wrote; empty b is the zero
// policy. It rejects anything MarshalPolicy would not have written (names
// out of order, trailing bytes), so a policy has one encoding.
func UnmarshalPolicy(b []byte) (RevealPolicy, error) {
	var p RevealPolicy
	if len(b) == 0 {
		return p, nil
	}
	count, n := binary.Uvarint(b)
	if n <= 0 || count > 1<<32-1 {
		return RevealPolicy{}, fmt.Errorf("%w: reveal policy count", errCorrupt)
	}
	p.MaxReveals, b = uint32(count), b[n:]
	until, n := binary.Varint(b)
	if n <= 0 || len(b) < n+1 {
		return RevealPolicy{}, fmt.Errorf("%w: reveal policy window", errCorrupt)
	}
	if until != 0 {
		p.Until = time.UnixMilli(until).UTC()
	}
	b = b[n:]
	routes := int(b[0])
	b = b[1:]
	for range routes {
		if len(b) < 1 || len(b) < 1+int(b[0]) || b[0] == 0 {
			return RevealPolicy{}, fmt.Errorf("%w: reveal policy route", errCorrupt)
		}
		name := string(b[1 : 1+int(b[0])])
		if len(p.Routes) > 0 && name <= p.Routes[len(p.Routes)-1] {
			return RevealPolicy{}, fmt.Errorf("%w: reveal policy routes out of order", errCorrupt)
		}
		p.Routes = append(p.Routes, name)
		b = b[1+int(b[0]):]
	}
	if len(b) != 0 || p.IsZero() {
		return RevealPolicy{}, fmt.Errorf("%w: reveal policy", errCorrupt)
	}
	return p, nil
}

// checkPolicy checks that a spec's policy can be kept: route names that
// fit the encoding, and a count or a window only on a unique durable
// value, the only kind a count can be kept for and a window means the
// same to every holder of the token.
func (s Spec) checkPolicy() error {
	if len(s.RevealTo) > maxPolicyRoutes {
		return fmt.Errorf("vault: more than %d reveal routes", maxPolicyRoutes)
	}
	for _, r := range s.RevealTo {
		if r == "" || len(r) > maxRouteName {
			return fmt.Errorf("vault: a reveal route name must be 1 to %d bytes", maxRouteName)
		}
	}
	if s.RevealWindow < 0 {
		return fmt.Errorf("vault: negative reveal window")
	}
	if (s.MaxReveals > 0 || s.RevealWindow > 0) && (!s.Unique || s.Volatile || s.Bound) {
		return fmt.Errorf("vault: max reveals and a reveal window need a unique durable value")
	}
	if s.Bound && len(s.RevealTo) > 0 {
		return fmt.Errorf("vault: a bound value reveals under its card's policy, not its own")
	}
	return nil
}

// policy is the policy of a record of s created at now.
func (s Spec) policy(now time.Time) RevealPolicy {
	p := RevealPolicy{MaxReveals: s.MaxReveals}
	if len(s.RevealTo) > 0 {
		p.Routes = slices.Clone(s.RevealTo)
		slices.Sort(p.Routes)
		p.Routes = slices.Compact(p.Routes)
	}
	if s.RevealWindow > 0 {
		p.Until = time.UnixMilli(now.Add(s.RevealWindow).UnixMilli()).UTC()
	}
	return p
}

// RevealCounter is a [Store] that counts reveals, for tokens whose
// [RevealPolicy] has a MaxReveals: vault/bolt, vault/postgres and
// vault/memory implement it. Methods are safe for concurrent use; a write
// returns only once it is durable for that store, like every write.
type RevealCounter interface {
	// CountReveal adds one to token's reveal count, if it is below max,
	// and returns the new count: one atomic check-and-increment. At max
	// it counts nothing and returns max and ErrRevealsExhausted; for a
	// token with no record, ErrNotFound. Deleting a token deletes its
	// count. max must be positive.
	CountReveal(ctx context.Context, token string, max uint32) (uint32, error)
	// UncountReveal takes one back from token's count (never below 0):
	// for a reveal that never left tok. ErrNotFound for a token with no
	// record.
	UncountReveal(ctx context.Context, token string) error
	// Reveals returns token's reveal count (0 if none counted yet).
	// ErrNotFound for a token with no record.
	Reveals(ctx context.Context, token string) (uint32, error)
}

// RevealFor is [Vault.Reveal] for route (an egress route's name, or
// [RevealToMe]) under the token's [RevealPolicy]: ErrRevealNotAllowed if
// the policy names other routes, ErrRevealWindowClosed once its window
// has ended, and, for a policy with a MaxReveals, ErrRevealsExhausted when
// the store's count ([RevealCounter]) has reached it. The route and the
// window are checked before the count, so a refused reveal spends none;
// a reveal that is counted and then never leaves tok is given back with
// [Vault.UncountReveal]. The policy is read from the opened record, so an
// edited one fails to open rather than being obeyed.
func (v *Vault) RevealFor(ctx context.Context, token, route string) (Revealed, error) {
	rv, err := v.Reveal(ctx, token)
	if err != nil {
		return Revealed{}, err
	}
	if err := rv.Policy.check(route, v.now()); err != nil {
		return Revealed{}, err
	}
	if rv.Policy.MaxReveals == 0 {
		return rv, nil
	}
	c, err := v.counter()
	if err != nil {
		return Revealed{}, err
	}
	n, err := c.CountReveal(ctx, token, rv.Policy.MaxReveals)
	if err != nil {
		return Revealed{}, countError(err)
	}
	rv.Reveals = n
	return rv, nil
}

// RevealBoundFor is [Vault.RevealBound] for route: the value bound to
// card reveals only where card's policy lets card reveal (route and
// window), since it is only ever sent with it. It spends none of card's
// count: the card's own reveal does.
func (v *Vault) RevealBoundFor(ctx context.Context, card, token, route string) (Revealed, error) {
	if err := checkBoundPair(card, token); err != nil {
		return Revealed{}, err
	}
	crv, err := v.Reveal(ctx, card)
	if err != nil {
		return Revealed{}, err
	}
	if err := crv.Policy.check(route, v.now()); err != nil {
		return Revealed{}, err
	}
	return v.RevealBound(ctx, card, token)
}

// UncountReveal gives back one reveal [Vault.RevealFor] counted for
// token: for a request that never left tok (refused later, or its
// provider could not be reached).
func (v *Vault) UncountReveal(ctx context.Context, token string) error {
	c, err := v.counter()
	if err != nil {
		return err
	}
	if err := c.UncountReveal(ctx, token); err != nil {
		return countError(err)
	}
	return nil
}

// Reveals returns how many times token has revealed, for a token whose
// policy has a MaxReveals (0 for any other).
func (v *Vault) Reveals(ctx context.Context, rec Record) (uint32, error) {
	if rec.Policy.MaxReveals == 0 {
		return 0, nil
	}
	c, err := v.counter()
	if err != nil {
		return 0, err
	}
	n, err := c.Reveals(ctx, rec.Token)
	if err != nil {
		return 0, countError(err)
	}
	return n, nil
}

// counter returns the durable store's reveal counter. Only unique durable
// tokens have a count (Spec.checkPolicy), so that is where it is kept.
func (v *Vault) counter() (RevealCounter, error) {
	c, ok := v.durable.(RevealCounter)
	if !ok {
		return nil, fmt.Errorf("vault: the store does not count reveals: %w", ErrUnavailable)
	}
	return c, nil
}

// countError wraps a counter's error with context, keeping the sentinels
// callers map to statuses.
func countError(err error) error {
	if errors.Is(err, ErrRevealsExhausted) || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("count reveal: %w", err)
}
