package vault

import (
	"context"
	"errors"
)

// A bound value (a CVC) is stored under its card's token, which is known
// only once the card's record is committed: done in turn, a checkout waits
// for the durable commit and then for the volatile insert. When the card
// tokens drawn for the commit are all but certain to be the ones it keeps,
// the bound values are inserted under them while the commit runs (an
// earlyBound), and a bound value whose card ended with another token (a
// collision, a concurrent insert of the same card) is deleted and inserted
// again under the token the card got. A bound value never stays bound to a
// token other than its card's: the early record is removed, or the
// tokenization fails.

// earlyBound is a bound insert started beside the durable commit.
type earlyBound struct {
	cards  []string // card token each bound request was inserted under, by request index
	shorts []string // the bound value's token, by request index
	idx    []int    // the bound requests
	done   chan struct{}
	err    error
}

// bindsDurable reports whether every bound request of bound is bound to a
// durable value: only those are committed while the bound values are.
func bindsDurable(reqs []Request, bound []int) bool {
	for _, i := range bound {
		if reqs[reqs[i].BindTo].Spec.Volatile {
			return false
		}
	}
	return len(bound) > 0
}

// draftTokens returns, by request index, the token each request of idx
// will have if the insert of recs (the drafts of pending) stores it: the
// token found for a known value, the drafted token for a value that cannot
// converge on another record (no fingerprint) or was looked up and not
// found (only a concurrent insert of the same value makes it converge),
// and "" for a convergent value the store was not asked about first.
func draftTokens(n int, idx []int, tokens []string, pending []int, recs []Record, fps map[int][]byte, skipFind bool) []string {
	out := make([]string, n)
	for _, i := range idx {
		out[i] = tokens[i]
	}
	for j, i := range pending {
		if fps[i] == nil || !skipFind {
			out[i] = recs[j].Token
		} else {
			out[i] = ""
		}
	}
	return out
}

// startBound starts inserting the bound requests of bound under the drafted
// card tokens cards, or returns nil if one of those cards has no draft.
func (v *Vault) startBound(ctx context.Context, reqs []Request, values []string, bound []int, cards []string) *earlyBound {
	for _, i := range bound {
		if cards[reqs[i].BindTo] == "" {
			return nil
		}
	}
	e := &earlyBound{cards: make([]string, len(reqs)), shorts: make([]string, len(reqs)), idx: bound, done: make(chan struct{})}
	for _, i := range bound {
		e.cards[i] = cards[reqs[i].BindTo]
	}
	go func() {
		defer close(e.done)
		e.err = v.tokenizeBound(ctx, reqs, values, bound, func(i int) string { return e.cards[i] }, e.shorts)
	}()
	return e
}

// settle waits for the early insert (nil: none was started) and keeps
// each bound value whose card got the drafted token, filling tokens. It
// deletes the others' early records and returns those requests, to be
// inserted again under their card's token; without an early insert, every
// request of bound.
func (e *earlyBound) settle(ctx context.Context, volatile Store, reqs []Request, bound []int, tokens []string) ([]int, error) {
	if e == nil {
		return bound, nil
	}
	<-e.done
	if e.err != nil {
		e.remove(ctx, volatile)
		return nil, e.err
	}
	var again []int
	for _, i := range e.idx {
		if e.cards[i] == tokens[reqs[i].BindTo] {
			tokens[i] = e.shorts[i]
			continue
		}
		if err := volatile.Delete(ctx, BoundKey(e.cards[i], e.shorts[i])); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		again = append(again, i)
	}
	return again, nil
}

// abandon waits for the early insert (if any) and removes what it stored:
// the tokenization failed.
func (e *earlyBound) abandon(ctx context.Context, volatile Store) {
	if e == nil {
		return
	}
	<-e.done
	e.remove(ctx, volatile)
}

// remove deletes the early records stored, as far as it can: the caller
// is failing the tokenization, and a record left behind holds a value whose
// token nobody was given, until its ttl.
func (e *earlyBound) remove(ctx context.Context, volatile Store) {
	for _, i := range e.idx {
		if e.shorts[i] != "" {
			volatile.Delete(ctx, BoundKey(e.cards[i], e.shorts[i])) //nolint:errcheck // best effort on a failing path; the record expires with its ttl
		}
	}
}
