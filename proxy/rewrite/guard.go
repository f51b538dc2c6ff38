package rewrite

import (
	"fmt"
	"slices"
)

// GuardMode says what the guard does with a card-like number found outside
// the configured fields. The zero value is [GuardReject].
type GuardMode int

// Guard modes.
const (
	// GuardReject refuses the body with [CodeCardNumberDetected] (HTTP 422),
	// naming the path of the first hit. It is the default.
	GuardReject GuardMode = iota
	// GuardTokenize hands every hit to the replace callback, marked with
	// Field -1, so the caller tokenizes it in place.
	GuardTokenize
	// GuardOff disables the guard.
	GuardOff
	// GuardReport is the rollout mode of the inbound proxy: it decides as
	// GuardReject, records what would have been refused, and then acts as
	// the operator chose (forward unchanged, or tokenize). A [Rewriter]
	// does not take it: the proxy builds a reject rewriter to decide and
	// an off or tokenize one to act.
	GuardReport
)

// ParseGuardMode maps the config spelling ("reject", "tokenize", "off",
// "report"; "" means reject) to a GuardMode.
func ParseGuardMode(s string) (GuardMode, bool) {
	switch s {
	case "", "reject":
		return GuardReject, true
	case "tokenize":
		return GuardTokenize, true
	case "off":
		return GuardOff, true
	case "report":
		return GuardReport, true
	}
	return 0, false
}

// String returns the config spelling of m.
func (m GuardMode) String() string {
	switch m {
	case GuardReject:
		return "reject"
	case GuardTokenize:
		return "tokenize"
	case GuardOff:
		return "off"
	case GuardReport:
		return "report"
	}
	return "unknown"
}

// UnmarshalText sets m from its config spelling (guard.mode), as
// [ParseGuardMode] reads it.
func (m *GuardMode) UnmarshalText(text []byte) error {
	v, ok := ParseGuardMode(string(text))
	if !ok {
		return fmt.Errorf("%q is not a mode; use reject, report, tokenize or off", text)
	}
	*m = v
	return nil
}

// MarshalText returns the config spelling of m.
func (m GuardMode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// scan is the guard stage over what a walk recorded: it finds the card
// numbers in each text outside the fields, keeps those the route's CardSet
// takes, and lays out the values for the replace callback and the edits of
// the splice, in document order.
func (c *collector) scan() {
	for _, f := range c.found {
		if !f.guard {
			c.edits = append(c.edits, edit{start: f.start, end: f.end, kind: f.ek, first: len(c.vals), n: 1})
			c.vals = append(c.vals, Value{Field: f.field, Spec: f.spec, Path: f.path, Text: f.text, Kind: f.kind, Offset: f.start})
			continue
		}
		runs := f.runs
		if !f.scanned {
			runs = textCards(f.text, f.kind)
		}
		if len(runs) > 0 {
			c.hit(f.path, f.text, runs, f.kind, f.ek, f.start, f.end)
		}
	}
	c.found = nil
}

// textCards returns the card numbers in text: a JSON number's value (as
// numberCard reads it), or the card-like runs of any other text.
func textCards(text string, kind Kind) []cardRun {
	if kind != KindNumber {
		return findCards(text)
	}
	if d := numberCard(text); d != "" {
		return []cardRun{{digits: d}}
	}
	return nil
}

// hit records the card numbers runs found in one span as guard hits.
func (c *collector) hit(path string, text string, runs []cardRun, kind Kind, ek editKind, start, end int) {
	if c.cards != nil {
		// Narrowed: a number the set does not take stays as written (its
		// span is simply not edited). Ambiguous runs are kept: they have
		// no one number to judge, and are refused.
		runs = slices.DeleteFunc(slices.Clone(runs), func(rn cardRun) bool { return !rn.ambiguous && !c.cards.Takes(rn.digits) })
		if len(runs) == 0 {
			return
		}
	}
	if c.guardHits == 0 {
		c.guardPath, c.guardAt = path, start
	}
	c.guardHits += len(runs)
	for _, rn := range runs {
		if rn.ambiguous && !c.anyAmbig {
			c.ambiguous, c.ambigAt, c.anyAmbig = path, start, true
		}
	}
	c.edits = append(c.edits, edit{start: start, end: end, kind: ek, first: len(c.vals), n: len(runs), text: text, runs: runs})
	for _, rn := range runs {
		c.vals = append(c.vals, Value{Field: -1, Spec: -1, Path: path, Text: rn.digits, Kind: kind, Offset: start})
	}
}

// verdict refuses the body for its guard hits: any hit in reject mode, and
// in every mode a hit that is ambiguous.
func (c *collector) verdict(mode GuardMode) error {
	if c.guardHits > 0 && mode == GuardReject {
		e := newError(CodeCardNumberDetected, c.guardPath, "card-like number outside the configured fields")
		e.Offset = c.guardAt
		return e
	}
	if c.anyAmbig {
		// No one number to tokenize: ASCII-only and Unicode-aware readers
		// would see different card numbers in the same digits.
		e := newError(CodeCardNumberDetected, c.ambiguous,
			"card-like digits that read as different numbers with and without non-ASCII digits; send ASCII digits")
		e.Offset = c.ambigAt
		return e
	}
	return nil
}
